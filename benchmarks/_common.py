"""Shared helpers for the benchmarks: machine facts, timing, results JSON and markdown tables.

Generic on purpose: every ``benchmarks/bench_*.py`` may use it. Results go to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "best_time",
    "machine_info",
    "markdown_table",
    "mvals_per_s",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """Facts that make a measurement interpretable: CPU, core count, Python and key library versions."""
    info: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "processor": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "numba", "pyarrow", "polars", "duckdb"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # a missing optional library is not an error here
            info[mod] = None
    return info


def best_time(
    fn: Callable[[], object],
    *,
    min_total: float = 0.25,
    max_runs: int = 200,
    min_runs: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Smallest time of ``fn()`` over repeated runs (at least ``min_runs``, until ``min_total`` s spent).

    ``clock`` defaults to wall time; pass ``time.thread_time`` to measure the CPU time of the calling thread,
    which is robust to other processes sharing the machine (only meaningful for single-threaded work).
    """
    best = float("inf")
    spent = 0.0
    runs = 0
    while runs < min_runs or (spent < min_total and runs < max_runs):
        t0 = clock()
        fn()
        dt = clock() - t0
        best = min(best, dt)
        spent += dt
        runs += 1
    return best


def mvals_per_s(n_values: int, seconds: float) -> float:
    """Millions of values per second."""
    return n_values / seconds / 1e6 if seconds > 0 else float("inf")


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` as ``benchmarks/results/<name>.json`` (pretty, sorted keys); return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats shown with 3 significant decimals."""

    def fmt(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.3f}" if abs(x) < 1000 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
