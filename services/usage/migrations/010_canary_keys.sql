-- Canary keys (docs/secret-scanning.md): every use of one is a critical alert, so the
-- read model remembers which keys are canaries (KeyCreated's canary).
ALTER TABLE key_directory ADD COLUMN IF NOT EXISTS canary boolean NOT NULL DEFAULT false;
