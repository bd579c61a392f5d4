"""The audit service's HTTP resources, one module each."""
