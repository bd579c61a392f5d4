"""Use cases of the key service: what a request or command does, in one transaction."""
