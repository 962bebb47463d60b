"""Rollup passes end to end on a lake (local folder and S3): build, query through tiers, late data, DuckDB."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tsdb_lake.lake as lake_mod
from tsdb_lake.storage import layout

MIN = 60_000_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000_000_000 // DAY * DAY  # 2023-11-14T00:00Z
NOW = T0 + 40 * DAY
AGGS = ["avg", "min", "max", "count", "sum", "first", "last", "stddev"]


def _points(rng: np.random.Generator, lo: int, hi: int, n: int) -> pl.DataFrame:
    times = np.sort(rng.choice((hi - lo) // 1_000_000, n, replace=False)).astype(np.int64) * 1_000_000 + lo
    v = rng.normal(50, 10, n)
    v[rng.random(n) < 0.01] = np.nan
    return pl.DataFrame(
        {
            "time": times,
            "host": rng.choice(["a", "b", "c"], n),
            "v": v,
            "req": np.cumsum(rng.integers(0, 5, n)).astype(float),
        }
    )


def _assert_same(lake: Any, every: str, start: int, end: int, **kw: Any) -> dict[str, Any]:
    got, explain = lake.query("cpu", start, end, tenant="t", every=every, explain=True, **kw)
    want = lake.query("cpu", start, end, tenant="t", every=every, resolution="raw", **kw)
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    return explain  # type: ignore[no-any-return]


def test_rollup_pass_query_and_late_data(lake_target: Any) -> None:
    rng = np.random.default_rng(5)
    lake = lake_mod.connect(lake_target.uri, lake_target.storage_options)
    with lake.writer(tenant="t") as w:
        w.write("cpu", _points(rng, T0, T0 + 2 * DAY, 4000), counters=["req"])

    report = lake.rollup(now_ns=NOW)
    assert [p.tier for p in report.passes] == ["1m", "1h", "1d"]
    assert all(p.error is None for p in report.passes)
    assert report.raw_values_rolled == 8000
    snap = lake.snapshot()
    assert {f.partition for f in snap.files("t", "cpu", "1m")} == {"day=2023-11-14", "day=2023-11-15"}
    assert [f.partition for f in snap.files("t", "cpu", "1h")] == ["month=2023-11"]
    assert [f.partition for f in snap.files("t", "cpu", "1d")] == ["year=2023"]
    lineage = snap.files("t", "cpu", "1h")[0].lineage
    # 1h merges the 1m rows and takes its quantile state from raw (1m keeps none): both are its sources
    assert lineage is not None and any("tier=1m" in p for p in lineage.paths)
    assert all("tier=1m" in p or "tier=raw" in p for p in lineage.paths)
    lineage = snap.files("t", "cpu", "1d")[0].lineage
    assert lineage is not None and lineage.paths and all("tier=1h" in p for p in lineage.paths)

    for every, tier in (("1h", "1h"), ("1d", "1d"), ("10m", "1m")):
        explain = _assert_same(lake, every, T0, T0 + 2 * DAY, fields=["v"], agg=AGGS)
        assert [p["tier"] for p in explain["tiers"]] == [tier]
        assert not explain["approximate"]
    _assert_same(lake, "1h", T0, T0 + 2 * DAY, fields=["req"], agg=["increase", "rate"])
    # An unaligned range: the edges come from raw (or a finer tier), the middle from 1h.
    end = T0 + DAY + 7 * MIN + 30_000_000_000
    explain = _assert_same(lake, "2h", T0 + 30 * MIN, end, fields=["v"], agg=AGGS)
    assert [p["tier"] for p in explain["tiers"]] == ["1m", "1h", "1m", "raw"]
    # Grouped across series, with fill.
    _assert_same(lake, "1h", T0 - DAY, T0 + 3 * DAY, fields=["v"], agg=AGGS, by=[], fill="null")

    # Late data into hour 5 of day 1: every tier is marked dirty over exactly its buckets.
    with lake.writer(tenant="t") as w:
        w.write("cpu", _points(rng, T0 + 5 * HOUR + 10 * MIN, T0 + 5 * HOUR + 12 * MIN, 40), counters=["req"])
    snap = lake.snapshot()
    assert snap.dirty("t", "cpu", "1m") == [(T0 + 5 * HOUR + 10 * MIN, T0 + 5 * HOUR + 12 * MIN)]
    assert snap.dirty("t", "cpu", "1h") == [(T0 + 5 * HOUR, T0 + 6 * HOUR)]
    assert snap.dirty("t", "cpu", "1d") == [(T0, T0 + DAY)]
    explain = _assert_same(lake, "1h", T0, T0 + 2 * DAY, fields=["v"], agg=AGGS)
    assert {"tier": "raw", "start": T0 + 5 * HOUR + 10 * MIN, "end": T0 + 5 * HOUR + 12 * MIN} in explain[
        "tiers"
    ]
    # quantiles: 1h keeps quantile state (built from raw), its dirty hour comes from raw
    explain = _assert_same(lake, "1h", T0, T0 + 2 * DAY, fields=["v"], agg=["p50", "p90", "count"])
    assert [p["tier"] for p in explain["tiers"]] == ["1h", "raw", "1h"] and not explain["approximate"]

    before = {f.path: f for f in snap.by_path.values() if f.tier != "raw"}
    report = lake.rollup(now_ns=NOW)
    removed = set(report.files_removed)
    day2 = next(p for p, f in before.items() if f.partition == "day=2023-11-15")
    assert day2 not in removed  # the untouched day keeps its 1m file
    assert {before[p].partition for p in removed} == {"day=2023-11-14", "month=2023-11", "year=2023"}
    snap = lake.snapshot()
    assert all(not snap.dirty("t", "cpu", tier) for tier in ("1m", "1h", "1d"))
    for every in ("1h", "1d"):
        explain = _assert_same(lake, every, T0, T0 + 2 * DAY, fields=["v"], agg=AGGS)
        assert all(p["tier"] != "raw" for p in explain["tiers"])
    # the rebuilt 1h buckets hold exact histograms again (1d buckets of ~1000 distinct floats are sketches)
    explain = _assert_same(lake, "1h", T0, T0 + 2 * DAY, fields=["v"], agg=["p50", "p99"])
    assert [p["tier"] for p in explain["tiers"]] == ["1h"] and not explain["approximate"]
    _assert_same(lake, "1d", T0, T0 + 2 * DAY, fields=["req"], agg=["increase"])

    # A second pass with nothing new does nothing.
    assert lake.rollup(now_ns=NOW).passes == []


def test_duckdb_reads_rollup_files(tmp_path: Any) -> None:
    import duckdb

    from tsdb_lake.compaction.sketches import register_duckdb_udfs

    rng = np.random.default_rng(1)
    lake = lake_mod.connect(tmp_path / "lake")
    pts = _points(rng, T0, T0 + DAY, 3000)
    with lake.writer(tenant="t") as w:
        w.write("cpu", pts)
    lake.rollup(now_ns=NOW)
    con = duckdb.connect()
    register_duckdb_udfs(con)
    glob = f"{tmp_path / 'lake'}/{layout.tier_prefix('t', 'cpu', '1h')}**/*.parquet"
    rel = con.sql(
        f"SELECT host, min(time) AS t, sum(v__count) AS n, max(v__max) AS mx, "
        f"rollup_quantile(list(v__sketch), list(v__values), list(v__weights), 0.5) AS med, "
        f"bool_or(v__sketch IS NOT NULL) AS approx, any_value(tier) AS tier, "
        f"typeof(min(time)) AS ty "
        f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY host ORDER BY host"
    ).pl()
    assert rel.get_column("tier").to_list() == ["1h"] * 3
    assert rel.get_column("ty")[0].startswith("TIMESTAMP")
    counts = pts.group_by("host").agg(pl.col("v").count()).sort("host")
    assert rel.get_column("n").to_list() == counts.get_column("v").to_list()
    exact = pts.filter(~pl.col("v").is_nan()).group_by("host").agg(pl.col("v").median()).sort("host")
    med, want = rel.get_column("med").to_numpy(), exact.get_column("v").to_numpy()
    assert np.allclose(med, want, atol=2.0)
    is_exact = ~rel.get_column("approx").to_numpy()
    assert is_exact.any()  # histograms answer exactly, like raw
    assert np.allclose(med[is_exact], want[is_exact], rtol=1e-12)


def test_dry_run_commits_nothing(tmp_path: Any) -> None:
    rng = np.random.default_rng(2)
    lake = lake_mod.connect(tmp_path / "lake")
    with lake.writer(tenant="t") as w:
        w.write("cpu", _points(rng, T0, T0 + DAY, 100))
    version = lake.snapshot().version
    report = lake.rollup(dry_run=True, now_ns=NOW)
    assert report.dry_run and [p.tier for p in report.passes] == ["1m", "1h", "1d"]
    assert report.passes[0].partitions == ["day=2023-11-14"]
    assert lake.snapshot().version == version
    assert not lake.snapshot().files("t", "cpu", "1m")


@pytest.mark.parametrize("settle_h", [0, 2])
def test_only_closed_hours_are_rolled(tmp_path: Any, settle_h: int) -> None:
    rng = np.random.default_rng(3)
    lake = lake_mod.connect(tmp_path / "lake")
    with lake.writer(tenant="t") as w:
        w.write("cpu", _points(rng, T0, T0 + 10 * HOUR, 500))
    now = T0 + 6 * HOUR + 30 * MIN
    report = lake.rollup(now_ns=now, settle_ns=settle_h * HOUR)
    marks = {p.tier: p.watermark_after for p in report.passes}
    assert marks["1m"] == T0 + (6 - settle_h) * HOUR
    assert marks["1h"] == T0 + (6 - settle_h) * HOUR
    assert marks["1d"] == T0  # no whole day is closed yet: the tier starts at the first day, empty
    assert not lake.snapshot().files("t", "cpu", "1d")
    rows = lake.snapshot().files("t", "cpu", "1m")
    assert max(f.max_time for f in rows) < T0 + (6 - settle_h) * HOUR
