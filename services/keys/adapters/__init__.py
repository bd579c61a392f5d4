"""What the key service plugs into the outside world: PostgreSQL, Kafka, cryptography."""
