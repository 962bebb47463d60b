"""SIGKILL a compaction process at random moments: no point is lost or doubled, the next pass completes,
and vacuum removes what the killed passes left behind.

Run as a script it is the child: ``python test_crash_compaction.py URI OPTIONS_JSON WAL_DIR``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    EAGER,
    Oracle,
    batch,
    data_keys,
    expected_rows,
    future,
    live_raw,
    open_lake,
    query_rows,
    supervise_and_kill,
    write_batches,
)

HOURS = 8
SCRIPT = Path(__file__).resolve()


def _child(uri: str, options: dict[str, Any], wal: str) -> None:
    from tsdb_lake.compaction import CompactionSettings, run_compaction

    lake = open_lake(uri, options, Path(wal))
    settings = CompactionSettings(min_small_files=2, settle_ns=0, quiet_ns=0, max_chunk_points=16)
    _warm_up()  # JIT / cache-load the codecs first, so the kill delays land inside the compaction itself
    print("READY", flush=True)
    report = run_compaction(lake.storage, lake.catalog, settings)
    print("DONE", json.dumps([j.status for j in report.jobs]), flush=True)


def _warm_up() -> None:
    from tsdb_lake.format import decode_chunks, encode_chunks
    from tsdb_lake.points import assign_series_ids

    frame = assign_series_ids(batch(0, 0), "cpu", ["host"])
    fields = {"usage": "float64", "count": "int64"}
    decode_chunks(encode_chunks(frame.sort("_series_id", "time"), ["host"], fields), ["host"], fields)


def _run_and_kill(uri: str, options: dict[str, Any], wal: Path, delay: float, pycache: Path) -> list[str]:
    # children share a bytecode cache outside the source tree (this environment disables .pyc writing)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    with subprocess.Popen(
        [sys.executable, str(SCRIPT), uri, json.dumps(options), str(wal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        return supervise_and_kill(proc, delay, "compaction")


def test_sigkill_during_compaction(lake_target, tmp_path: Path, tmp_path_factory: Any) -> None:
    from tsdb_lake.compaction import run_compaction, run_vacuum

    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    frames = []
    for b in range(3):
        frames.append(pl_concat([batch(h, b) for h in range(HOURS)]))
    frames.append(pl_concat([batch(h, 9, overwrite=True) for h in range(HOURS)]))
    write_batches(lake, frames, oracle)
    assert len(live_raw(lake)) == 4 * HOURS
    expected = expected_rows(oracle)
    rng = random.Random(20240102)
    kills = 3 if lake_target.kind == "local" else 2  # each child pays ~5 s of interpreter + numba start-up
    for attempt in range(kills):
        wal = tmp_path / f"w{attempt}"
        delay = rng.uniform(0.0, 0.8)
        pycache = tmp_path_factory.getbasetemp() / "compaction-pycache"
        lines = _run_and_kill(lake_target.uri, lake_target.storage_options, wal, delay, pycache)
        assert any(x.startswith("READY") for x in lines), "the compaction child never started"
        for line in lines:  # a child that finished before the kill must have committed every job
            if line.startswith("DONE"):
                assert set(json.loads(line.split(" ", 1)[1])) <= {"committed"}, line
        rows = query_rows(lake)
        print(f"kill {attempt} after {delay:.2f}s: {len(live_raw(lake))} raw files live", file=sys.stderr)
        assert rows == expected, f"points lost, doubled or changed after kill {attempt}"
    final = run_compaction(lake.storage, lake.catalog, EAGER)
    assert all(j.status == "committed" for j in final.jobs), final.to_dict()
    files = live_raw(lake)
    assert len(files) == HOURS and len({f.partition for f in files}) == HOURS
    assert query_rows(lake) == expected
    orphans_and_inputs = data_keys(lake) - {f.path for f in files}
    assert len(orphans_and_inputs) >= 4 * HOURS  # at least the compacted inputs
    report = run_vacuum(lake.storage, lake.catalog, 0, now_ns=future(5))
    assert {o.key for o in report.deleted} == orphans_and_inputs
    assert data_keys(lake) == {f.path for f in files}
    assert query_rows(lake) == expected


def pl_concat(frames: list[Any]) -> Any:
    import polars as pl

    return pl.concat(frames)


if __name__ == "__main__":
    _child(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])
