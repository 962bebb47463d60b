"""``lake.query(filter=...)``: field-value predicates, their chunk pruning, duplicates, parsing and errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tsdb_lake
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.query.polars_io import ScanRecord, scan_metric
from tsdb_lake.query.predicates import FieldPredicate, parse_filter

S = 1_000_000_000
H = 3600 * S
T0 = 1_700_000_000 * S // H * H
STEP = 10 * S  # 60 points per chunk: 10-minute chunks
HOSTS = ["a", "b", "c", "d"]


def _points() -> pl.DataFrame:
    """Four hosts over two hours; only host ``b`` in its second hour goes above 90 (plus scattered NaN in
    ``c``); ``i`` is an int64 field equal to the point's index within its host."""
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = []
    for host in HOSTS:
        for k in range(2 * 360):
            v = float(rng.uniform(0, 80))
            if host == "b" and k >= 360 and k % 50 == 0:
                v = 95.0 + k / 1000
            if host == "c" and k % 41 == 0:
                v = math.nan
            rows.append({"time": T0 + k * STEP, "host": host, "v": v, "i": k})
    return pl.DataFrame(rows, schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "i": pl.Int64})


def _write(lake: tsdb_lake.Lake, frame: pl.DataFrame, *, flush: bool = True) -> Any:
    w = lake.writer(max_chunk_points=60)
    w.write("m", frame)
    if flush:
        w.flush()
        w.close()
        return None
    return w


@pytest.fixture
def lake(tmp_path: Path) -> tsdb_lake.Lake:
    lk = tsdb_lake.connect(tmp_path / "lake")
    _write(lk, _points())
    return lk


def _ieee(frame: pl.DataFrame, expr: pl.Expr) -> pl.DataFrame:
    """Rows passing ``expr`` where NaN never passes (the filter semantics for every operator but !=)."""
    return frame.filter(expr & pl.col("v").is_not_nan())


def test_filter_prunes_chunks_and_matches_post_filter(lake: tsdb_lake.Lake) -> None:
    everything = lake.query("m", T0, T0 + 2 * H)
    got, report = lake.query("m", T0, T0 + 2 * H, filter="v > 90", explain=True)
    assert_frame_equal(got, _ieee(everything, pl.col("v") > 90))
    assert got.height == len(range(400, 720, 50)) and set(got["host"].to_list()) == {"b"}
    # 4 hosts x 12 chunks; only host b's 6 chunks of its second hour hold values above 90
    assert report["chunks_read"] == 48
    assert report["chunks_pruned_by_values"] == 42
    assert report["chunks_decoded"] == 6


def test_filter_with_where_fields_and_int_predicates(lake: tsdb_lake.Lake) -> None:
    everything = lake.query("m", T0, T0 + 2 * H)
    got, report = lake.query(
        "m", T0, T0 + 2 * H, where={"host": ["a", "c"]}, filter="i >= 700, v < 50", fields=["i"], explain=True
    )
    want = _ieee(
        everything.filter(pl.col("host").is_in(["a", "c"])), (pl.col("i") >= 700) & (pl.col("v") < 50)
    )
    assert_frame_equal(got, want.select(got.columns))
    assert "v" not in got.columns  # a filter field not asked for is not returned
    # i >= 700 rules out every chunk but the last of each host
    assert report["chunks_pruned_by_values"] == 2 * 11


def test_nan_satisfies_only_not_equal(lake: tsdb_lake.Lake) -> None:
    everything = lake.query("m", T0, T0 + 2 * H, where={"host": "c"})
    nans = everything.filter(pl.col("v").is_nan()).height
    assert nans > 0
    assert (
        lake.query("m", T0, T0 + 2 * H, where={"host": "c"}, filter="v >= 0").height
        == everything.height - nans
    )
    assert lake.query("m", T0, T0 + 2 * H, where={"host": "c"}, filter="v != -1").height == everything.height
    assert lake.query("m", T0, T0 + 2 * H, where={"host": "c"}, filter="v == inf").height == 0


def test_bucketed_query_aggregates_only_passing_points(lake: tsdb_lake.Lake) -> None:
    everything = lake.query("m", T0, T0 + 2 * H)
    got = lake.query("m", T0, T0 + 2 * H, filter={"v": "> 90"}, every="1h", agg=["count", "max"], by=[])
    want = (
        _ieee(everything, pl.col("v") > 90)
        .group_by((pl.col("time").dt.epoch("ns") // H * H).alias("t"))
        .agg(pl.col("v").count().cast(pl.Int64).alias("v_count"), pl.col("v").max().alias("v_max"))
        .sort("t")
    )
    assert got["time"].dt.epoch("ns").to_list() == want["t"].to_list()
    assert got["v_count"].to_list() == want["v_count"].to_list()
    assert got["v_max"].to_list() == want["v_max"].to_list()


def test_newer_duplicate_decides_even_when_its_chunk_is_pruned(tmp_path: Path) -> None:
    lake = tsdb_lake.connect(tmp_path / "lake")
    base = pl.DataFrame({"time": [T0 + k * S for k in range(10)], "host": ["a"] * 10, "v": [95.0] * 10})
    _write(lake, base)
    # a newer file overwrites three points with values a > 90 filter rules out (its chunk prunes by max)
    _write(lake, base.head(3).with_columns(pl.lit(50.0).alias("v")))
    got = lake.query("m", T0, T0 + H, filter="v > 90")
    assert got["time"].dt.epoch("ns").to_list() == [T0 + k * S for k in range(3, 10)]
    # unflushed writes win the same way, and a newer high value surfaces over an old low one
    w = _write(lake, base.slice(5, 2).with_columns(pl.lit(10.0).alias("v")), flush=False)
    try:
        w.write("m", base.slice(0, 1).with_columns(pl.lit(99.0).alias("v")))
        got = lake.query("m", T0, T0 + H, filter="v > 90")
        assert got["time"].dt.epoch("ns").to_list() == [T0 + k * S for k in (0, 3, 4, 7, 8, 9)]
        assert got["v"].to_list() == [99.0, 95.0, 95.0, 95.0, 95.0, 95.0]
    finally:
        w.close()


def test_filter_forms_parse_to_the_same_predicates() -> None:
    want = [FieldPredicate("v", ">", 90), FieldPredicate("i", "<=", 5.5)]
    assert parse_filter("v > 90, i <= 5.5") == want
    assert parse_filter("v > 90 and i <= 5.5") == want
    assert parse_filter({"v": "> 90", "i": ("<=", 5.5)}) == want
    assert parse_filter(want) == want
    assert parse_filter({"v": 3}) == [FieldPredicate("v", "==", 3)]
    assert parse_filter("v = -1e3") == [FieldPredicate("v", "==", -1000.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filter": "nope > 1"}, "not fields"),
        ({"filter": "host > 1"}, "labels are matched with where="),
        ({"filter": "v >> 1"}, "cannot parse filter"),
        ({"filter": {"v": "> high"}}, "cannot parse filter"),
        ({"filter": {"v": ("~", 1)}}, "unknown filter operator"),
        ({"filter": {"v": ("==", "1")}}, "compares with a number"),
        ({"filter": {"v": ("==", True)}}, "compares with a number"),
        ({"filter": {"v": ("<", math.nan)}}, "NaN bound"),
        ({"filter": ["v > 1"]}, "FieldPredicate objects"),
        ({"filter": "v > 1", "every": "1h", "resolution": "1h"}, "answers from rollups"),
    ],
)
def test_bad_filters_raise_typed_errors(lake: tsdb_lake.Lake, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        lake.query("m", T0, T0 + H, **kwargs)


def test_scan_pushes_field_comparisons_with_polars_nan_order(lake: tsdb_lake.Lake) -> None:
    records: list[ScanRecord] = []
    lf = scan_metric(lake, "m", tenant="default", on_explain=records.append)
    everything = lake.query("m", T0, T0 + 2 * H)
    # polars keeps NaN rows for > (NaN sorts above numbers); the pushed filter must keep them too
    got = lf.filter(pl.col("v") > 90).collect()
    assert_frame_equal(got, everything.filter(pl.col("v") > 90))
    assert got.filter(pl.col("v").is_nan()).height > 0
    assert records[-1].filters == [FieldPredicate("v", ">", 90, nan_matches=True)]
    # < never holds for NaN in either order: chunks prune on their minimum
    got = lf.filter(pl.col("i") < 10).collect()
    assert_frame_equal(got, everything.filter(pl.col("i") < 10))
    assert records[-1].to_dict()["filter"] == ["i < 10"]
    assert records[-1].explain["chunks_pruned_by_values"] == 4 * 11
