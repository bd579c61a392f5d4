"""One key's activity, advanced request by request in event time: the detectors' state.

Why per key and per request: a key's records all travel in one partition, in order, so
folding them one by one makes every verdict a function of that key's own sequence, the
same on a replay, whatever the batch boundaries or the interleaving with other keys.

The watermark is per key too: `last_used_at - lateness`. A minute is closed (folded into
the baseline) once the watermark has passed its end; a request for a closed minute is
late: it is counted in the rollups and the trailing hour, not in the minute's detectors.
Threshold detectors fire the moment a running count passes its threshold, since a count
that only grows cannot change the verdict later: alerts come within seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from services.usage.domain import detectors as d
from services.usage.domain import lifecycle
from services.usage.domain.baseline import NO_BASELINE, Baseline, SpikeThresholds
from services.usage.domain.detectors import DetectorConfig, Finding
from services.usage.domain.keys import ACTIVE, KeyInfo
from services.usage.domain.requests import AUTH_FAILURES, MinuteRollup, Request, shared_minute
from services.usage.domain.trailing_hour import TrailingHour


@dataclasses.dataclass(slots=True)
class KeyActivity:
    key_id: str
    account_id: str
    first_used_at: float | None = None
    last_used_at: float | None = None
    last_failure_at: float | None = None
    baseline: Baseline = dataclasses.field(default_factory=lambda: NO_BASELINE)
    """NO_BASELINE (shared) until the first closed minute."""
    folded_through: int = -1
    """Minutes up to this one are closed (in the baseline); later ones are open."""
    open: list[int] = dataclasses.field(default_factory=list)
    """Open minutes as flat triples (minute, requests, auth failures) of on-time requests,
    ascending: a few ints, not a dict per key (memory, at 100,000 keys)."""
    networks: tuple[str, ...] | None = ()
    """Source networks seen; None once there are too many for novelty to mean anything. A
    tuple: most keys know one or two (the empty one is shared; a list took ~120 bytes)."""
    hour: TrailingHour = dataclasses.field(default_factory=TrailingHour)
    fired: set[tuple[str, str, float]] | None = None
    """(kind, severity, cooldown bucket) already raised: spares the database a conflict."""
    new_networks: list[tuple[str, float]] | None = None
    """Networks learned since the last save (written with the batch, then cleared)."""
    dirty: bool = True
    """The stored row is behind: baseline, closed minutes, first use or last failure moved
    (last_used_at alone does not count: it is read back from the rollups)."""
    _thresholds: SpikeThresholds | None = None

    def thresholds(self, config: DetectorConfig) -> SpikeThresholds:
        if self._thresholds is None:
            self._thresholds = d.spike_thresholds(self.baseline, config)
        return self._thresholds

    def observe(  # noqa: PLR0912 - one branch per detector, inline: this runs per request
        self, r: Request, key: KeyInfo | None, c: DetectorConfig, out: list[Finding]
    ) -> None:
        """Advance by one (deduplicated) request; findings are appended to `out`."""
        at, minute = r.at, r.minute
        previous = self.last_used_at
        if previous is None or at > previous:
            idle_since = previous
            if idle_since is None and key is not None:
                idle_since = key.created_at  # never used: idle since it was created
            if idle_since is not None and at - idle_since >= c.dormant_s:
                self._emit(
                    lifecycle.dormant_key_reactivated(
                        self.key_id,
                        self.account_id,
                        at,
                        idle_since,
                        previous is None,
                        r.network,
                        c,
                    ),
                    out,
                )
            self.last_used_at = at
            if int((at - c.lateness_s) // d.MINUTE) - 1 > self.folded_through:
                self._advance(at, c)
        if self.first_used_at is None or at < self.first_used_at:
            self.first_used_at = at
            self.dirty = True
        failed = r.status_code in AUTH_FAILURES
        if failed and (self.last_failure_at is None or at > self.last_failure_at):
            self.last_failure_at = at
            self.dirty = True

        trailing = self.hour.add(minute)
        limit = key.rate_limit_per_hour if key is not None else None
        if limit is not None and trailing > limit:
            bucket = d.bucket_of(minute * d.MINUTE, c.cooldown_s)
            if not self._has_fired("rate_limit_exceeded", "warning", bucket):
                self._emit(
                    d.rate_limit_exceeded(self.key_id, self.account_id, minute, trailing, limit, c),
                    out,
                )

        active = True
        if key is not None and (key.status != ACTIVE or key.expires_at is not None):
            status, since = key.status_at(at)
            active = status == ACTIVE
            if not active and (failed or at >= since + c.disabled_grace_s):
                self._emit(
                    lifecycle.disabled_key_in_use(
                        self.key_id,
                        self.account_id,
                        at,
                        status,
                        since,
                        r.status_code,
                        r.network,
                        c,
                    ),
                    out,
                )

        if minute > self.folded_through:
            slot = self._slot(minute)
            windows = self.open
            windows[slot + 1] += 1
            thresholds = self._thresholds or self.thresholds(c)
            if windows[slot + 1] > thresholds.warning:
                self._spike(minute, windows[slot + 1], thresholds, c, out)
            if failed:
                windows[slot + 2] += 1
                failures = windows[slot + 2]
                if failures > c.auth_failure_burst and active:
                    self._emit(
                        d.auth_failure_burst(self.key_id, self.account_id, minute, failures, c),
                        out,
                    )

        known = self.networks
        if known is not None and r.network not in known:
            self._learn(r, known, c, out)

    def observe_quietly(
        self, rows: list[MinuteRollup], key: KeyInfo | None, c: DetectorConfig
    ) -> bool:
        """Advance by a batch's rows of this key (its requests rolled up per minute) at
        once, if request by request would change nothing but counters: no detector can
        fire, no minute closes, no network is new. Returns False, having changed nothing
        that `observe` would not change alike, when that is not certain (the caller then
        observes each request); so the state and the findings are those of `observe`,
        whatever the batch."""
        previous = self.last_used_at
        if previous is None or not _plainly_active(key):
            return False  # a first use; a status change, an expiry or an hourly limit
        if len(rows) == 1:  # the usual case: one minute of the key in the batch
            newest, oldest = rows[0].last_at, rows[0].first_at
        else:
            newest = max(row.last_at for row in rows)
            oldest = min(row.first_at for row in rows)
        if (
            newest - previous >= c.dormant_s  # (every request's idle time is at most this)
            or int((newest - c.lateness_s) // d.MINUTE) - 1 > self.folded_through
            or not self._quiet(rows, c)
        ):
            return False  # dormant; a minute closes (which requests are late depends on
            # their order); or a request that a detector looks at
        if self.first_used_at is None or oldest < self.first_used_at:
            self.first_used_at = oldest
            self.dirty = True
        if newest > previous:
            self.last_used_at = newest
        hour, folded = self.hour, self.folded_through
        for row in rows:
            hour.add(row.minute, row.requests)
            if row.minute > folded:
                slot = self._slot(row.minute)  # (may replace `open`: read it after)
                self.open[slot + 1] += row.requests
        return True

    def _quiet(self, rows: list[MinuteRollup], c: DetectorConfig) -> bool:
        """No refused request (401/403), no new network, no open minute past the spike
        warning. An open minute's slot is made on the way: `observe` would make it too."""
        known = self.networks
        warning = (self._thresholds or self.thresholds(c)).warning
        folded = self.folded_through
        for row in rows:
            if row.auth_failures or (
                known is not None and any(network not in known for network in row.networks)
            ):
                return False
            if row.minute > folded:
                slot = self._slot(row.minute)  # (may replace `open`: read it after)
                if self.open[slot + 1] + row.requests > warning:
                    return False
        return True

    def _spike(
        self, minute: int, count: int, thresholds: SpikeThresholds, c: DetectorConfig,
        out: list[Finding],
    ) -> None:  # fmt: skip
        severity = d.spike_severity(count, thresholds)
        bucket = d.bucket_of(minute * d.MINUTE, c.cooldown_s)
        if severity is not None and not self._has_fired("volume_spike", severity, bucket):
            self._emit(
                d.volume_spike(
                    self.key_id, self.account_id, minute, count, severity, thresholds,
                    self.baseline, c,
                ),
                out,
            )  # fmt: skip

    def _learn(
        self, r: Request, known: tuple[str, ...], c: DetectorConfig, out: list[Finding]
    ) -> None:
        """A network not seen before: an alert if the key has a history, then remembered."""
        if lifecycle.established(self.first_used_at, self.baseline, r.at, c):
            self._emit(
                lifecycle.new_source_network(
                    self.key_id, self.account_id, r.at, r.network, known, self.first_used_at, c
                ),
                out,
            )
        self.networks = known = (*known, r.network)
        if self.new_networks is None:
            self.new_networks = []
        self.new_networks.append((r.network, r.at))
        if len(known) > c.new_network_max_known:
            self.networks = None
            self.dirty = True

    def _advance(self, at: float, c: DetectorConfig) -> None:
        """Close (fold into the baseline) the open minutes the watermark has passed."""
        close_through = int((at - c.lateness_s) // d.MINUTE) - 1
        if close_through <= self.folded_through:
            return
        windows = self.open
        closed = 0
        while closed < len(windows) and windows[closed] <= close_through:
            count = windows[closed + 1]
            if self.baseline.minutes == 0:  # (NO_BASELINE, shared, or a copy of it)
                self.baseline = Baseline()  # its first closed minute: a baseline of its own
            # Winsorised: a spike raises the baseline no more than a threshold minute would.
            self.baseline.fold(min(count, self.thresholds(c).warning), c.spike_alpha)
            self._thresholds = None
            closed += 3
        del windows[:closed]
        self.folded_through = shared_minute(close_through)
        self.dirty = True

    def _slot(self, minute: int) -> int:
        """Index of `minute`'s triple in `open`, inserted in order when new. The first
        triple is a new list of exactly three (an insert into the empty one would reserve
        eight slots: ~40 bytes a key), so `open` is read again after this."""
        windows = self.open
        if not windows:
            self.open = [minute, 0, 0]
            return 0
        at = 0
        while at < len(windows) and windows[at] < minute:
            at += 3
        if at == len(windows) or windows[at] != minute:
            windows[at:at] = (minute, 0, 0)
        return at

    def open_minute(self, minute: int, requests: int, failures: int) -> None:
        """Restore an open minute (read back from its rollup)."""
        slot = self._slot(minute)
        self.open[slot + 1], self.open[slot + 2] = requests, failures

    def _has_fired(self, kind: str, severity: str, bucket: float) -> bool:
        return self.fired is not None and (kind, severity, bucket) in self.fired

    def _emit(self, finding: Finding | None, out: list[Finding]) -> None:
        if finding is None:
            return
        ident = (finding.kind, finding.severity, finding.bucket)
        if self.fired is None:
            self.fired = set()
        elif ident in self.fired:
            return
        if len(self.fired) > 32:  # keep it small: older buckets are the database's business
            self.fired = {f for f in self.fired if f[2] >= finding.bucket}
        self.fired.add(ident)
        out.append(finding)


def _plainly_active(key: KeyInfo | None) -> bool:
    """Active with no status change, no expiry and no hourly limit (or not known): the
    status and rate-limit detectors have nothing to say of its requests."""
    return key is None or (
        key.status == ACTIVE and key.expires_at is None and key.rate_limit_per_hour is None
    )


def observe_batch(
    states: Mapping[str, KeyActivity],
    requests: Sequence[Request],
    rollups: Sequence[MinuteRollup],
    key_of: Callable[[str], KeyInfo | None],
    c: DetectorConfig,
    out: list[Finding],
) -> None:
    """Advance each key of a batch (`rollups`: its `requests` per key and minute): by its
    rollups where `observe_quietly` can, else request by request in the batch's order.
    Findings are appended to `out`, as observing every request would have."""
    by_key: dict[str, list[MinuteRollup]] = {}
    for row in rollups:
        rows = by_key.get(row.key_id)
        if rows is None:
            by_key[row.key_id] = [row]
        else:
            rows.append(row)
    one_by_one = {
        key_id
        for key_id, rows in by_key.items()
        if not states[key_id].observe_quietly(rows, key_of(key_id), c)
    }
    if one_by_one:
        for r in requests:
            if r.key_id in one_by_one:
                states[r.key_id].observe(r, key_of(r.key_id), c, out)
