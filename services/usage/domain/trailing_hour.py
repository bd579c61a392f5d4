"""Requests per minute over the trailing hour of one key, for the hourly rate limit."""

from __future__ import annotations

from array import array

HOUR_MINUTES = 60


class TrailingHour:
    """Requests per minute over the last 60 minutes, as a ring with a running total.

    Most keys use only one minute of an hour: until a second minute comes, the ring is
    not allocated (`counts` is None and the whole total is the `latest` minute's), which
    saves about 300 bytes a key at a million keys."""

    __slots__ = ("counts", "latest", "total")

    def __init__(self) -> None:
        self.counts: array[int] | None = None
        self.latest = -1
        self.total = 0

    def add(self, minute: int, n: int = 1) -> int:
        """Count `n` requests in `minute`; returns the total of the hour ending at the
        newest minute seen (a late minute older than that hour is not counted)."""
        counts = self.counts
        if counts is None:
            if minute > self.latest and (self.total == 0 or minute - self.latest >= HOUR_MINUTES):
                self.latest, self.total = minute, n  # the first use, or a new hour
                return n
            if minute == self.latest:
                self.total += n
                return self.total
            if minute <= self.latest - HOUR_MINUTES:
                return self.total  # older than the hour: not counted
            counts = self.counts = array("I", bytes(4 * HOUR_MINUTES))  # a second minute
            counts[self.latest % HOUR_MINUTES] = self.total
        if minute > self.latest:
            if minute - self.latest >= HOUR_MINUTES:
                counts = self.counts = array("I", bytes(4 * HOUR_MINUTES))
                self.total = 0
            else:
                for m in range(self.latest + 1, minute + 1):
                    self.total -= counts[m % HOUR_MINUTES]
                    counts[m % HOUR_MINUTES] = 0
            self.latest = minute
        if minute > self.latest - HOUR_MINUTES:
            counts[minute % HOUR_MINUTES] += n
            self.total += n
        return self.total
