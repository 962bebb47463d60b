"""put_if_absent under contention: threads and spawned processes race for one key on both backends."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

from tsdb_lake.storage import Storage


def _race_threads(storage: Storage, key: str, n: int) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = storage.put_if_absent(key, f"writer-{i}".encode() * 50)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results)
    return [bool(r) for r in results]


def test_threads_race_exactly_one_wins(storage: Storage) -> None:
    for round_ in range(5):
        key = f"_catalog/log/{round_:020d}.json"
        results = _race_threads(storage, key, 12)
        assert results.count(True) == 1, results
        winner = results.index(True)
        assert storage.read_bytes(key) == f"writer-{winner}".encode() * 50
    assert len(storage.list("_catalog/log/")) == 5


def _process_worker(storage: Storage, key: str, i: int, barrier: Any, out: Any) -> None:
    """Runs in a spawned process: wait for the others, then race."""
    barrier.wait(timeout=60)
    out.put((i, storage.put_if_absent(key, f"process-{i}".encode())))


def test_processes_race_exactly_one_wins(storage: Storage) -> None:
    ctx = mp.get_context("spawn")
    n = 3
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    key = "_catalog/log/00000000000000000007.json"
    procs = [ctx.Process(target=_process_worker, args=(storage, key, i, barrier, out)) for i in range(n)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    results = dict(out.get(timeout=max(1.0, deadline - time.monotonic())) for _ in range(n))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1, results
    assert storage.read_bytes(key) == f"process-{winners[0]}".encode()
