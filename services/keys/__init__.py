"""The key service: the source of truth for access keys (event-sourced), and their verifier."""
