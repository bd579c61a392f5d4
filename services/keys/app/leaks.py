"""Leak reports: a secret someone found becomes a `ReportLeakedKey` command, applied as
any command from `keys.commands` is (`commands.execute`), so the partner endpoint, the
public endpoint and internal scanners share one path and one policy.

The public endpoint must not be an oracle: it answers before anything is looked up, and
the candidates that pass the checksum wait in `PublicReports` until a worker reports
them, so a known secret and an unknown one cost the caller the same.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts import Actor, ReportLeakedKey, ReportLeakedKeyData
from servicekit.logging import get_logger
from services.keys.app import commands
from services.keys.app.context import KeysContext
from services.keys.app.verification import KnownSecret
from services.keys.domain.recorded import Meta
from services.keys.domain.secret import is_well_formed

log = get_logger(__name__)


async def report_leak(
    ctx: KeysContext,
    secret: str,
    source: str,
    url: str | None,
    actor: Actor,
    correlation_id: str | None = None,
) -> KnownSecret | None:
    """Report `secret` as leaked; returns the key it belongs to (None: not a key of ours).
    The command carries the key's id, never the secret."""
    known = await ctx.verifier.find(secret)
    if known is None:
        return None
    command = ReportLeakedKey(
        command_id=uuid.uuid4(),
        account_id=known.account_id,
        key_id=known.key_id,
        actor=actor,
        issued_at=datetime.now(UTC),
        correlation_id=correlation_id,
        data=ReportLeakedKeyData(source=source, url=url),
    )
    meta = Meta(
        actor=actor,
        occurred_at=command.issued_at,
        correlation_id=correlation_id or str(command.command_id),
        causation_id=str(command.command_id),
    )
    await commands.execute(ctx.uow, ctx.tools, command, meta, ctx.leak_policy)
    return known


@dataclass(frozen=True, slots=True)
class Candidate:
    """One secret handed in on the public endpoint; repr never shows it."""

    secret: str = field(repr=False)
    actor: Actor


class PublicReports:
    """Well-formed candidates from the public endpoint, reported by a worker after the
    answer went out. Bounded: past `max_pending`, new candidates are dropped (counted)."""

    SOURCE = "public"

    def __init__(self, ctx: KeysContext, max_pending: int = 20_000) -> None:
        self._ctx = ctx
        self._pending: deque[Candidate] = deque()
        self._max = max_pending
        self.dropped = 0

    def accept(self, candidates: list[str], actor: Actor) -> None:
        """Keep the candidates that pass the checksum; the rest are never looked up."""
        for secret in dict.fromkeys(candidates):  # each once, in order
            if not is_well_formed(secret):
                continue
            if len(self._pending) >= self._max:
                self.dropped += 1
                continue
            self._pending.append(Candidate(secret, actor))

    async def drain(self) -> None:
        while self._pending:
            candidate = self._pending.popleft()
            try:
                await report_leak(self._ctx, candidate.secret, self.SOURCE, None, candidate.actor)
            except Exception:
                self._pending.appendleft(candidate)  # the next round tries it again
                raise
