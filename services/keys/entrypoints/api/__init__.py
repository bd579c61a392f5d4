"""The key service's HTTP API (INTERFACE.md), one module per resource."""
