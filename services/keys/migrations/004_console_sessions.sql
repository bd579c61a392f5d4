-- Sessions of the browser console. The cookie holds a random token; only its SHA-256 is
-- stored. The access key the person signed in with is kept sealed (AES-256-GCM under a
-- key derived from KEYS_MASTER_KEY, bound to the session id), because the console calls
-- the audit and usage services on the person's behalf with it; it is never stored in
-- the clear, and sign-out deletes the row.
CREATE TABLE IF NOT EXISTS console_sessions (
    session_id   uuid        PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE,
    key_id       uuid        NOT NULL,
    account_id   text        NOT NULL,
    sealed_key   bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
