"""Signing the chain heads that moved, so that cutting a chain short shows.

Each checkpoint is also written to the service log: a copy outside the database, which
whoever can rewrite the database cannot take back.
"""

from __future__ import annotations

from servicekit.logging import get_logger
from services.audit.adapters.checkpoint_store import CheckpointStore
from services.audit.app.recording import Clock, utc_now
from services.audit.domain.chain import ChainKey
from services.audit.domain.records import Checkpoint

log = get_logger(__name__)


async def sign_heads(
    store: CheckpointStore, key: ChainKey, clock: Clock = utc_now
) -> list[Checkpoint]:
    heads = await store.unsigned_heads()
    signed_at = clock()
    checkpoints = [key.checkpoint(head, signed_at) for head in heads]
    await store.save(checkpoints)
    for checkpoint in checkpoints:
        log.info(
            "audit_checkpoint",
            account_id=checkpoint.account_id,
            seq=checkpoint.seq,
            hash=checkpoint.hash.hex(),
            signed_at=signed_at.isoformat(),
            signature=checkpoint.signature.hex(),
        )
    return checkpoints
