"""The key names audit remembers between batches: valid only while a partition is read
without a gap, and only once the batch that taught them is stored."""

from __future__ import annotations

import uuid

from services.audit.app.key_names import KeyNames

A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_names_stored_from_a_partition_serve_its_next_batch() -> None:
    names = KeyNames()
    first = [(0, 10, A), (0, 11, B), (1, 5, C)]
    assert names.known(first) == {}
    names.stored(first, {A: "alpha", B: "beta", C: "gamma"})
    assert names.known([(0, 12, A), (0, 13, B), (1, 6, C)]) == {
        A: "alpha",
        B: "beta",
        C: "gamma",
    }


def test_a_gap_in_a_partition_forgets_what_it_taught_and_only_that() -> None:
    names = KeyNames()
    names.stored([(0, 10, A), (1, 5, C)], {A: "alpha", C: "gamma"})
    # partition 0 was read elsewhere meanwhile (or a message of it was dead-lettered)
    assert names.known([(0, 20, A), (1, 6, C)]) == {C: "gamma"}
    assert names.known([(0, 11, A)]) == {}  # forgotten, not restored by going back


def test_a_retried_batch_still_finds_the_names_of_before_it() -> None:
    names = KeyNames()
    names.stored([(0, 10, A)], {A: "alpha"})
    batch = [(0, 11, A), (0, 12, A)]
    assert names.known(batch) == {A: "alpha"}  # the first try failed: nothing stored
    assert names.known(batch) == {A: "alpha"}
    names.stored(batch, {A: "renamed"})
    assert names.known([(0, 13, A)]) == {A: "renamed"}


def test_a_batch_stored_without_its_names_forgets_its_partitions() -> None:
    names = KeyNames()
    names.stored([(0, 10, A), (1, 5, C)], {A: "alpha", C: "gamma"})
    names.stored([(0, 11, A)], None)  # written the careful way (a redelivery)
    assert names.known([(0, 12, A), (1, 6, C)]) == {C: "gamma"}


def test_a_key_is_known_only_through_the_partition_that_named_it() -> None:
    names = KeyNames()
    names.stored([(0, 10, A), (1, 5, C)], {A: "alpha", C: "gamma"})
    assert names.known([(1, 6, A), (0, 11, C)]) == {}


def test_memory_is_bounded() -> None:
    names = KeyNames(limit=10)
    keys = [uuid.uuid4() for _ in range(11)]
    batch = [(0, offset, key) for offset, key in enumerate(keys)]
    names.stored(batch, dict.fromkeys(keys, "k"))
    assert names.known([(0, 11, keys[0])]) == {}
