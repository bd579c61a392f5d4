"""PostgreSQL behind the use cases and the query API."""
