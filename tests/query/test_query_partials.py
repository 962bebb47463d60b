"""count / sum / avg / min / max reduced per (series, bucket) — whole chunks while decoding, edge chunks per
point — equal an independent polars answer, with NaN, nulls, int64 fields, duplicates and unflushed data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

import tsdb_lake

S = 1_000_000_000
H = 3600 * S
T0 = 1_700_000_000 * S // H * H
STEP = 10 * S  # 60 points per chunk: 10-minute chunks
AGGS = ["count", "sum", "avg", "min", "max"]


def _points(seed: int, hosts: list[str]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for h, host in enumerate(hosts):
        for k in range(2 * 360):
            v: float | None = float(rng.normal(10 * h, 3))
            i: int | None = int(rng.integers(-1000, 1000))
            if k % 29 == 3:
                v = math.nan
            if k % 31 == 7:
                v = None
            if host == "b" and 120 <= k < 180:
                v = None  # a chunk without a value of v
            if host == "b" and 240 <= k < 300:
                v, i = math.nan, None  # a chunk of NaN only, without a value of i
            rows.append({"time": T0 + k * STEP, "host": host, "dc": f"dc{h % 2}", "v": v, "i": i})
    schema = {"time": pl.Int64, "host": pl.String, "dc": pl.String, "v": pl.Float64, "i": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _expected(points: pl.DataFrame, start: int, end: int, every: int, keys: list[str]) -> pl.DataFrame:
    frame = points.unique(["host", "time"], keep="last").filter(
        (pl.col("time") >= start) & (pl.col("time") < end)
    )
    exprs = []
    for f in ("v", "i"):
        col = pl.col(f)
        exprs += [
            col.count().cast(pl.Int64).alias(f"{f}_count"),
            col.sum().alias(f"{f}_sum"),
            col.cast(pl.Float64).mean().alias(f"{f}_avg"),
            col.min().alias(f"{f}_min"),
            col.max().alias(f"{f}_max"),
        ]
    bucketed = frame.with_columns((pl.col("time") // every * every).alias("time"))
    return bucketed.group_by([*keys, "time"]).agg(exprs).sort([*keys, "time"])


def _same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.height == want.height, (got, want)
    for col in want.columns:
        for x, y in zip(got[col].to_list(), want[col].to_list(), strict=True):
            if isinstance(y, float) and math.isnan(y):
                assert isinstance(x, float) and math.isnan(x), (col, x, y)
            elif isinstance(y, float):
                assert x is not None and math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12), (col, x, y)
            else:
                assert x == y, (col, x, y)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tsdb_lake.Lake, pl.DataFrame]]:
    """Two flushes (the second rewrites part of host a: newer wins) and an unflushed writer's points."""
    lake = tsdb_lake.connect(tmp_path_factory.mktemp("partials") / "lake")
    first = _points(1, ["a", "b", "c"])
    late = _points(2, ["a"]).filter((pl.col("time") >= T0 + H // 2) & (pl.col("time") < T0 + H))
    pending = _points(3, ["c"]).filter(pl.col("time") >= T0 + H + H // 2)
    with lake.writer(max_chunk_points=60) as w:
        w.write("m", first)
        w.flush()
        w.write("m", late)
        w.flush()
    w = lake.writer(max_chunk_points=60)
    try:
        w.write("m", pending)
        yield lake, pl.concat([first, late, pending])
    finally:
        w.close()


@pytest.mark.parametrize("by", [None, ["dc"], []])
@pytest.mark.parametrize(
    ("start", "end"), [(T0, T0 + 2 * H), (T0 + 17 * S * 60 + 3 * S, T0 + H + 55 * 60 * S)]
)
def test_decomposable_aggregates_match_polars(
    written: tuple[tsdb_lake.Lake, pl.DataFrame], by: list[str] | None, start: int, end: int
) -> None:
    lake, points = written
    for every in (H, 10 * 60 * S, 7 * 60 * S):
        got = lake.query("m", start, end, every=f"{every // S}s", agg=AGGS, by=by, resolution="raw")
        keys = ["host", "dc"] if by is None else by
        got = got.with_columns(pl.col("time").dt.epoch("ns")).sort([*keys, "time"])
        _same(got, _expected(points, start, end, every, keys))
