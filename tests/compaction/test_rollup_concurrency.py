"""Rollup passes while a writer ingests (including late data into rolled-up hours) and a reader queries.

Local folder and S3 endpoint (``lake_target``). The reader pins catalog versions: at every version the tier
answers equal the raw answers. At the end one more pass leaves no dirty range and every tier equals raw.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tsdb_lake.errors import InvalidQueryError

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    BASE_NS,
    HOUR,
    Oracle,
    batch,
    expected_rows,
    open_lake,
    query_rows,
    write_batches,
)

DAY = 24 * HOUR
NOW = BASE_NS + 3 * DAY
AGGS = ["count", "sum", "min", "max", "last", "p50"]


def _same(
    lake: Any, every: str, *, as_of: int | None = None, resolution: str = "auto", aggs: list[str] = AGGS
) -> None:
    kw = {"tenant": "t", "every": every, "agg": aggs, "fields": ["usage", "count"], "as_of": as_of}
    got = lake.query("cpu", BASE_NS, BASE_NS + DAY, resolution=resolution, **kw)
    raw = lake.query("cpu", BASE_NS, BASE_NS + DAY, resolution="raw", **kw)
    assert got.height == raw.height, (as_of, got.height, raw.height)
    for c in got.columns:
        a, b = got.get_column(c), raw.get_column(c)
        if a.dtype.is_float():
            assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, equal_nan=True), (as_of, c)
        else:
            assert a.to_list() == b.to_list(), (as_of, c)


def test_rollups_with_writer_and_reader(lake_target: Any, tmp_path: Path) -> None:
    from tsdb_lake.compaction.rollup import run_rollups

    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(lake, [pl.concat([batch(h, 0) for h in range(3)])], oracle)
    run_rollups(lake.storage, lake.catalog, now_ns=NOW)
    reader_lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal-reader")
    done = threading.Event()
    errors: list[BaseException] = []
    passes: list[int] = []
    rebuilt: list[tuple[int, int]] = []
    checked: list[int] = []
    rounds = 4 if lake_target.kind == "local" else 3

    def writer() -> None:
        try:
            frames = []
            for r in range(rounds):
                frames.append(batch(3 + r, 0))  # new hour
                frames.append(batch(r % 3, 1 + r))  # late data into an hour rolled up before
            write_batches(lake, frames, oracle)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def roller() -> None:
        try:
            while not done.is_set():
                report = run_rollups(lake.storage, lake.catalog, now_ns=NOW)
                passes.append(len(report.passes))
                rebuilt.extend(r for p in report.passes for r in p.dirty_rebuilt)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                version = reader_lake.snapshot().version
                _same(reader_lake, "1h", as_of=version)
                checked.append(version)
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (writer, roller, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors
    assert checked and passes
    # settle: passes until nothing is dirty (a pass commits per tier; late marks may need one more)
    for _ in range(3):
        report = run_rollups(lake.storage, lake.catalog, now_ns=NOW)
        assert all(p.error is None for p in report.passes), report.to_dict()
        rebuilt.extend(r for p in report.passes for r in p.dirty_rebuilt)
    assert rebuilt, "late data never made a pass rebuild a dirty range"
    snap = lake.snapshot()
    for tier in ("1m", "1h", "1d"):
        assert snap.dirty("t", "cpu", tier) == [], tier
    assert query_rows(lake) == expected_rows(oracle)
    _same(lake, "1h", resolution="1h")
    _same(lake, "1d", resolution="1d")
    # 1m keeps no quantile state: it answers everything else; quantiles at 1m resolution come from raw
    _same(lake, "1m", resolution="1m", aggs=[a for a in AGGS if a != "p50"])
    _same(lake, "1m")
    with pytest.raises(InvalidQueryError, match="no quantile state"):
        _same(lake, "1m", resolution="1m")
    counts = lake.query("cpu", BASE_NS, BASE_NS + DAY, tenant="t", every="1d", agg=["count"], resolution="1d")
    assert counts.get_column("usage_count").sum() == len(oracle)
