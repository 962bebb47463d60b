"""Helpers shared by the compaction / retention / vacuum tests: deterministic batches and an LWW oracle.

Data lives in the hours starting at ``BASE_NS`` (2024-01-02T00 UTC, long settled). Batch ``b`` of hour ``h``
writes ``SERIES`` hosts × ``STEPS`` timestamps; overwrite batches rewrite some earlier points with new values,
some with only one field, so the per-field last-write-wins rule is exercised.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tsdb_lake.compaction import CompactionSettings
from tsdb_lake.lake import Lake, connect

BASE_NS = 1_704_153_600_000_000_000  # 2024-01-02T00:00:00Z
HOUR = 3_600_000_000_000
SEC = 1_000_000_000
SERIES = 6
STEPS = 20
#: Compact everything at once: no settle / quiet wait, any two files are enough.
EAGER = CompactionSettings(min_small_files=2, settle_ns=0, quiet_ns=0)

Key = tuple[str, int]
Oracle = dict[Key, dict[str, float | int | None]]


def open_lake(uri: str, options: dict[str, Any] | None, wal_root: Path) -> Lake:
    """Open a lake with its WALs under ``wal_root`` (kept out of the user's home for S3 lakes)."""
    return connect(uri, options or None, wal_root=wal_root)


def batch(hour: int, b: int, *, overwrite: bool = False) -> pl.DataFrame:
    """Batch ``b`` of ``hour``: disjoint timestamps per batch, or (``overwrite``) rewrites of batch 0's.

    Overwrites set ``usage`` on every point and ``count`` only on even hosts (odd hosts keep their old count).
    """
    step = 0 if overwrite else b
    hosts = np.repeat(np.arange(SERIES), STEPS)
    t = BASE_NS + hour * HOUR + (step * STEPS + np.tile(np.arange(STEPS), SERIES)) * SEC
    usage = (hour * 1_000_000 + b * 1000 + hosts * STEPS + np.tile(np.arange(STEPS), SERIES)) / 10.0
    count: list[int | None] = [int(x) for x in (hour * 10_000 + b * 100 + hosts)]
    if overwrite:
        count = [c if h % 2 == 0 else None for c, h in zip(count, hosts.tolist(), strict=True)]
    return pl.DataFrame(
        {
            "time": t,
            "host": [f"h{h}" for h in hosts],
            "usage": usage,
            "count": pl.Series(count, dtype=pl.Int64),
        }
    )


def apply(oracle: Oracle, frame: pl.DataFrame) -> None:
    """Fold one written batch into the oracle: per field, the latest non-null value wins."""
    for row in frame.iter_rows(named=True):
        point = oracle.setdefault((row["host"], row["time"]), {"usage": None, "count": None})
        for f in ("usage", "count"):
            if row[f] is not None:
                point[f] = row[f]


def write_batches(lake: Lake, batches: Iterable[pl.DataFrame], oracle: Oracle, tenant: str = "t") -> int:
    """Write each batch and flush it (one file per batch and hour); returns the number of flushes."""
    n = 0
    with lake.writer(tenant) as w:
        for frame in batches:
            w.write("cpu", frame)
            w.flush()
            apply(oracle, frame)
            n += 1
    return n


def as_rows(frame: pl.DataFrame) -> list[tuple[str, int, float | None, int | None]]:
    """A query result as sorted (host, time ns, usage, count) tuples."""
    t = frame.get_column("time")
    if t.dtype != pl.Int64:
        t = t.dt.epoch("ns")
    out = frame.with_columns(t.alias("time")).select("host", "time", "usage", "count").sort("host", "time")
    return [tuple(r) for r in out.iter_rows()]  # type: ignore[misc]


def expected_rows(oracle: Oracle) -> list[tuple[str, int, float | None, int | None]]:
    """The oracle as sorted rows, comparable with :func:`as_rows`."""
    return sorted((h, t, v["usage"], v["count"]) for (h, t), v in oracle.items())  # type: ignore[misc]


def query_rows(lake: Lake, *, as_of: int | None = None) -> list[tuple[str, int, float | None, int | None]]:
    """Every point of ``t/cpu`` as rows."""
    return as_rows(lake.query("cpu", tenant="t", as_of=as_of))


def live_raw(lake: Lake) -> list[Any]:
    """The live raw files of ``t/cpu``."""
    return lake.snapshot().files("t", "cpu", "raw")


def data_keys(lake: Lake) -> set[str]:
    """Every object under ``data/``."""
    return {o.key for o in lake.storage.list("data/")}


def future(seconds: float) -> int:
    """``now + seconds`` in ns (to make vacuum / retention see time pass)."""
    return time.time_ns() + int(seconds * 1e9)


def supervise_and_kill(proc: subprocess.Popen[str], delay: float, what: str) -> list[str]:
    """Collect ``proc``'s stdout; once it prints READY, wait ``delay`` s and SIGKILL it; return its lines.

    A child that exits with an error of its own (not 0, not the kill) fails the test with its stderr.
    """
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while (
        not any(x.startswith("READY") for x in lines) and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t.join(timeout=10)
    if proc.returncode not in (0, -signal.SIGKILL):
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"{what} child failed on its own (rc={proc.returncode}):\n{err[-3000:]}")
    return lines
