"""The benchmark harness: register with `@benchmark`, report `Figure`s, get `BenchResult`s.

A benchmark is a function (sync or async) of a `BenchContext` that returns its figures.
The harness times it, adds the environment, and keeps its result so that a later
benchmark of the same run (or the saved JSON of an earlier run) can serve as a baseline.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from bench.environment import Environment, capture_environment

RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
"""The local stack's broker, on the port `make up` gave it (KAFKA_PORT), unless told otherwise."""

LOAD_KEPT = 0.98
"""A load generator that keeps 98 % of the rate asked for keeps the rate: a load figure's
target is the asked rate times this."""

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    """One measured number, judged against `target` and put next to `baseline`."""

    metric: str
    value: float
    unit: str
    target: float | None = None
    better: Better = "higher"
    """Which way `target` is met: throughput wants `higher`, latency `lower`."""
    baseline: float | None = None
    baseline_of: str | None = None
    """Where `baseline` was read, as `benchmark/metric`: `kafka_baseline/produce_msgs_per_s`."""

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is no target."""
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    @property
    def share_of_baseline(self) -> float | None:
        """value / baseline: 0.8 means 80 % of the ceiling (or of the floor, for latency)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


@dataclass(frozen=True)
class BenchSettings:
    """Everything a run is told from outside: the environment and the command line."""

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP
    quick: bool = False
    results_dir: Path = RESULTS_DIR
    keys: int | None = None
    """`--keys`: the active keys of a usage benchmark (its cost as the work grows); its
    result is saved as `<name>.keys<N>` so that each size keeps its own figures."""

    @classmethod
    def from_env(cls, *, quick: bool = False, keys: int | None = None) -> BenchSettings:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)
        return cls(kafka_bootstrap_servers=bootstrap, quick=quick, keys=keys)


@dataclass(frozen=True)
class BenchResult:
    """What one benchmark run produced; `error` is set (and `figures` empty) when it failed."""

    name: str
    figures: list[Figure]
    environment: Environment
    params: dict[str, Any]
    quick: bool
    duration_s: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        figures = [{**asdict(f), "met": f.met} for f in self.figures]
        return {**asdict(self), "figures": figures}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResult:
        figure_keys = {f.name for f in fields(Figure)}
        return cls(
            name=data["name"],
            figures=[Figure(**{k: f[k] for k in figure_keys if k in f}) for f in data["figures"]],
            environment=Environment.from_json(data.get("environment", {})),
            params=data.get("params", {}),
            quick=data.get("quick", False),
            duration_s=data.get("duration_s", 0.0),
            error=data.get("error"),
        )

    def figure(self, metric: str) -> Figure | None:
        return next((f for f in self.figures if f.metric == metric), None)


@dataclass
class BenchContext:
    """What a benchmark is given: settings, a place for its parameters, earlier results."""

    settings: BenchSettings
    params: dict[str, Any] = field(default_factory=dict)
    earlier: Mapping[str, BenchResult] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    @property
    def quick(self) -> bool:
        return self.settings.quick

    def scale(self, full: int, quick: int) -> int:
        """`full` in a real run, `quick` in a `--quick` smoke run."""
        return quick if self.settings.quick else full

    def keys(self, default: int) -> int:
        """The active keys to run with: `--keys` when given, else `default`."""
        return self.settings.keys or default

    def note(self, **params: Any) -> None:
        """Record the knobs of this run (message counts, sizes...) in the result."""
        self.params.update(params)

    def baseline(self, ref: str) -> float | None:
        """The value of `benchmark/metric`: from this run if it ran, else its saved JSON."""
        name, _, metric = ref.partition("/")
        result = self.earlier.get(name) or load_result(name, self.settings.results_dir)
        found = result.figure(metric) if result is not None else None
        return found.value if found is not None else None

    def figure(
        self,
        metric: str,
        value: float,
        unit: str,
        *,
        target: float | None = None,
        better: Better = "higher",
        baseline_of: str | None = None,
    ) -> Figure:
        """A `Figure` whose baseline is looked up from `baseline_of` (`benchmark/metric`)."""
        baseline = self.baseline(baseline_of) if baseline_of is not None else None
        return Figure(metric, value, unit, target, better, baseline, baseline_of)


BenchFn = Callable[[BenchContext], Awaitable[Sequence[Figure]] | Sequence[Figure]]
_F = TypeVar("_F", bound=BenchFn)
REGISTRY: dict[str, BenchFn] = {}


def benchmark(name: str) -> Callable[[_F], _F]:
    """Register the decorated function as the benchmark `name` (`python -m bench name`)."""

    def register(fn: _F) -> _F:
        if name in REGISTRY and REGISTRY[name] is not fn:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = fn
        return fn

    return register


def discover() -> dict[str, BenchFn]:
    """Import every `bench/bench_*.py` so that their decorators register them."""
    for module in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if module.name.startswith("bench_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return dict(REGISTRY)


def load_result(name: str, results_dir: Path = RESULTS_DIR) -> BenchResult | None:
    """The saved result of `name`, or None when there is none (or it cannot be read)."""
    path = results_dir / f"{name}.json"
    try:
        return BenchResult.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench: ignoring {path}: {exc!r}", file=sys.stderr)
        return None


def run(names: Iterable[str], settings: BenchSettings) -> list[BenchResult]:
    """Run the named benchmarks in order, each in its own event loop; a failure is a result."""
    results: dict[str, BenchResult] = {}
    for name in names:
        ctx = BenchContext(settings, earlier=dict(results))
        environment = capture_environment(settings.kafka_bootstrap_servers)
        began = time.perf_counter()
        error: str | None = None
        figures: Sequence[Figure] = []
        try:
            figures = _call(REGISTRY[name], ctx)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            error = "".join(traceback.format_exception_only(exc)).strip()
            traceback.print_exc()
        results[name] = BenchResult(
            name=name if settings.keys is None else f"{name}.keys{settings.keys}",
            figures=list(figures),
            environment=environment,
            params=ctx.params,
            quick=settings.quick,
            duration_s=round(time.perf_counter() - began, 3),
            error=error,
        )
    return list(results.values())


def _call(fn: BenchFn, ctx: BenchContext) -> Sequence[Figure]:
    outcome = fn(ctx)
    if inspect.isawaitable(outcome):
        return asyncio.run(_awaited(outcome))
    return outcome


async def _awaited(outcome: Awaitable[Sequence[Figure]]) -> Sequence[Figure]:
    return await outcome
