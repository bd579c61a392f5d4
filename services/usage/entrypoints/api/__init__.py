"""The usage service's HTTP resources, one module each."""
