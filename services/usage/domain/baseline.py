"""A key's usual volume: EWMA mean and variance of its requests per active minute."""

from __future__ import annotations

import dataclasses
import math
from typing import Final


@dataclasses.dataclass(slots=True)
class Baseline:
    """EWMA mean and variance of a key's requests per active minute."""

    mean: float = 0.0
    var: float = 0.0
    minutes: int = 0

    def fold(self, count: float, alpha: float) -> None:
        if self.minutes == 0:
            self.mean, self.var = count, 0.0
        else:
            diff = count - self.mean
            increment = alpha * diff
            self.mean += increment
            self.var = (1 - alpha) * (self.var + diff * increment)
        self.minutes += 1

    @property
    def deviation(self) -> float:
        """Never below sqrt(mean): counts vary at least that much by chance (Poisson)."""
        return max(math.sqrt(max(self.var, 0.0)), math.sqrt(self.mean))


NO_BASELINE: Final = Baseline()
"""The baseline of every key with no closed minute yet: one object for them all (~80
bytes a key otherwise), never folded into: a key gets its own at its first closed minute
(`KeyActivity._advance` never folds into a baseline of no minutes; it replaces it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SpikeThresholds:
    warning: int
    """More requests than this in one minute is a spike."""
    critical: int
    expected: float
    established: bool
