"""Compaction under concurrency: a writer adding late data to the same hour, and two racing compactors."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from tsdb_lake.compaction import merge_job, plan_compaction, run_compaction

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    EAGER,
    Oracle,
    apply,
    batch,
    data_keys,
    expected_rows,
    live_raw,
    open_lake,
    query_rows,
    write_batches,
)


def test_compaction_while_writer_adds_late_data(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(lake, [batch(0, b) for b in range(5)], oracle)
    late = [batch(0, 10 + i) if i % 2 else batch(0, 20 + i, overwrite=True) for i in range(8)]
    done = threading.Event()
    errors: list[BaseException] = []
    written: list[int] = []

    def writer() -> None:
        try:
            with lake.writer("t") as w:
                for frame in late:
                    w.write("cpu", frame)
                    w.flush()
                    apply(oracle, frame)
                    written.append(frame.height)
                    time.sleep(0.05)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    statuses: list[str] = []
    points_seen: list[int] = []
    while not done.is_set():
        report = run_compaction(lake.storage, lake.catalog, EAGER)
        statuses += [j.status for j in report.jobs]
        rows = query_rows(lake)
        assert len({r[:2] for r in rows}) == len(rows)  # never a doubled point
        points_seen.append(len(rows))
    thread.join()
    assert not errors, errors
    # late adds never conflict with compaction: outputs keep their inputs' seq, the adds rebase over them
    assert statuses and set(statuses) == {"committed"}, statuses
    assert points_seen == sorted(points_seen)  # nothing ever disappears
    final = run_compaction(lake.storage, lake.catalog, EAGER)
    assert all(j.status == "committed" for j in final.jobs)
    assert len(live_raw(lake)) == 1
    assert query_rows(lake) == expected_rows(oracle)
    assert len(oracle) == 5 * 120 + 4 * 120 and len(written) == 8


def test_two_compactors_race_one_wins(lake_target, tmp_path: Path) -> None:
    first = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(first, [batch(0, b) for b in range(4)] + [batch(0, 9, overwrite=True)], oracle)
    second = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal2")
    base_a, base_b = first.catalog.refresh(), second.catalog.refresh()
    assert base_a.version == base_b.version
    job_a = plan_compaction(base_a.by_path.values(), EAGER, 2**62).jobs[0]
    job_b = plan_compaction(base_b.by_path.values(), EAGER, 2**62).jobs[0]
    assert job_a.paths == job_b.paths
    won = merge_job(first.storage, first.catalog, base_a, job_a, EAGER)
    lost = merge_job(second.storage, second.catalog, base_b, job_b, EAGER)
    assert won.status == "committed" and lost.status == "abandoned"
    assert "not live" in lost.detail or "no longer live" in lost.detail
    snap = second.snapshot()
    assert snap.version == won.version  # the loser applied nothing
    live = set(snap.by_path)
    assert len(live) == 1
    # the loser deleted its outputs: storage holds the live file plus the (not yet vacuumed) inputs only
    assert data_keys(first) == live | set(job_a.paths)
    assert query_rows(second) == expected_rows(oracle)


def test_threaded_compactors_keep_data_intact(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(
        lake, [batch(h, b) for h in (0, 1) for b in range(3)] + [batch(1, 5, overwrite=True)], oracle
    )
    other = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal2")
    barrier = threading.Barrier(2)
    results: list[list[str]] = []

    def compact(target: object) -> None:
        barrier.wait()
        report = run_compaction(target.storage, target.catalog, EAGER)  # type: ignore[attr-defined]
        results.append([j.status for j in report.jobs])

    threads = [threading.Thread(target=compact, args=(x,)) for x in (lake, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [s for r in results for s in r]
    assert statuses.count("committed") == 2, statuses  # each partition compacted exactly once
    assert set(statuses) <= {"committed", "abandoned"}
    assert len(live_raw(lake)) == 2
    assert query_rows(lake) == expected_rows(oracle)
    assert all(f.lineage is not None and f.writer == "compactor" for f in live_raw(lake))
