"""The audit chain's rules without a database: how records seal, and how every kind of
tampering with the stored rows shows when the chain is recomputed."""

from __future__ import annotations

import dataclasses
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.audit.adapters.chain_store import random_ids
from services.audit.domain.appending import append_entries
from services.audit.domain.chain import GENESIS, ChainKey, record_content
from services.audit.domain.entries import ActorRef, Entry
from services.audit.domain.records import AuditRecord, ChainHead, Checkpoint, RetentionAnchor
from services.audit.domain.verification import ChainVerifier, Verdict

KEY = ChainKey(b"k" * 32)
T0 = datetime(2026, 11, 26, 18, 0, 0, 123456, tzinfo=UTC)
ALICE = ActorRef("user", "alice", "203.0.113.7", "curl/8")


def entry(n: int, account: str = "acme", key_id: uuid.UUID | None = None) -> Entry:
    return Entry(
        source_id=f"event:{uuid.UUID(int=n)}",
        account_id=account,
        occurred_at=T0 + timedelta(seconds=n),
        actor=ALICE,
        action="key.disabled",
        key_id=key_id or uuid.UUID(int=1000 + n),
        outcome="success",
        correlation_id=f"req-{n}",
        causation_id=None,
        details='{"reason":"leaked"}',
    )


def chain(count: int, account: str = "acme", key: ChainKey = KEY) -> list[AuditRecord]:
    ids = iter(uuid.UUID(int=i) for i in range(1, 10_000))
    head = {account: ChainHead(account, 0, GENESIS)}
    entries = [entry(n, account) for n in range(1, count + 1)]
    return append_entries(key, head, entries, set(), {}, T0, lambda: next(ids)).records


def verify(
    records: list[AuditRecord],
    *,
    checkpoint: Checkpoint | None = None,
    head: ChainHead | None = None,
    anchor: RetentionAnchor | None = None,
) -> Verdict:
    verifier = ChainVerifier(KEY, "acme", anchor)
    for record in records:
        if not verifier.check(
            record, checkpoint if checkpoint and checkpoint.seq == record.seq else None
        ):
            break
    return verifier.finish(checkpoint, head)


def head_of(records: list[AuditRecord]) -> ChainHead:
    return ChainHead("acme", records[-1].seq, records[-1].hash)


def test_the_hashed_form_of_a_record_is_pinned_so_that_old_records_keep_verifying() -> None:
    """Changing this form is a new HASH_VERSION: records already stored must still verify."""
    record = chain(1)[0]
    assert record.prev_hash == GENESIS
    assert record_content(record) == PINNED_CONTENT
    assert record.hash == hmac.digest(b"k" * 32, PINNED_CONTENT, "sha256")
    assert record.hash.hex() == PINNED_HASH


@pytest.mark.parametrize("size", [32, 63, 64, 65, 200])
def test_the_mac_is_hmac_sha256_of_the_key_whatever_its_length(size: int) -> None:
    """ChainKey computes HMAC-SHA-256 from its own keyed states (RFC 2104: a key longer
    than a block is hashed first): the same MAC as the hmac module's, for any key."""
    secret = bytes(range(size))
    record = chain(2, key=ChainKey(secret))[1]
    assert record.hash == hmac.digest(secret, record_content(record), "sha256")


PINNED_CONTENT = (
    b'["audit-record",1,"acme",1,"' + b"0" * 64 + b'","00000000000000000000000000000001",'
    b'"event:00000000-0000-0000-0000-000000000001",1795716001123456,1795716000123456,'
    b'["user","alice","203.0.113.7","curl/8"],"key.disabled","000000000000000000000000000003e9",'
    b'null,"success","req-1",null,"{\\"reason\\":\\"leaked\\"}"]'
)
PINNED_HASH = "21bef12953f0ed9dda246fe0c21fad305033b8a443373163870c86a303294a78"


def test_an_untouched_chain_verifies_to_its_end() -> None:
    records = chain(5)
    checkpoint = KEY.checkpoint(head_of(records), T0)
    verdict = verify(records, checkpoint=checkpoint, head=head_of(records))
    assert verdict.ok
    assert (verdict.records_checked, verdict.first_seq, verdict.last_seq) == (5, 1, 5)


def _edit_actor(records: list[AuditRecord]) -> list[AuditRecord]:
    records[3] = records[3]._replace(actor=ActorRef("user", "mallory"))
    return records


def _delete_middle(records: list[AuditRecord]) -> list[AuditRecord]:
    del records[3]
    return records


def _swap(records: list[AuditRecord]) -> list[AuditRecord]:
    a, b = records[2], records[3]
    records[2] = b._replace(seq=a.seq)
    records[3] = a._replace(seq=b.seq)
    return records


def _insert(records: list[AuditRecord]) -> list[AuditRecord]:
    forged = records[2]._replace(seq=4, source_id="event:forged", hash=bytes(32))
    shifted = [r._replace(seq=r.seq + 1) for r in records[3:]]
    return [*records[:3], forged, *shifted]


def _renumber_after_delete(records: list[AuditRecord]) -> list[AuditRecord]:
    del records[3]
    return [*records[:3], *(r._replace(seq=r.seq - 1) for r in records[3:])]


def _relink(records: list[AuditRecord]) -> list[AuditRecord]:
    records[3] = records[3]._replace(prev_hash=bytes(32))
    return records


@pytest.mark.parametrize(
    ("tamper", "seq", "code"),
    [
        (_edit_actor, 4, "altered"),
        (_delete_middle, 4, "missing"),
        (_swap, 3, "altered"),
        (_insert, 4, "altered"),
        (_renumber_after_delete, 4, "altered"),
        (_relink, 4, "altered"),
    ],
    ids=["actor edited", "middle deleted", "two swapped", "one inserted", "gap closed", "relinked"],
)
def test_tampering_names_the_first_broken_record(
    tamper: Callable[[list[AuditRecord]], list[AuditRecord]], seq: int, code: str
) -> None:
    records = tamper(chain(6))
    verdict = verify(records)
    assert verdict.broken is not None
    assert (verdict.broken.seq, verdict.broken.code) == (seq, code)


def test_a_record_moved_to_another_account_does_not_verify_there() -> None:
    records = chain(3)
    moved = [r._replace(account_id="other") for r in records]
    verifier = ChainVerifier(KEY, "other", None)
    assert not verifier.check(moved[0])
    assert verifier.broken is not None and verifier.broken.code == "altered"


def test_a_cut_off_tail_shows_against_the_newest_checkpoint() -> None:
    records = chain(6)
    checkpoint = KEY.checkpoint(head_of(records), T0)
    kept = records[:4]
    verdict = verify(kept, checkpoint=checkpoint, head=head_of(kept))
    assert verdict.broken is not None
    assert (verdict.broken.seq, verdict.broken.code) == (5, "truncated")


def test_a_head_that_does_not_match_the_last_record_shows() -> None:
    records = chain(4)
    verdict = verify(records[:3], head=head_of(records))
    assert verdict.broken is not None and verdict.broken.code == "head_mismatch"


def test_a_forged_checkpoint_shows() -> None:
    records = chain(3)
    real = KEY.checkpoint(head_of(records), T0)
    forged = dataclasses.replace(real, seq=9, signature=bytes(32))
    verdict = verify(records, checkpoint=forged, head=head_of(records))
    assert verdict.broken is not None and verdict.broken.code == "forged_checkpoint"
    other_key = ChainKey(b"o" * 32).checkpoint(head_of(records), T0)
    verdict = verify(records, checkpoint=other_key, head=head_of(records))
    assert verdict.broken is not None and verdict.broken.code == "forged_checkpoint"


def test_after_retention_the_chain_starts_at_its_signed_anchor() -> None:
    records = chain(6)
    cut = ChainHead("acme", 3, records[2].hash)
    anchor = KEY.anchor(cut, 3, T0, T0 + timedelta(days=1))
    assert verify(records[3:], anchor=anchor, head=head_of(records)).ok
    forged = dataclasses.replace(anchor, through_seq=2)
    verdict = verify(records[3:], anchor=forged, head=head_of(records))
    assert verdict.broken is not None and verdict.broken.code == "forged_anchor"
    assert not verify(records[4:], anchor=anchor, head=head_of(records)).ok


def test_a_key_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ChainKey(b"short")
    assert "k" not in repr(KEY)


def test_appending_skips_recorded_and_repeated_sources_and_carries_names() -> None:
    key_id = uuid.uuid4()
    created = entry(1, key_id=key_id)._replace(
        action="key.created", key_name="first", key_version=1
    )
    renamed = entry(2, key_id=key_id)._replace(
        action="key.updated", key_name="second", key_version=2
    )
    disabled = entry(3, key_id=key_id)
    heads = {
        "acme": ChainHead("acme", 7, b"h" * 32),
        "other": ChainHead("other", 0, GENESIS),
    }
    elsewhere = entry(4, account="other")
    appended = append_entries(
        KEY,
        heads,
        [created, created, renamed, disabled, elsewhere, entry(5)],
        {entry(5).source_id},
        {},
        T0,
    )
    assert [(r.account_id, r.seq, r.key_name) for r in appended.records] == [
        ("acme", 8, "first"),
        ("acme", 9, "second"),
        ("acme", 10, "second"),
        ("other", 1, None),
    ]
    assert appended.records[0].prev_hash == b"h" * 32
    assert appended.heads["acme"].seq == 10 and appended.heads["other"].seq == 1
    assert appended.names[key_id].name == "second" and appended.names[key_id].version == 2


def test_a_rejection_or_an_alert_is_left_unnamed_when_written_as_it_may_come_first() -> None:
    key_id = uuid.uuid4()
    rejected = entry(1, key_id=key_id)._replace(action="command.rejected")
    alerted = entry(2, key_id=key_id)._replace(action="alert.raised")
    disabled = entry(3, key_id=key_id)
    heads = {"acme": ChainHead("acme", 0, GENESIS)}
    appended = append_entries(KEY, heads, [rejected, alerted, disabled], set(), {key_id: "ci"}, T0)
    assert [r.key_name for r in appended.records] == [None, None, "ci"]


@pytest.mark.parametrize("part", [1, 3, 5, 20])
def test_a_chain_checked_a_part_at_a_time_breaks_where_it_breaks_record_by_record(
    part: int,
) -> None:
    """Verify reads a chain in parts (a batch per round trip): the verdict is the same
    whatever the size of the parts, the break in the middle of one or at its edge."""
    for altered in (5, 6, 11):
        records = chain(20)
        records[altered - 1] = records[altered - 1]._replace(outcome="failure")
        verifier = ChainVerifier(KEY, "acme", None)
        for start in range(0, len(records), part):
            if not verifier.check_all((r, None) for r in records[start : start + part]):
                break
        by_parts = verifier.finish(None, head_of(records))
        assert by_parts == verify(records, head=head_of(records))
        assert by_parts.broken is not None and by_parts.broken.seq == altered


def test_a_batch_of_record_ids_are_distinct_random_version_4_uuids() -> None:
    new_id = random_ids(1000)
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)
    assert all(i.variant == uuid.RFC_4122 for i in ids)
    assert all(uuid.UUID(str(i)) == i and uuid.UUID(str(i)).hex == i.hex for i in ids)
