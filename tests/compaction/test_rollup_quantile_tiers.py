"""Where quantile state lives: none on 1m (raw covers it), 1h built from raw in the same pass, 1d from 1h.

A pass that builds 1h from the 1m rows it just wrote (in memory) must give the same files as one that reads
the committed 1m files and raw back (the state after a crash between the tier commits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import tsdb_lake.lake as lake_mod
from tsdb_lake.catalog import SetRetention, TierSpec
from tsdb_lake.codecs import decode_floats, decode_ints
from tsdb_lake.compaction.rollup import (
    HOUR_NS,
    _PassCache,
    _run_tier,
    quantile_tiers,
    rollup_tiers,
    run_rollups,
)
from tsdb_lake.compaction.sketches import sketch_n
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.query.tiers import Part, plan_parts

MIN = 60_000_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000_000_000 // DAY * DAY
NOW = T0 + 40 * DAY


def _write(lake: Any, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 6000
    times = np.sort(rng.choice(2 * 86_400, n, replace=False)).astype(np.int64) * 1_000_000_000 + T0
    frame = pl.DataFrame(
        {
            "time": times,
            "host": rng.choice(["a", "b", "c"], n),
            "v": np.round(rng.normal(50, 10, n)),  # repeated values: weighted histograms
            "w": rng.normal(0, 1, n),
        }
    )
    with lake.writer(tenant="t") as w:
        w.write("cpu", frame)
    return frame


def _rows(lake: Any, tier: str) -> pl.DataFrame:
    frames = [
        pl.from_arrow(pq.read_table(lake.storage.arrow_path(f.path), filesystem=lake.storage.arrow_fs()))
        for f in lake.snapshot().files("t", "cpu", tier)
    ]
    return pl.concat(frames).sort(["_series_id", "time"])  # type: ignore[arg-type]


def test_quantile_tiers_rule() -> None:
    m1, h1, d1 = (
        TierSpec(n, b, p) for n, b, p in (("1m", MIN, "day"), ("1h", HOUR, "month"), ("1d", DAY, "year"))
    )
    assert quantile_tiers([m1, h1, d1]) == {"1h", "1d"}
    assert quantile_tiers([m1]) == {"1m"}  # the coarsest tier always keeps it
    assert quantile_tiers([]) == set()


def test_state_only_where_it_pays_and_1h_equals_raw(tmp_path: Any) -> None:
    lake = lake_mod.connect(tmp_path / "lake")
    frame = _write(lake, 1)
    lake.rollup(now_ns=NOW)
    m1 = _rows(lake, "1m")
    assert all(
        m1.get_column(f"{f}__{p}").is_null().all()
        for f in ("v", "w")
        for p in ("values", "weights", "sketch")
    )
    for f in lake.snapshot().files("t", "cpu", "1m"):
        meta = pq.read_schema(lake.storage.arrow_path(f.path), filesystem=lake.storage.arrow_fs()).metadata
        assert meta[b"tsdb_lake.quantile_state"] == b"none"
    h1 = _rows(lake, "1h")
    assert h1.get_column("v__values").is_not_null().all()
    # every 1h bucket's histogram is exactly the raw values of that (host, hour)
    raw = frame.with_columns((pl.col("time").cast(pl.Int64) // HOUR_NS * HOUR_NS).alias("b"))
    groups = {(h, b): np.sort(g.get_column("v").to_numpy()) for (h, b), g in raw.group_by(["host", "b"])}
    assert len(groups) == h1.height
    for row in h1.select("host", pl.col("time").dt.epoch("ns"), "v__values", "v__weights").iter_rows():
        vals = decode_floats(row[2])
        weights = decode_ints(row[3]) if row[3] is not None else np.ones(len(vals), np.int64)
        assert np.array_equal(np.repeat(vals, weights), groups[(row[0], row[1])])
    # 1m still answers every other aggregate, and quantiles route around it
    got, explain = lake.query("cpu", T0, T0 + DAY, tenant="t", every="10m", agg=["p50", "avg"], explain=True)
    want = lake.query("cpu", T0, T0 + DAY, tenant="t", every="10m", agg=["p50", "avg"], resolution="raw")
    assert [p["tier"] for p in explain["tiers"]] == ["raw"]
    assert got.equals(want)
    _, explain = lake.query("cpu", T0, T0 + DAY, tenant="t", every="10m", agg=["avg"], explain=True)
    assert [p["tier"] for p in explain["tiers"]] == ["1m"]
    with pytest.raises(InvalidQueryError, match="no quantile state"):
        lake.query("cpu", T0, T0 + DAY, tenant="t", every="10m", agg=["p50"], resolution="1m")


def test_quantile_routing_after_raw_expires(tmp_path: Any) -> None:
    lake = lake_mod.connect(tmp_path / "lake")
    _write(lake, 2)
    lake.rollup(now_ns=NOW)
    snap = lake.catalog.commit([SetRetention("t", "cpu", "raw", 7 * DAY)], operation="retention_rule")
    # raw (7 days) has expired for day 0 at NOW: hourly quantiles come from 1h, 10-minute ones have no tier
    # with quantile state left and fall to raw (empty), while 1m still answers the other aggregates.
    assert plan_parts(snap, "t", "cpu", T0, T0 + DAY, HOUR, "auto", now=NOW, quantiles=True) == [
        Part("1h", T0, T0 + DAY)
    ]
    assert plan_parts(snap, "t", "cpu", T0, T0 + DAY, 10 * MIN, "auto", now=NOW, quantiles=True) == [
        Part("raw", T0, T0 + DAY)
    ]
    assert plan_parts(snap, "t", "cpu", T0, T0 + DAY, 10 * MIN, "auto", now=NOW) == [Part("1m", T0, T0 + DAY)]


def test_fused_pass_equals_tier_by_tier_from_files(tmp_path: Any) -> None:
    a = lake_mod.connect(tmp_path / "a")
    b = lake_mod.connect(tmp_path / "b")
    _write(a, 3)
    _write(b, 3)
    run_rollups(a.storage, a.catalog, now_ns=NOW)
    # b: commit the 1m tier alone (as a pass that crashed after it would), then a fresh pass builds 1h / 1d
    # from the 1m files and a new raw read.
    snap = b.catalog.refresh()
    spec = rollup_tiers(snap, "t", "cpu")[0]
    tp = _run_tier(
        b.storage, b.catalog, snap, "t", "cpu", spec, "raw", NOW // HOUR * HOUR, False, {}, _PassCache()
    )
    assert tp is not None and tp.error is None
    report = run_rollups(b.storage, b.catalog, now_ns=NOW)
    assert [p.tier for p in report.passes] == ["1h", "1d"]
    for tier in ("1m", "1h", "1d"):
        x, y = _rows(a, tier), _rows(b, tier)
        sketches = [c for c in x.columns if c.endswith("__sketch")]
        assert x.drop(sketches).equals(y.drop(sketches)), tier
        # KLL compaction is randomised: compare what the sketches summarise, not their bytes
        for c in sketches:
            assert x.get_column(c).is_null().to_list() == y.get_column(c).is_null().to_list()
            n_x = [None if v is None else sketch_n(v) for v in x.get_column(c)]
            assert n_x == [None if v is None else sketch_n(v) for v in y.get_column(c)]
    assert _rows(a, "1d").get_column("w__sketch").is_not_null().all()  # the sketch path was exercised
