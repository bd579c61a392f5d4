"""Results out: one pretty JSON file per benchmark and one summary table for the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from bench.harness import BenchResult, Figure

_DASH = "—"


def write_result(result: BenchResult, results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def summary_table(results: Sequence[BenchResult]) -> Table:
    quick = any(r.quick for r in results)
    table = Table(title="benchmarks" + (" (--quick: smoke figures only)" if quick else ""))
    for column in ("benchmark", "metric", "value", "unit", "target", "met?", "baseline"):
        numeric = column in ("value", "target", "baseline")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for result in results:
        if result.error is not None:
            table.add_row(result.name, "[red]failed[/]", _DASH, "", _DASH, "[red]no[/]", _DASH)
        for figure in result.figures:
            table.add_row(
                result.name,
                figure.metric,
                format_value(figure.value),
                figure.unit,
                _target(figure),
                _met(figure.met),
                _baseline(figure),
            )
    return table


def format_value(value: float) -> str:
    """Thousands separators for big numbers, three significant digits for small ones."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _target(figure: Figure) -> str:
    if figure.target is None:
        return _DASH
    return ("≥ " if figure.better == "higher" else "≤ ") + format_value(figure.target)


def _met(met: bool | None) -> str:
    if met is None:
        return _DASH
    return "[green]yes[/]" if met else "[red]no[/]"


def _baseline(figure: Figure) -> str:
    share = figure.share_of_baseline
    if figure.baseline is None or share is None:
        return _DASH
    return f"{format_value(figure.baseline)} ({share:.0%})"
