"""The usage service: per-key usage, alerts on unusual activity, optional containment."""
