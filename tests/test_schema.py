"""Frame normalisation (tsdb_lake.schema): every accepted input kind and every rejection."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from tsdb_lake.errors import (
    ErrorCode,
    InvalidFrameError,
    InvalidNameError,
    InvalidTimestampError,
    InvalidValueTypeError,
    WriteError,
)
from tsdb_lake.schema import MAX_REPORTED_ROW_ERRORS, NormalizedFrame, normalize_frame, normalized_schema

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z


def _check_form(nf: NormalizedFrame) -> None:
    schema = nf.table.schema
    assert schema == normalized_schema(nf.labels, nf.fields)
    assert schema.names == ["time", *sorted(nf.labels), *sorted(nf.fields)]
    assert schema.field("time").type == pa.int64() and not schema.field("time").nullable
    assert nf.table.column("time").null_count == 0


def test_arrow_table_passes_through_without_copy() -> None:
    time = pa.array([T0, T0 + 1], pa.int64())
    value = pa.array([1.5, float("nan")])
    host = pa.array(["a", None])
    nf = normalize_frame(pa.table({"value": value, "time": time, "host": host}), metric="cpu")
    _check_form(nf)
    assert nf.labels == ("host",)
    assert nf.fields == {"value": "float64"}
    assert nf.table.column("time").chunk(0).buffers()[1].address == time.buffers()[1].address
    assert nf.table.column("value").chunk(0).buffers()[1].address == value.buffers()[1].address
    out = nf.table.to_pydict()
    assert out["host"] == ["a", None]
    assert out["value"][0] == 1.5 and np.isnan(out["value"][1])  # NaN is a value, not a null
    assert nf.num_rows == 2


def test_record_batch_and_field_types() -> None:
    batch = pa.record_batch(
        {
            "time": pa.array([T0, T0 + 1]),
            "i8": pa.array([1, -2], pa.int8()),
            "u32": pa.array([3, 4], pa.uint32()),
            "u64": pa.array([5, 2**63 - 1], pa.uint64()),
            "f16": pa.array(np.array([0.5, 1.5], dtype=np.float16)),
            "f32": pa.array([0.25, 2.5], pa.float32()),
            "flag": pa.array([True, False]),
            "big": pa.array(["x", "y"], pa.large_string()),
            "cat": pa.array(["p", "q"]).dictionary_encode(),
        }
    )
    nf = normalize_frame(batch, metric="m")
    _check_form(nf)
    assert nf.labels == ("big", "cat")
    assert nf.fields == {
        "f16": "float64",
        "f32": "float64",
        "flag": "int64",
        "i8": "int64",
        "u32": "int64",
        "u64": "int64",
    }
    out = nf.table.to_pydict()
    assert out["flag"] == [1, 0]
    assert out["u64"] == [5, 2**63 - 1]
    assert out["f16"] == [0.5, 1.5]
    assert out["cat"] == ["p", "q"]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_pandas_naive_datetimes_of_any_unit_are_utc(unit: str) -> None:
    times = pd.to_datetime(["2024-01-01T00:00:00", "2024-01-01T00:00:01"]).as_unit(unit)
    df = pd.DataFrame({"time": times, "v": [1.0, 2.0]})
    nf = normalize_frame(df, metric="cpu")
    _check_form(nf)
    assert nf.table.column("time").to_pylist() == [T0, T0 + 1_000_000_000]


def test_pandas_tz_aware_converted_to_utc() -> None:
    times = pd.to_datetime(["2024-01-01T01:00:00"]).tz_localize("Europe/Berlin")
    df = pd.DataFrame({"time": times, "host": ["a"], "v": [1]})
    nf = normalize_frame(df, metric="cpu")
    assert nf.table.column("time").to_pylist() == [T0]
    assert nf.fields == {"v": "int64"}


def test_pandas_datetime_index_used_as_time() -> None:
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")
    df = pd.DataFrame({"v": [1.0, 2.0], "host": ["a", "b"]}, index=index)
    nf = normalize_frame(df, metric="cpu")
    assert nf.table.column("time").to_pylist() == [T0, T0 + 86_400 * 10**9]
    assert nf.labels == ("host",)


def test_pandas_categorical_nullable_and_object_columns() -> None:
    df = pd.DataFrame(
        {
            "time": np.array([T0, T0 + 5], dtype=np.int64),
            "region": pd.Categorical(["eu", "us"]),
            "host": pd.Series(["a", None], dtype=object),
            "n": pd.array([1, None], dtype="Int64"),
            "x": [0.5, 1.5],
        }
    )
    nf = normalize_frame(df, metric="cpu")
    _check_form(nf)
    out = nf.table.to_pydict()
    assert out["region"] == ["eu", "us"]
    assert out["host"] == ["a", None]
    assert out["n"] == [1, None]


def test_polars_frame_with_enum_categorical_and_tz() -> None:
    df = pl.DataFrame(
        {
            "time": pl.Series([dt.datetime(2024, 1, 1, 1)]).dt.replace_time_zone("Europe/Berlin"),
            "e": pl.Series(["p"], dtype=pl.Enum(["p", "q"])),
            "c": pl.Series(["q"], dtype=pl.Categorical),
            "s": ["host"],
            "f": pl.Series([1.5], dtype=pl.Float32),
            "u": pl.Series([3], dtype=pl.UInt64),
            "b": [True],
        }
    )
    nf = normalize_frame(df, metric="cpu")
    _check_form(nf)
    assert nf.table.to_pylist() == [{"time": T0, "c": "q", "e": "p", "s": "host", "b": 1, "f": 1.5, "u": 3}]


def test_polars_lazyframe_rejected() -> None:
    with pytest.raises(InvalidFrameError, match="collect"):
        normalize_frame(pl.LazyFrame({"time": [1], "v": [1.0]}), metric="cpu")


def test_dict_of_numpy_and_lists() -> None:
    data = {
        "time": np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:01"], dtype="datetime64[ms]"),
        "host": np.array(["a", "b"]),
        "v": [1, 2],
        "w": np.array([0.5, np.nan]),
    }
    nf = normalize_frame(data, metric="cpu")
    _check_form(nf)
    assert nf.table.column("time").to_pylist() == [T0, T0 + 10**9]
    assert nf.fields == {"v": "int64", "w": "float64"}
    assert np.isnan(nf.table.column("w").to_pylist()[1])


def test_python_datetimes_and_iso_strings() -> None:
    aware = dt.datetime(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    nf = normalize_frame({"time": [aware, dt.datetime(2024, 1, 1)], "v": [1.0, 2.0]}, metric="m")
    assert nf.table.column("time").to_pylist() == [T0, T0]
    iso = ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01 00:00:00.000000001"]
    nf = normalize_frame({"time": iso, "v": [1.0, 2.0, 3.0]}, metric="m")
    assert nf.table.column("time").to_pylist() == [T0, T0, T0 + 1]


def test_all_null_columns_are_dropped() -> None:
    nf = normalize_frame(
        {"time": [1, 2], "v": [1.0, 2.0], "none": [None, None], "h": pa.array([None, None], pa.string())},
        metric="m",
    )
    assert nf.labels == () and list(nf.fields) == ["v"]


def test_columns_are_sorted_by_name() -> None:
    nf = normalize_frame({"z": [1.0], "b": ["x"], "time": [1], "a": [2], "y": ["y"]}, metric="m")
    assert nf.table.schema.names == ["time", "b", "y", "a", "z"]


# ------------------------------------------------------------------------------------------- rejections


def test_unsupported_frame_type() -> None:
    with pytest.raises(InvalidFrameError, match="cannot write a list"):
        normalize_frame([1, 2, 3], metric="m")


def test_empty_frame() -> None:
    with pytest.raises(InvalidFrameError, match="empty"):
        normalize_frame({"time": [], "v": []}, metric="m")
    with pytest.raises(InvalidFrameError, match="empty"):
        normalize_frame(pd.DataFrame({"time": pd.Series([], dtype="int64"), "v": []}), metric="m")


def test_missing_time() -> None:
    with pytest.raises(InvalidTimestampError, match="no 'time' column"):
        normalize_frame({"v": [1.0]}, metric="m")


def test_mismatched_lengths() -> None:
    with pytest.raises(InvalidFrameError, match="different lengths"):
        normalize_frame({"time": [1, 2], "v": [1.0]}, metric="m")


def test_no_field_columns() -> None:
    with pytest.raises(InvalidFrameError, match="no field columns"):
        normalize_frame({"time": [1], "host": ["a"]}, metric="m")


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("blob", [b"x"]),
        ("nested", [[1, 2]]),
        ("dec", pa.array([1], pa.decimal128(5, 2))),
        ("day", [dt.date(2024, 1, 1)]),
        ("stamp", [dt.datetime(2024, 1, 1)]),
        ("struct", [{"a": 1}]),
        ("intcat", pa.array([1]).dictionary_encode()),
    ],
)
def test_unsupported_value_types_name_the_column(column: str, values: Any) -> None:
    with pytest.raises(InvalidValueTypeError, match=repr(column)):
        normalize_frame({"time": [1], "v": [1.0], column: values}, metric="m")


def test_mixed_object_column_rejected() -> None:
    with pytest.raises(InvalidValueTypeError, match="'mixed'"):
        normalize_frame(pd.DataFrame({"time": [1, 2], "v": [1.0, 2.0], "mixed": ["a", 1]}), metric="m")


def test_unsupported_time_type() -> None:
    with pytest.raises(InvalidTimestampError, match="type double"):
        normalize_frame({"time": [1.5], "v": [1.0]}, metric="m")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a/b", "field"), ("..", "field"), ("_x", "field"), ("tier", "field"), ("bad name", "label")],
)
def test_invalid_column_names(name: str, kind: str) -> None:
    value: Any = ["x"] if kind == "label" else [1.0]
    frame = {"time": [1], "v": [1.0], name: value}
    with pytest.raises(InvalidNameError, match=kind):
        normalize_frame(frame, metric="m")


def test_invalid_metric_and_non_string_column_name() -> None:
    with pytest.raises(InvalidNameError, match="metric"):
        normalize_frame({"time": [1], "v": [1.0]}, metric="a/b")
    with pytest.raises(InvalidNameError, match="must be strings"):
        normalize_frame(pd.DataFrame({"time": [1], 5: [1.0]}), metric="m")


def test_duplicate_pandas_columns() -> None:
    df = pd.DataFrame([[1, 1.0, 2.0]], columns=["time", "v", "v"])
    with pytest.raises(InvalidFrameError, match="more than once"):
        normalize_frame(df, metric="m")


def _rows(exc: pytest.ExceptionInfo[WriteError]) -> list[tuple[int, str | None]]:
    return [(r.row, r.column) for r in exc.value.rows]


def test_null_and_nat_times_listed_by_row() -> None:
    df = pd.DataFrame({"time": pd.to_datetime(["2024-01-01", None, "2024-01-02", None]), "v": [1.0] * 4})
    with pytest.raises(WriteError) as info:
        normalize_frame(df, metric="m")
    assert _rows(info) == [(1, "time"), (3, "time")]
    assert info.value.code is ErrorCode.INVALID_TIMESTAMP
    assert "NaT" in info.value.rows[0].reason


def test_out_of_range_times() -> None:
    times = np.array(["2500-01-01", "2024-01-01", "1500-01-01"], dtype="datetime64[us]")
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": times, "v": [1.0, 2.0, 3.0]}, metric="m")
    assert _rows(info) == [(0, "time"), (2, "time")]
    assert "range" in info.value.rows[0].reason
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": pa.array([2**63, 1], pa.uint64()), "v": [1.0, 2.0]}, metric="m")
    assert _rows(info) == [(0, "time")]
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": [-(2**63), 1], "v": [1.0, 2.0]}, metric="m")
    assert _rows(info) == [(0, "time")]


def test_unparsable_time_strings() -> None:
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": ["2024-01-01", "yesterday", None], "v": [1.0, 2.0, 3.0]}, metric="m")
    assert _rows(info) == [(1, "time"), (2, "time")]
    assert "yesterday" in info.value.rows[0].reason


def test_uint64_beyond_int64() -> None:
    values = pa.array([1, 2**64 - 1, 2**63], pa.uint64())
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": [1, 2, 3], "n": values}, metric="m")
    assert _rows(info) == [(1, "n"), (2, "n")]


def test_rows_without_any_field() -> None:
    frame = {"time": [1, 2, 3], "a": [1.0, None, None], "b": pa.array([None, None, 5], pa.int64())}
    with pytest.raises(WriteError) as info:
        normalize_frame(frame, metric="m")
    assert _rows(info) == [(1, None)]
    assert "no field value" in info.value.rows[0].reason


def test_bad_label_values() -> None:
    frame = {"time": [1, 2, 3], "v": [1.0, 2.0, 3.0], "h": ["ok", "nul\x00", "x" * 5000]}
    with pytest.raises(WriteError) as info:
        normalize_frame(frame, metric="m")
    assert _rows(info) == [(1, "h"), (2, "h")]
    assert "NUL" in info.value.rows[0].reason and "longer" in info.value.rows[1].reason


def test_row_error_list_is_capped_with_total() -> None:
    n = 1000
    times = pa.array([None] * n, pa.int64())
    with pytest.raises(WriteError) as info:
        normalize_frame({"time": times, "v": np.ones(n)}, metric="m")
    assert len(info.value.rows) == MAX_REPORTED_ROW_ERRORS
    assert "1000 invalid" in str(info.value)


def test_large_frame_is_fast_enough() -> None:
    n = 1_000_000
    frame = pa.table(
        {
            "time": pa.array(np.arange(n, dtype=np.int64)),
            "host": pa.array(np.array(["a", "b"])[np.arange(n) % 2]).dictionary_encode(),
            "v": pa.array(np.random.default_rng(0).random(n)),
            "n": pa.array(np.arange(n, dtype=np.int32)),
        }
    )
    nf = normalize_frame(frame, metric="m")
    assert nf.num_rows == n and nf.fields == {"n": "int64", "v": "float64"}


def test_bad_label_values_are_reported_on_every_row_holding_them() -> None:
    """Label values are checked once per distinct label row; every row holding a bad value is reported."""
    frame = {
        "time": [1, 2, 3, 4, 5],
        "v": [1.0] * 5,
        "h": ["ok", "nul\x00", "ok", "nul\x00", None],
        "d": ["x"] * 5,
    }
    with pytest.raises(WriteError) as info:
        normalize_frame(frame, metric="m")
    assert _rows(info) == [(1, "h"), (3, "h")]


def test_normalized_batch_is_grouped_by_series() -> None:
    nf = normalize_frame({"time": [1, 2, 3], "h": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]}, metric="m")
    assert nf.batch.series.to_pydict() == {"h": ["a", "b"]}
    assert nf.batch.points.column("_group").to_pylist() == [0, 1, 0]
    assert nf.batch.expand().equals(nf.table)
