"""Appending a batch of entries to their chains, in the order they were read."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.audit.domain.chain import ChainKey
from services.audit.domain.entries import KEY_EVENT_ACTIONS, Entry
from services.audit.domain.records import AuditRecord, ChainHead


@dataclass(frozen=True, slots=True)
class KeyName:
    account_id: str
    name: str
    version: int


@dataclass
class Appended:
    records: list[AuditRecord] = field(default_factory=list)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    """The new head of each chain that grew."""
    names: dict[uuid.UUID, KeyName] = field(default_factory=dict)
    """The newest name of each key the batch created or renamed."""


def append_entries(
    key: ChainKey,
    heads: Mapping[str, ChainHead],
    entries: Iterable[Entry],
    recorded: set[str],
    names: Mapping[uuid.UUID, str],
    recorded_at: datetime,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Appended:
    """Seal each entry not `recorded` yet after the head of its chain.

    `heads` must hold every chain the entries name, as locked for this batch; `names` the
    current name of the keys they are about. A key renamed in the batch carries its new
    name on the records that follow. Only a key's own events are named here (see
    KEY_EVENT_ACTIONS): a rejection or an alert may be read before the key's events, so its
    name is left to the reader. The same source twice in a batch is recorded once.
    """
    done = set(recorded)
    ends = {account: (head.seq, head.hash) for account, head in heads.items()}
    known = dict(names)
    appended = Appended()
    for entry in entries:
        if entry.source_id in done:
            continue
        done.add(entry.source_id)
        key_id = entry.key_id
        if key_id is not None and entry.key_name is not None:
            known[key_id] = entry.key_name
            newest = appended.names.get(key_id)
            version = entry.key_version or 0
            if newest is None or newest.version < version:
                appended.names[key_id] = KeyName(entry.account_id, entry.key_name, version)
        own_event = entry.action in KEY_EVENT_ACTIONS
        name = known.get(key_id) if key_id is not None and own_event else None
        seq, prev = ends[entry.account_id]
        record = key.seal(entry.account_id, seq, prev, entry, name, new_id(), recorded_at)
        ends[entry.account_id] = (record.seq, record.hash)
        appended.records.append(record)
    for account, (seq, digest) in ends.items():
        if seq != heads[account].seq:
            appended.heads[account] = ChainHead(account, seq, digest)
    return appended
