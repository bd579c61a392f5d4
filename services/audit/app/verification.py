"""Verifying a chain from the database, in one snapshot, without holding it in memory."""

from __future__ import annotations

from services.audit.adapters.chain_reader import ChainReader
from services.audit.domain.chain import ChainKey
from services.audit.domain.verification import ChainVerifier, Verdict


async def verify_chain(
    reader: ChainReader, key: ChainKey, account_id: str, through_seq: int | None = None
) -> Verdict:
    """Recompute the chain (up to `through_seq`, or all of it) and name its first break.

    Only a whole chain is compared with its newest checkpoint and its head.
    """
    verifier = ChainVerifier(key, account_id, await reader.anchor(account_id))
    if verifier.broken is None:
        records = (
            reader.records(account_id, verifier.next_seq - 1)
            if through_seq is None
            else reader.records(account_id, verifier.next_seq - 1, through_seq)
        )
        async for batch in records:
            if not verifier.check_all(batch):
                break
    if through_seq is not None:
        return verifier.verdict()
    return verifier.finish(
        await reader.newest_checkpoint(account_id), await reader.head(account_id)
    )
