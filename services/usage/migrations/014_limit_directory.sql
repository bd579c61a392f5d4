-- The limit counter's own copy of the key read model (docs/limits.md "Two processes"): it
-- reads keys.events in its own consumer group (usage-limits), usually in a process of its
-- own, and re-evaluates a key whose limits changed in the transaction that stores the
-- change. Sharing `key_directory` with the ingest would let one process store a change the
-- other has not acted on yet, which the other then skips as already seen.
CREATE TABLE IF NOT EXISTS limit_directory (LIKE key_directory INCLUDING DEFAULTS);
ALTER TABLE limit_directory DROP CONSTRAINT IF EXISTS limit_directory_pkey;
ALTER TABLE limit_directory ADD CONSTRAINT limit_directory_pkey PRIMARY KEY (key_id);

-- Until now one process kept both in step (the counter re-evaluated inside the key events'
-- transaction of the ingest's group): the copy starts from the ingest's view.
INSERT INTO limit_directory SELECT * FROM key_directory ON CONFLICT (key_id) DO NOTHING;
