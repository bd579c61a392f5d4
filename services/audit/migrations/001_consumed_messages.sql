-- Messages this service has taken effect of, by topic/partition/offset: lets a redelivered
-- message be recognised, and shows in one query what the service has seen.
CREATE TABLE IF NOT EXISTS consumed_messages (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    message_key text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
