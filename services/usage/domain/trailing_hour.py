"""Requests per minute over the trailing hour of one key, for the hourly rate limit."""

from __future__ import annotations

from array import array

HOUR_MINUTES = 60


class TrailingHour:
    """Requests per minute over the last 60 minutes, as a ring with a running total."""

    __slots__ = ("counts", "latest", "total")

    def __init__(self) -> None:
        self.counts = array("I", bytes(4 * HOUR_MINUTES))
        self.latest = -1
        self.total = 0

    def add(self, minute: int, n: int = 1) -> int:
        """Count `n` requests in `minute`; returns the total of the hour ending at the
        newest minute seen (a late minute older than that hour is not counted)."""
        if minute > self.latest:
            if minute - self.latest >= HOUR_MINUTES:
                self.counts = array("I", bytes(4 * HOUR_MINUTES))
                self.total = 0
            else:
                for m in range(self.latest + 1, minute + 1):
                    self.total -= self.counts[m % HOUR_MINUTES]
                    self.counts[m % HOUR_MINUTES] = 0
            self.latest = minute
        if minute > self.latest - HOUR_MINUTES:
            self.counts[minute % HOUR_MINUTES] += n
            self.total += n
        return self.total
