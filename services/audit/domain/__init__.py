"""The audit log's rules, with no I/O: what a message means, how records chain and verify."""
