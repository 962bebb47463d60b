"""SIGKILL a writer process at random moments; every acknowledged point survives exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import tsdb_lake

sys.path.insert(0, str(Path(__file__).parent))
from crash_writer import BASE_NS, POINTS_PER_BATCH, batch

SCRIPT = Path(__file__).parent / "crash_writer.py"


def _run_and_kill(
    uri: str,
    options: dict[str, Any],
    first: int,
    n: int,
    delay: float,
    settings: dict[str, Any] | None = None,
) -> set[int]:
    """Start a writer at batch ``first``, kill it after it has been writing ``delay`` seconds; return ACKs."""
    extra = [json.dumps(settings)] if settings is not None else []
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), uri, json.dumps(options), str(first), str(n), "7", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: set[int] = set()
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while not any(line.startswith("ACK") for line in lines) and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t.join(timeout=10)
    stderr = proc.stderr.read() if proc.stderr else ""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if proc.returncode not in (-signal.SIGKILL, 0):
        raise AssertionError(f"writer failed on its own (rc={proc.returncode}):\n{stderr[-3000:]}")
    for line in lines:
        if line.startswith("ACK "):
            acked.add(int(line.split()[1]))
    return acked


def _check(uri: str, options: dict[str, Any], acked: set[int], attempted: int) -> None:
    lake = tsdb_lake.connect(uri, storage_options=options or None)
    with lake.writer(tenant="crash"):  # replays any WAL left behind, flushes on close
        pass
    lake = tsdb_lake.connect(uri, storage_options=options or None)
    df = lake.query("m", BASE_NS, BASE_NS + 10**18, tenant="crash")
    present = df.with_columns(((pl.col("value") // 1000).cast(pl.Int64)).alias("batch"))
    counts = present.group_by("batch").len()
    got = dict(zip(counts["batch"].to_list(), counts["len"].to_list(), strict=True))
    missing = sorted(acked - set(got))
    assert not missing, f"acknowledged batches lost: {missing[:10]}"
    partial = {b: n for b, n in got.items() if n != POINTS_PER_BATCH}
    assert not partial, f"batches present partially: {partial}"
    assert set(got) <= set(range(attempted))
    for b in list(got)[:20]:
        expected = batch(b)
        rows = present.filter(pl.col("batch") == b).sort("time")
        assert rows["value"].to_list() == list(expected["value"])  # type: ignore[arg-type]
    # No duplicates hidden by last-write-wins: stored points equal distinct points.
    snap = lake.snapshot()
    stored = sum(f.points for f in snap.files("crash", "m", "raw"))
    assert stored == df.height, (
        f"{stored} points stored for {df.height} distinct points (duplicated on replay)"
    )


def _crash_loop(
    uri: str, options: dict[str, Any], rounds: int, seed: int, settings: dict[str, Any] | None = None
) -> None:
    rng = random.Random(seed)
    acked: set[int] = set()
    next_batch = 0
    for _ in range(rounds):
        n = 400
        acked |= _run_and_kill(uri, options, next_batch, n, delay=rng.uniform(0.0, 1.5), settings=settings)
        next_batch += n
    assert acked, "the writer never acknowledged a batch"
    _check(uri, options, acked, next_batch)


def test_sigkill_loses_no_acknowledged_write_and_duplicates_none(tmp_path: Path) -> None:
    _crash_loop(str(tmp_path / "lake"), {}, rounds=6, seed=1)


def test_sigkill_during_background_partial_flushes(tmp_path: Path) -> None:
    # Each 40-minute batch completes an hour partition: completed hours flush in the background with a
    # carry record for what stays buffered, so kills land between carry, commit and truncation.
    settings = {"flush_bytes": 1 << 30, "flush_completed_bytes": 1}
    _crash_loop(str(tmp_path / "lake"), {}, rounds=6, seed=4, settings=settings)


@pytest.mark.s3
def test_sigkill_on_s3(
    s3_lake: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = s3_lake
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    _crash_loop(uri, options, rounds=3, seed=2)


@pytest.mark.slow
def test_sigkill_hundreds_of_times(tmp_path: Path) -> None:
    _crash_loop(str(tmp_path / "lake"), {}, rounds=200, seed=3)
