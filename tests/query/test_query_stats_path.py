"""count / min / max answered from chunk statistics equal the decode path and a hand-computed expectation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import tsdb_lake

S = 1_000_000_000
M = 60 * S
H = 3600 * S
T0 = 1_700_000_000 * S // H * H
STEP = 10 * S  # one point every 10 s; 60 points per chunk = 10-minute chunks
AGGS = ["count", "min", "max"]


def _points() -> pl.DataFrame:
    """Three hosts over three hours: float ``v`` with scattered NaN, a NaN-only and a null-only chunk of ``v``,
    and an int64 ``i`` with a null-only chunk."""
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(7)
    for h, host in enumerate(["a", "b", "c"]):
        for k in range(3 * 360):
            t = T0 + k * STEP
            v: float | None = float(rng.normal(100 * h, 10))
            i: int | None = int(rng.integers(-(2**40), 2**40))
            chunk = k // 60
            if k % 37 == 5:
                v = math.nan
            if host == "b" and chunk == 4:
                v = math.nan  # a NaN-only chunk
            if host == "c" and chunk == 7:
                v = None  # a null-only chunk
            if host == "c" and chunk == 9:
                i = None
            rows.append({"time": t, "host": host, "v": v, "i": i})
    return pl.DataFrame(rows, schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "i": pl.Int64})


def _write(lake: tsdb_lake.Lake, frame: pl.DataFrame, *, flush: bool = True) -> None:
    w = lake.writer(max_chunk_points=60)
    try:
        w.write("m", frame)
        if flush:
            w.flush()
    finally:
        w.close()


@pytest.fixture
def lake(tmp_path: Path) -> tsdb_lake.Lake:
    lk = tsdb_lake.connect(tmp_path / "lake")
    _write(lk, _points())
    return lk


def _expected(points: pl.DataFrame, start: int, end: int, every: int, by: list[str] | None) -> pl.DataFrame:
    """Independent answer: last write wins per (host, time), then polars group-by (count non-null incl. NaN;
    min / max ignore NaN unless all NaN)."""
    keys = ["host"] if by is None else by
    frame = points.unique(["host", "time"], keep="last").filter(
        (pl.col("time") >= start) & (pl.col("time") < end)
    )
    out = (
        frame.with_columns((pl.col("time") // every * every).alias("time"))
        .group_by([*keys, "time"])
        .agg(
            [
                expr
                for f in ("v", "i")
                for expr in (
                    pl.col(f).count().cast(pl.Int64).alias(f"{f}_count"),
                    pl.col(f).min().alias(f"{f}_min"),
                    pl.col(f).max().alias(f"{f}_max"),
                )
            ]
        )
        .sort([*keys, "time"])
    )
    return out


def _query(
    lake: tsdb_lake.Lake, start: int, end: int, every: int, agg: list[str], **kw: Any
) -> tuple[pl.DataFrame, dict[str, Any]]:
    frame, report = lake.query(
        "m", start, end, every=f"{every // S}s", agg=agg, resolution="raw", explain=True, **kw
    )
    frame = frame.with_columns(pl.col("time").dt.epoch("ns"))
    keys = [c for c in ("host",) if c in frame.columns]
    cols = [*keys, "time", *[f"{f}_{a}" for f in ("v", "i") for a in AGGS]]
    return frame.select(cols).sort([*keys, "time"]), report


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns and a.height == b.height, (a, b)
    assert a.schema == b.schema
    for col in a.columns:
        for x, y in zip(a[col].to_list(), b[col].to_list(), strict=True):
            if isinstance(x, float) and math.isnan(x):
                assert isinstance(y, float) and math.isnan(y), (col, x, y)
            else:
                assert x == y and type(x) is type(y), (col, x, y)


def _check(
    lake: tsdb_lake.Lake,
    points: pl.DataFrame,
    start: int,
    end: int,
    every: int,
    by: list[str] | None = None,
    **kw: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stats path == decode path (forced by adding ``sum``) == expectation; return both explain reports."""
    fast, fast_report = _query(lake, start, end, every, AGGS, by=by, **kw)
    slow, slow_report = _query(lake, start, end, every, [*AGGS, "sum"], by=by, **kw)
    assert slow_report["chunks_answered_by_stats"] == 0
    _same(fast, slow)
    if "fill" not in kw:
        _same(fast, _expected(points, start, end, every, by).select(fast.columns))
    return fast_report, slow_report


def test_hour_buckets_over_hour_files_use_stats(lake: tsdb_lake.Lake) -> None:
    fast, slow = _check(lake, _points(), T0, T0 + 3 * H, H)
    # every chunk is whole, inside one hour and without overlaps: nothing decodes
    assert fast["chunks_answered_by_stats"] == slow["chunks_decoded"] == 3 * 3 * 6
    assert fast["chunks_decoded"] == 0 and fast["points_decoded"] == 0
    # and the codec blobs are never read: the statistics path reads bounds, labels and stats only
    assert fast["bytes_read"] < slow["bytes_read"] / 2


def test_group_by_across_series_and_fill(lake: tsdb_lake.Lake) -> None:
    fast, _ = _check(lake, _points(), T0, T0 + 3 * H, H, by=[])
    assert fast["chunks_answered_by_stats"] == 54 and fast["chunks_decoded"] == 0
    fast, _ = _check(lake, _points(), T0 - 2 * H, T0 + 5 * H, H, fill="null")
    assert fast["chunks_answered_by_stats"] == 54
    filled, _ = _query(lake, T0 - 2 * H, T0 + 5 * H, H, AGGS, fill="previous")
    assert filled.height == 3 * 7
    assert filled.filter(pl.col("time") == T0 + 4 * H)["v_count"].to_list() == [360, 360, 360]


def test_buckets_smaller_than_a_chunk_decode(lake: tsdb_lake.Lake) -> None:
    fast, slow = _check(lake, _points(), T0, T0 + 3 * H, 5 * M)
    assert fast["chunks_answered_by_stats"] == 0
    assert fast["chunks_decoded"] == slow["chunks_decoded"] == 54


def test_partial_chunks_at_range_edges_decode(lake: tsdb_lake.Lake) -> None:
    start, end = T0 + 5 * M, T0 + 2 * H + 35 * M
    fast, slow = _check(lake, _points(), start, end, H)
    # per host: the first chunk (starts before start) and the last (ends at or after end) decode
    assert fast["chunks_decoded"] == 3 * 2
    assert fast["chunks_answered_by_stats"] == slow["chunks_decoded"] - 3 * 2
    fast, _ = _check(lake, _points(), start, end, 30 * M, by=["host"])
    assert fast["chunks_answered_by_stats"] > 0


def test_overlapping_late_data_disables_stats_for_that_series(lake: tsdb_lake.Lake) -> None:
    late = pl.DataFrame(
        {"time": [T0 + 30 * M + 5 * S, T0 + 40 * M], "host": ["a", "a"], "v": [-1e9, 1e9], "i": [2**50, 3]},
        schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "i": pl.Int64},
    )
    _write(lake, late)  # overlaps host a's chunks in another file; T0 + 40m replaces an existing point
    points = pl.concat([_points(), late])
    fast, _ = _check(lake, points, T0, T0 + 3 * H, H)
    assert fast["chunks_answered_by_stats"] == 2 * 18  # hosts b and c only
    assert fast["chunks_decoded"] == 18 + 1
    out, _ = _query(lake, T0, T0 + 3 * H, H, AGGS)
    first_a = out.filter((pl.col("host") == "a") & (pl.col("time") == T0))
    assert (
        first_a["v_min"].item() == -1e9
        and first_a["v_max"].item() == 1e9
        and first_a["i_max"].item() == 2**50
    )
    assert first_a["v_count"].item() == 361


def test_overlapping_memtable_disables_stats_for_that_series(lake: tsdb_lake.Lake) -> None:
    w = lake.writer(max_chunk_points=60)
    try:
        unflushed = pl.DataFrame(
            {"time": [T0 + H + 10 * S, T0 + 4 * H], "host": ["b", "c"], "v": [5e9, 7.0], "i": [1, 2]},
            schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "i": pl.Int64},
        )
        w.write("m", unflushed)
        points = pl.concat([_points(), unflushed])
        fast, _ = _check(lake, points, T0, T0 + 5 * H, H)
        # b's memtable point overlaps its files: b decodes; c's lies after its chunks: c keeps its stats
        assert fast["chunks_answered_by_stats"] == 2 * 18
        assert fast["memtable_batches"] >= 1
    finally:
        w.close()


def test_nan_only_and_null_only_chunks(lake: tsdb_lake.Lake) -> None:
    # 10-minute buckets: each bucket is exactly one chunk, answered by its statistics alone
    fast, _ = _check(lake, _points(), T0, T0 + 3 * H, 10 * M)
    assert fast["chunks_answered_by_stats"] == 54 and fast["chunks_decoded"] == 0
    out, _ = _query(lake, T0, T0 + 3 * H, 10 * M, AGGS)
    nan_chunk = out.filter((pl.col("host") == "b") & (pl.col("time") == T0 + 40 * M))
    assert nan_chunk["v_count"].item() == 60
    assert math.isnan(nan_chunk["v_min"].item()) and math.isnan(nan_chunk["v_max"].item())
    null_chunk = out.filter((pl.col("host") == "c") & (pl.col("time") == T0 + 70 * M))
    assert null_chunk["v_count"].item() == 0 and null_chunk["v_min"].item() is None
    assert null_chunk["i_count"].item() == 60
    int_null = out.filter((pl.col("host") == "c") & (pl.col("time") == T0 + 90 * M))
    assert int_null["i_count"].item() == 0 and int_null["i_max"].item() is None
    assert out["i_min"].dtype == pl.Int64 and out["i_count"].dtype == pl.Int64


def test_int64_extremes_are_exact(tmp_path: Path) -> None:
    lk = tsdb_lake.connect(tmp_path / "lake")
    big = 2**62 + 1
    frame = pl.DataFrame(
        {
            "time": [T0 + k * STEP for k in range(120)],
            "host": ["a"] * 120,
            "v": [0.5] * 120,
            "i": [big - k if k % 2 else -big + k for k in range(120)],
        },
        schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "i": pl.Int64},
    )
    _write(lk, frame)
    fast, _ = _check(lk, frame, T0, T0 + H, H)
    assert fast["chunks_answered_by_stats"] == 2
    out, _ = _query(lk, T0, T0 + H, H, AGGS)
    assert out["i_min"].item() == -big and out["i_max"].item() == big - 1
