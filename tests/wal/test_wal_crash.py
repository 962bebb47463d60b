"""A real crash test: a child appends with durability "batch" and is SIGKILLed at random moments.

After every kill the WAL is reopened: every acknowledged LSN must be there with its exact payload (unless a
truncation the child asked for covered it), LSNs must be contiguous, and the next child continues the
sequence. A long version runs behind the ``slow`` marker.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wal_crash_child import payload_for

from tsdb_lake.wal import WAL

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def run_child_and_kill(directory: Path, seed: int, run_for: float) -> tuple[list[int], list[int]]:
    """Start the child, let it run ``run_for`` seconds after its first ack, SIGKILL it; return acks, truncations."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "wal_crash_child.py"), str(directory), str(seed)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks: list[bytes] = []
    deadline: float | None = None
    start = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            assert now - start < 30, "child produced no output"
            ready, _, _ = select.select([fd], [], [], 0.01)
            if ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    break  # the child died on its own: reported below
                chunks.append(data)
                if deadline is None and b"A " in data:
                    deadline = time.monotonic() + run_for
        proc.send_signal(signal.SIGKILL)
        # everything printed before the kill was acknowledged: drain it
        while data := os.read(fd, 1 << 16):
            chunks.append(data)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"child exited with {proc.returncode}"
    acks: list[int] = []
    truncations: list[int] = []
    text = b"".join(chunks).decode()
    complete = text[: text.rfind("\n") + 1]  # a line cut by the kill was not fully reported
    for line in complete.splitlines():
        kind, value = line.split()
        (acks if kind == "A" else truncations).append(int(value))
    return acks, truncations


def check_wal(directory: Path, acked: set[int], truncated_upto: int) -> int:
    with WAL(directory, segment_bytes=64 << 10) as wal:
        records = list(wal.replay())
        last = wal.last_lsn
    lsns = [r.lsn for r in records]
    if lsns:
        assert lsns == list(range(lsns[0], lsns[0] + len(lsns))), "LSN gap"
    for r in records:
        assert r.payload == payload_for(r.lsn), f"wrong payload for lsn {r.lsn}"
    present = set(lsns)
    missing = sorted(lsn for lsn in acked if lsn > truncated_upto and lsn not in present)
    assert not missing, f"acknowledged LSNs lost: {missing[:10]}"
    assert last >= max(acked, default=0)
    return last


def crash_loop(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "wal"
    acked: set[int] = set()
    truncated_upto = 0
    last = 0
    for i in range(kills):
        acks, truncations = run_child_and_kill(directory, rng.randrange(1 << 30), rng.uniform(0.0, 0.25))
        assert acks, "the child acknowledged nothing"
        assert acks[0] == last + 1, "LSNs continue exactly where the recovered WAL ends"
        acked.update(acks)
        truncated_upto = max([truncated_upto, *truncations])
        last = check_wal(directory, acked, truncated_upto)
        assert last >= max(acks), i


def test_sigkill_never_loses_acknowledged_records(tmp_path: Path) -> None:
    crash_loop(tmp_path, kills=10, seed=1)


@pytest.mark.slow
def test_sigkill_long(tmp_path: Path) -> None:
    """200 kills; deselected by default (pyproject addopts), run with ``-m slow``."""
    crash_loop(tmp_path, kills=200, seed=2)
