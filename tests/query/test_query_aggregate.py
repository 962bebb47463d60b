"""Bucketed aggregation semantics on hand-checked frames."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.query.aggregate import aggregate, parse_aggs

S = 1_000_000_000


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_series_id": pl.Series([1, 1, 1, 1, 2, 2], dtype=pl.UInt64),
            "time": [0, 10 * S, 60 * S, 70 * S, 5 * S, 65 * S],
            "host": ["a", "a", "a", "a", "b", "b"],
            "v": [1.0, 3.0, float("nan"), 5.0, 10.0, 20.0],
            "c": [10.0, 15.0, 2.0, 6.0, 0.0, 1.0],
        }
    )


def test_per_series_minute_buckets() -> None:
    out = aggregate(
        _frame(),
        every=60 * S,
        aggs=parse_aggs(["avg", "min", "max", "count", "first", "last"]),
        fields=["v"],
        group_labels=["host"],
        per_series=True,
        start=0,
        end=120 * S,
    )
    a = out.filter(pl.col("host") == "a").sort("time")
    assert a["time"].to_list() == [0, 60 * S]
    assert a["v_avg"][0] == 2.0 and math.isnan(a["v_avg"][1])
    assert a["v_min"].to_list() == [1.0, 5.0]  # NaN ignored by min/max
    assert a["v_max"].to_list() == [3.0, 5.0]
    assert a["v_count"].to_list() == [2, 2]
    assert a["v_first"].to_list()[0] == 1.0 and a["v_last"].to_list()[1] == 5.0


def test_group_by_across_series_and_quantiles() -> None:
    out = aggregate(
        _frame().filter(pl.col("v").is_not_nan()),
        every=60 * S,
        aggs=parse_aggs(["sum", "p50"]),
        fields=["v"],
        group_labels=[],
        per_series=False,
        start=0,
        end=120 * S,
    )
    assert out["v_sum"].to_list() == [14.0, 25.0]
    assert out["v_p50"].to_list() == [3.0, 12.5]


def test_counter_increase_is_reset_aware() -> None:
    out = aggregate(
        _frame(),
        every=60 * S,
        aggs=parse_aggs(["increase", "rate"]),
        fields=["c"],
        group_labels=["host"],
        per_series=True,
        start=0,
        end=120 * S,
    )
    a = out.filter(pl.col("host") == "a").sort("time")
    # 10 -> 15 (+5) in bucket 0; 15 -> 2 is a reset (+2), 2 -> 6 (+4) in bucket 1
    assert a["c_increase"].to_list() == [5.0, 6.0]
    assert a["c_rate"].to_list() == [5.0 / 60, 6.0 / 60]


@pytest.mark.parametrize(
    "fill,expected", [("null", [1.0, None, 5.0]), ("previous", [1.0, 1.0, 5.0]), ("linear", [1.0, 3.0, 5.0])]
)
def test_fill_empty_buckets(fill: str, expected: list[float | None]) -> None:
    frame = pl.DataFrame(
        {
            "_series_id": pl.Series([1, 1], dtype=pl.UInt64),
            "time": [0, 120 * S],
            "host": ["a", "a"],
            "v": [1.0, 5.0],
        }
    )
    out = aggregate(
        frame,
        every=60 * S,
        aggs=parse_aggs("avg"),
        fields=["v"],
        group_labels=["host"],
        per_series=True,
        start=0,
        end=180 * S,
        fill=fill,
    )
    assert out["v_avg"].to_list() == expected


def test_unknown_aggregate_is_a_typed_error() -> None:
    with pytest.raises(InvalidQueryError, match="unknown aggregate"):
        parse_aggs(["avg", "p999x"])


def test_counter_increase_chains_over_missing_values() -> None:
    frame = pl.DataFrame(
        {
            "_series_id": pl.Series([1, 1, 1], dtype=pl.UInt64),
            "time": [0, 10 * S, 20 * S],
            "host": ["a"] * 3,
            "c": [1.0, None, 4.0],
        }
    )
    out = aggregate(
        frame,
        every=60 * S,
        aggs=parse_aggs("increase"),
        fields=["c"],
        group_labels=["host"],
        per_series=True,
        start=0,
        end=60 * S,
    )
    assert out["c_increase"].to_list() == [3.0]
