"""SIGKILL a process running rollup passes (and raw compactions) at random moments, with late data between kills.

After every kill: queries through the tiers equal ``resolution="raw"`` (nothing lost or doubled), raw equals
the oracle. Finally an in-process pass completes, every dirty range is resolved and the explicit tiers answer.

Run as a script it is the child: ``python test_rollup_crash.py URI WAL_DIR NOW_NS``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    BASE_NS,
    HOUR,
    Oracle,
    batch,
    expected_rows,
    open_lake,
    query_rows,
    supervise_and_kill,
    write_batches,
)

SCRIPT = Path(__file__).resolve()
HOURS = 6
DAY = 24 * HOUR
NOW = BASE_NS + 3 * DAY
TIERS = ("1m", "1h", "1d")


def _child(uri: str, wal: str, now: int) -> None:
    from tsdb_lake.compaction.rollup import run_rollups

    lake = open_lake(uri, None, Path(wal))
    compaction: Any = None
    try:
        from tsdb_lake.compaction import CompactionSettings, run_compaction

        compaction = (run_compaction, CompactionSettings(min_small_files=2, settle_ns=0, quiet_ns=0))
    except ImportError:  # pragma: no cover - the compaction room is optional here
        pass
    _warm_up()
    print("READY", flush=True)
    for _ in range(3):
        run_rollups(lake.storage, lake.catalog, now_ns=now)
        if compaction is not None:
            compaction[0](lake.storage, lake.catalog, compaction[1])
    print("DONE", flush=True)


def _warm_up() -> None:
    """JIT / cache-load the rollup kernels so the kill delays land inside the passes."""
    from tsdb_lake.compaction.rollup import merge_rollup, points_to_rollup
    from tsdb_lake.format.rollup import FieldInfo
    from tsdb_lake.points import SERIES_ID

    frame = pl.DataFrame(
        {SERIES_ID: pl.Series([1, 1], dtype=pl.UInt64), "time": [0, 1], "v": [1.0, 2.0], "i": [1, 2]}
    )
    fields = {"v": FieldInfo("float64"), "i": FieldInfo("int64")}
    merge_rollup(points_to_rollup(frame, [], fields, 60 * 10**9), [], fields, HOUR)


def _run_and_kill(uri: str, wal: Path, delay: float, pycache: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    with subprocess.Popen(
        [sys.executable, str(SCRIPT), uri, str(wal), str(NOW)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        return supervise_and_kill(proc, delay, "rollup")


AGGS = ["count", "sum", "min", "max", "first", "last", "p50", "p90"]


def assert_tiers_equal_raw(
    lake: Any, every: str, resolution: str = "auto", aggs: list[str] = AGGS
) -> dict[str, Any]:
    """Bucketed answers through the tiers equal the raw answers (sums / quantiles to 1e-9)."""
    kw = {"tenant": "t", "every": every, "agg": aggs, "fields": ["usage", "count"]}
    got, explain = lake.query("cpu", BASE_NS, BASE_NS + DAY, resolution=resolution, explain=True, **kw)
    raw = lake.query("cpu", BASE_NS, BASE_NS + DAY, resolution="raw", **kw)
    assert got.columns == raw.columns and got.height == raw.height, (got.shape, raw.shape)
    for c in got.columns:
        a, b = got.get_column(c), raw.get_column(c)
        if a.dtype.is_float():
            assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, equal_nan=True), c
        else:
            assert a.to_list() == b.to_list(), c
    return explain


def test_sigkill_during_rollup_passes(tmp_path: Path, tmp_path_factory: Any) -> None:
    from tsdb_lake.compaction.rollup import run_rollups

    uri = str(tmp_path / "lake")
    lake = open_lake(uri, None, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(lake, [pl.concat([batch(h, b) for h in range(HOURS)]) for b in range(2)], oracle)
    expected = expected_rows(oracle)
    rng = random.Random(20240607)
    pycache = tmp_path_factory.getbasetemp() / "rollup-pycache"
    for attempt in range(4):
        delay = rng.uniform(0.0, 1.2)
        lines = _run_and_kill(uri, tmp_path / f"w{attempt}", delay, pycache)
        assert any(x.startswith("READY") for x in lines), "the rollup child never started"
        assert query_rows(lake) == expected, f"raw points lost, doubled or changed after kill {attempt}"
        for every in ("1h", "1d"):
            assert_tiers_equal_raw(lake, every)
        # late data into hours that may already be rolled up: dirty ranges for the next child
        late = batch(attempt % HOURS, 5 + attempt)
        write_batches(lake, [late], oracle)
        expected = expected_rows(oracle)
        assert query_rows(lake) == expected
    report = run_rollups(lake.storage, lake.catalog, now_ns=NOW)
    assert all(p.error is None for p in report.passes), report.to_dict()
    snap = lake.snapshot()
    for tier in TIERS:
        assert snap.dirty("t", "cpu", tier) == [], tier
        assert snap.watermark("t", "cpu", tier) is not None
    assert snap.watermark("t", "cpu", "1h") == NOW // HOUR * HOUR
    assert run_rollups(lake.storage, lake.catalog, now_ns=NOW).passes == []  # nothing left to do
    explain = assert_tiers_equal_raw(lake, "1h", resolution="1h")
    assert [p["tier"] for p in explain["tiers"]] == ["1h"]
    assert_tiers_equal_raw(lake, "1d", resolution="1d")
    # 1m keeps no quantile state: explicit 1m answers the rest, auto routes the quantiles to raw
    assert_tiers_equal_raw(lake, "1m", resolution="1m", aggs=[a for a in AGGS if not a.startswith("p")])
    assert_tiers_equal_raw(lake, "10m")
    # one live file per touched partition of each tier (replaced files are gone from the catalog)
    for tier in TIERS:
        parts = [f.partition for f in snap.files("t", "cpu", tier)]
        assert parts and len(parts) == len(set(parts)), (tier, parts)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
