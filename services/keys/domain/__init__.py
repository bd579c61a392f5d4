"""The key service's domain: the key aggregate, its rules and its secrets. Pure logic, no I/O."""
