"""The HTTP contract: each service fuzzed from its own OpenAPI document."""
