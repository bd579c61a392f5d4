"""Benchmarks of the platform on a real broker; `python -m bench --help` says how to run them.

A module `bench/bench_<topic>.py` registers a function with `@benchmark("name")`; the
function takes a `BenchContext` and returns `Figure`s (see `bench/README.md`).
"""

from bench.harness import BenchContext, BenchResult, BenchSettings, Figure, benchmark

__all__ = ["BenchContext", "BenchResult", "BenchSettings", "Figure", "benchmark"]
