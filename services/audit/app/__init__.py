"""Use cases of the audit service: record, checkpoint, verify, apply retention."""
