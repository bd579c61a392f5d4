"""`python -m bench [NAMES...] [--quick]`: run benchmarks, save their JSON, print one table."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bench import harness, report

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    names: Annotated[
        list[str] | None, typer.Argument(help="Benchmarks to run, in order; all when omitted.")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer messages: a smoke run.")] = False,
    keys: Annotated[
        int | None,
        typer.Option(help="Active keys of the usage benchmarks: their cost as they grow.", min=1),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Name the benchmarks and exit.")
    ] = False,
    fail_on_miss: Annotated[
        bool, typer.Option(help="Exit 1 when a figure misses its target (for CI).")
    ] = False,
) -> None:
    """Run the benchmarks of bench/bench_*.py and write bench/results/<name>.json."""
    registered = harness.discover()
    if list_only:
        typer.echo("\n".join(registered))
        return
    chosen = names or list(registered)
    unknown = [n for n in chosen if n not in registered]
    if unknown:
        typer.echo(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(registered)}")
        raise typer.Exit(2)
    settings = harness.BenchSettings.from_env(quick=quick, keys=keys)
    results = harness.run(chosen, settings)
    console = Console()
    if not console.is_terminal:  # a log or CI: no terminal to fit, keep metric names whole
        console = Console(width=max(console.width, 120))
    for result in results:
        if result.error is None:
            path = report.write_result(result, settings.results_dir)
            console.print(f"{result.name}: {result.duration_s:.1f}s, wrote {path}")
        else:
            console.print(f"[red]{result.name} failed[/]: {result.error}")
    console.print(report.summary_table(results))
    missed = any(f.met is False for r in results for f in r.figures)
    if any(r.error is not None for r in results) or (fail_on_miss and missed):
        raise typer.Exit(1)


app()
