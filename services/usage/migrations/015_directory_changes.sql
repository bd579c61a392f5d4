-- Which transaction last wrote each directory row. Every usage process reads only its own
-- partitions of keys.events (its consumer group shares them out), yet judges its own
-- partitions of usage.records by every key: each process follows the rows that the others
-- stored (`directory_store.changed_since`, about once a second) by this column.
ALTER TABLE key_directory
    ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE limit_directory
    ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS key_directory_changed ON key_directory (changed_xid);
CREATE INDEX IF NOT EXISTS limit_directory_changed ON limit_directory (changed_xid);
