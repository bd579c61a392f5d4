-- The publisher's next states (limit_store.due: pending, changes first, oldest first) read
-- in index order: without it every call sorted all pending rows, a cost that grew with
-- the keys (a million keys created with limits: minutes of sorting, bench usage_memory).
CREATE INDEX IF NOT EXISTS limit_states_due ON limit_states (urgent DESC, as_of) WHERE pending;
