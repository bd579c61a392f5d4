"""Prometheus metrics every service exposes at /metrics. Labels never hold a secret or an id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES_CONSUMED = Counter(
    "instagen_messages_consumed_total", "Messages read from a topic and processed", ["topic"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "instagen_messages_dead_lettered_total", "Messages sent to the topic's .dlq", ["topic"]
)
BATCH_RETRIES = Counter(
    "instagen_batch_retries_total", "Batches retried after a transient failure", ["topic"]
)
BATCH_SECONDS = Histogram(
    "instagen_batch_seconds",
    "Time to process one consumed batch, dead letters and commit included",
    ["topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_REQUESTS = Counter(
    "instagen_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "instagen_http_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CALLER_LOOKUPS = Counter(
    "instagen_caller_lookups_total",
    "Bearer keys resolved for an HTTP caller, by how (cached, asked, refused, unavailable)",
    ["outcome"],
)
