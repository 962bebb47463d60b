"""Normalise user frames (pandas, polars, Arrow, dicts of arrays) into the one Arrow form the lake ingests.

The normalised table has the column ``time`` (int64 ns since the epoch, UTC, never null), then the label
columns sorted by name (``pa.string()``, null = label absent on that row), then the field columns sorted by
name (``float64`` or ``int64``, null = field absent at that point). NaN is a legal float value, not a null.
A column holding no values at all (every entry null) carries nothing in the tag/field model and is dropped.

Everything here is vectorised (pyarrow.compute / numpy); columns already in normal form pass through without
a copy. Whole-frame problems raise a typed :mod:`tsdb_lake.errors` error; row-level problems raise one
:class:`~tsdb_lake.errors.WriteError` listing the offending rows (0-based) and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tsdb_lake.errors import (
    ErrorCode,
    InvalidFrameError,
    InvalidNameError,
    InvalidTimestampError,
    InvalidValueTypeError,
    RowError,
    WriteError,
)
from tsdb_lake.grouping import GroupedBatch, group_rows
from tsdb_lake.model import MAX_LABEL_VALUE_BYTES, TIME_COLUMN, validate_label_value, validate_name

__all__ = [
    "MAX_REPORTED_ROW_ERRORS",
    "FieldType",
    "NormalizedFrame",
    "normalize_columns",
    "normalize_frame",
    "normalized_schema",
]

FieldType = Literal["float64", "int64"]
#: At most this many :class:`RowError` entries are attached to one :class:`WriteError`.
MAX_REPORTED_ROW_ERRORS = 100

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_FIELD_ARROW_TYPES: dict[str, pa.DataType] = {"float64": pa.float64(), "int64": pa.int64()}

#: A pa.Array or pa.ChunkedArray (typed loosely: the pyarrow stubs are stricter than the runtime).
Column = Any


@dataclass(frozen=True)
class NormalizedFrame:
    """A frame in normal form: ``table`` (time, sorted labels, sorted fields), its label and field names, and
    ``batch``, the same rows grouped by label values."""

    table: pa.Table
    labels: tuple[str, ...]
    fields: dict[str, FieldType]
    #: The same rows grouped by series (what the writer logs and buffers).
    batch: GroupedBatch

    @property
    def num_rows(self) -> int:
        """Number of points (rows)."""
        return int(self.table.num_rows)


def normalized_schema(labels: Sequence[str], fields: Mapping[str, FieldType]) -> pa.Schema:
    """The Arrow schema of a normalised frame with these labels and fields (both emitted sorted by name)."""
    cols: list[pa.Field[Any]] = [pa.field(TIME_COLUMN, pa.int64(), nullable=False)]
    cols += [pa.field(name, pa.string()) for name in sorted(labels)]
    cols += [pa.field(name, _FIELD_ARROW_TYPES[fields[name]]) for name in sorted(fields)]
    return pa.schema(cols)


def normalize_frame(frame: object, *, metric: str) -> NormalizedFrame:
    """Normalise a pandas / polars DataFrame, pyarrow Table / RecordBatch or dict of arrays for ``metric``.

    pandas: a ``DatetimeIndex`` (or an index named ``time``) is used as the time when there is no ``time``
    column; other indexes are ignored. Raises typed errors (see module docstring); never a bare ValueError.
    """
    validate_name("metric", metric)
    return normalize_columns(_columns_of(frame), metric=metric)


def normalize_columns(columns: Sequence[tuple[object, Column]], *, metric: str) -> NormalizedFrame:
    """Normalise named Arrow columns (all the same length); the shared core of every ingestion path."""
    validate_name("metric", metric)
    names = [name for name, _ in columns]
    seen: set[object] = set()
    for name in names:
        if name in seen:
            raise InvalidFrameError(f"column {name!r} appears more than once")
        seen.add(name)
    if not columns:
        raise InvalidFrameError(f"frame for metric {metric!r} has no columns")
    lengths = {len(col) for _, col in columns}
    if len(lengths) != 1:
        detail = ", ".join(f"{name!r}: {len(col)}" for name, col in columns)
        raise InvalidFrameError(f"columns have different lengths ({detail})")
    num_rows = lengths.pop()
    if num_rows == 0:
        raise InvalidFrameError(f"frame for metric {metric!r} is empty (no rows)")
    by_name = dict(columns)
    if TIME_COLUMN not in by_name:
        raise InvalidTimestampError(f"frame for metric {metric!r} has no {TIME_COLUMN!r} column")

    errors = _RowErrors()
    time_col = _time_to_ns(by_name[TIME_COLUMN], errors)

    labels: dict[str, Column] = {}
    fields: dict[str, Column] = {}
    field_types: dict[str, FieldType] = {}
    for name, col in columns:
        if name == TIME_COLUMN:
            continue
        kind, converted = _classify(name, col, errors)
        if kind == "drop":
            continue
        if kind == "label":
            labels[cast(str, name)] = converted
        else:
            fields[cast(str, name)] = converted
            field_types[cast(str, name)] = cast(FieldType, kind)
    for name in labels:
        validate_name("label", name)
    for name in fields:
        validate_name("field", name)
    if not fields:
        raise InvalidFrameError(
            f"frame for metric {metric!r} has no field columns with values (numeric columns are fields, "
            "string columns are labels)"
        )
    label_names = tuple(sorted(labels))
    field_names = sorted(fields)
    # Rows are grouped by their label values once; label values are then checked per distinct value row.
    groups, firsts = group_rows([labels[n] for n in label_names], num_rows)
    index = pa.array(firsts)
    distinct = [(name, labels[name].take(index)) for name in label_names]
    for name, values in distinct:
        _check_label_values(name, values, groups, errors)
    _check_rows_have_fields(fields, errors)
    errors.raise_if_any(metric)

    schema = normalized_schema(label_names, field_types)
    arrays = [time_col, *(labels[n] for n in label_names), *(fields[n] for n in field_names)]
    chunked = [a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a]) for a in arrays]
    table = pa.Table.from_arrays(chunked, schema=schema)
    batch = GroupedBatch.from_groups(
        chunked[0],
        distinct,
        [(n, chunked[1 + len(label_names) + i]) for i, n in enumerate(field_names)],
        groups,
        len(firsts),
    )
    return NormalizedFrame(table, label_names, {n: field_types[n] for n in field_names}, batch)


# --------------------------------------------------------------------------------------------- inputs


def _columns_of(frame: object) -> list[tuple[object, Column]]:
    if isinstance(frame, pa.Table | pa.RecordBatch):
        return list(zip(frame.schema.names, frame.columns, strict=True))
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return _pandas_columns(frame)
    if module == "polars":
        import polars as pl

        if isinstance(frame, pl.LazyFrame):
            raise InvalidFrameError("a polars LazyFrame cannot be written; call .collect() first")
        if isinstance(frame, pl.DataFrame):
            table = frame.to_arrow()
            return list(zip(table.schema.names, table.columns, strict=True))
    if isinstance(frame, Mapping):
        return _dict_columns(frame)
    raise InvalidFrameError(
        f"cannot write a {type(frame).__name__}: pass a pandas or polars DataFrame, a pyarrow Table or "
        "RecordBatch, or a dict of arrays"
    )


def _to_arrow(name: object, values: object) -> Column:
    """One column to Arrow; NaN stays NaN, NaT / None / pandas NA become null."""
    try:
        if isinstance(values, pa.Array | pa.ChunkedArray):
            return values
        if isinstance(values, np.ndarray):
            if values.ndim != 1:
                raise InvalidValueTypeError(
                    f"column {name!r} must be one-dimensional, got {values.ndim} dims"
                )
            return pa.array(values)
        module = type(values).__module__.split(".")[0]
        if module == "polars":
            return cast(Any, values).to_arrow()
        if module == "pandas":
            series: Any = values
            if isinstance(series.dtype, np.dtype) and series.dtype.kind == "f":
                return pa.array(series.to_numpy(), from_pandas=False)
            return pa.array(series, from_pandas=True)
        return pa.array(cast(Any, values))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError) as exc:
        raise InvalidValueTypeError(f"column {name!r} cannot be converted: {exc}") from None


def _pandas_columns(df: Any) -> list[tuple[object, Column]]:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise InvalidFrameError(f"cannot write a pandas {type(df).__name__}; pass a DataFrame")
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()][0]
        raise InvalidFrameError(f"column {dup!r} appears more than once")
    out: list[tuple[object, Column]] = []
    if TIME_COLUMN not in df.columns and (
        isinstance(df.index, pd.DatetimeIndex) or df.index.name == TIME_COLUMN
    ):
        out.append((TIME_COLUMN, _to_arrow(TIME_COLUMN, pd.Series(df.index))))
    for name in df.columns:
        out.append((name, _to_arrow(name, df[name])))
    return out


def _dict_columns(data: Mapping[Any, Any]) -> list[tuple[object, Column]]:
    lengths: dict[object, int] = {}
    for name, values in data.items():
        try:
            lengths[name] = len(values)
        except TypeError:
            raise InvalidValueTypeError(
                f"column {name!r} must be an array or list, got {type(values).__name__}"
            ) from None
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k!r}: {v}" for k, v in lengths.items())
        raise InvalidFrameError(f"columns have different lengths ({detail})")
    return [(name, _to_arrow(name, values)) for name, values in data.items()]


# --------------------------------------------------------------------------------------------- time


def _nonzero(mask: Any) -> np.ndarray:
    """Row indices where a boolean Arrow array / numpy mask is true (nulls count as false)."""
    if isinstance(mask, pa.ChunkedArray | pa.Array):
        filled: Any = pc.fill_null(cast(Any, mask), False)
        mask = filled.to_numpy(zero_copy_only=False)
    return np.flatnonzero(mask)


class _RowErrors:
    """Collects row errors from every check; keeps at most MAX_REPORTED_ROW_ERRORS per check plus a count."""

    def __init__(self) -> None:
        self.rows: list[RowError] = []
        self.total = 0

    def add(self, rows: np.ndarray, reason: Callable[[int], str] | str, column: str | None) -> None:
        """Record every row in ``rows`` as failing for ``reason`` (a text, or a function of the row)."""
        self.total += len(rows)
        for row in rows[:MAX_REPORTED_ROW_ERRORS].tolist():
            text = reason if isinstance(reason, str) else reason(int(row))
            self.rows.append(RowError(int(row), text, column))

    def raise_if_any(self, metric: str) -> None:
        """Raise one WriteError listing the first rows (sorted), the total count in the message."""
        if not self.total:
            return
        rows = sorted(self.rows, key=lambda e: (e.row, e.column or ""))[:MAX_REPORTED_ROW_ERRORS]
        suffix = f" (showing {len(rows)})" if self.total > len(rows) else ""
        only_time = all(e.column == TIME_COLUMN for e in self.rows)
        raise WriteError(
            f"{self.total} invalid row value(s) in frame for metric {metric!r}{suffix}",
            rows,
            code=ErrorCode.INVALID_TIMESTAMP if only_time else None,
        )


def _time_to_ns(col: Column, errors: _RowErrors) -> pa.Array:
    """The time column as a non-null int64 ns array; bad rows are appended to ``errors``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        col = _parse_time_strings(col, errors)
        t = col.type
    if pa.types.is_date(t):
        col = col.cast(pa.timestamp("ms"))
        t = col.type
    if pa.types.is_timestamp(t):
        factor = _NS_PER_UNIT[t.unit]
        ints = col.view(pa.int64())
    elif pa.types.is_integer(t):
        factor = 1
        ints = col
        if t == pa.uint64():
            too_big = _nonzero(pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64())))
            if len(too_big):
                errors.add(too_big, "timestamp beyond the int64 nanosecond range", TIME_COLUMN)
                ints = pc.if_else(
                    pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64())), pa.scalar(0, pa.uint64()), col
                )
        ints = ints.cast(pa.int64())
    else:
        raise InvalidTimestampError(
            f"column {TIME_COLUMN!r} has type {t}; use datetimes, int64 nanoseconds or ISO 8601 strings"
        )
    if ints.null_count:
        errors.add(_nonzero(ints.is_null()), "timestamp is null / NaT", TIME_COLUMN)
        ints = ints.fill_null(0)
    values = ints.to_numpy(zero_copy_only=False)
    if factor == 1:
        bad = _nonzero(values == _INT64_MIN)
        if len(bad):
            errors.add(bad, "timestamp is the reserved NaT value -2**63", TIME_COLUMN)
        return ints if ints.type == pa.int64() and not ints.null_count else pa.array(values)
    lo, hi = -(2**63 // factor), _INT64_MAX // factor
    bad = _nonzero((values < lo) | (values > hi))
    if len(bad):
        errors.add(
            bad,
            "timestamp is outside the representable range (1677-09-21 .. 2262-04-11 UTC)",
            TIME_COLUMN,
        )
        values = np.where((values < lo) | (values > hi), 0, values)
    return pa.array(values * np.int64(factor))


def _parse_time_strings(col: Column, errors: _RowErrors) -> pa.Array:
    import pandas as pd

    strings = col.cast(pa.string())
    parsed = pd.to_datetime(
        pd.Series(strings.to_numpy(zero_copy_only=False), dtype=object),
        utc=True,
        format="ISO8601",
        errors="coerce",
    )
    result = pa.array(parsed, from_pandas=True)
    unparsable = _nonzero(pc.and_(result.is_null(), strings.is_valid()))
    if len(unparsable):
        texts = strings.to_pylist()
        errors.add(unparsable, lambda row: f"cannot parse {texts[row]!r} as an ISO 8601 time", TIME_COLUMN)
        # Unparsable rows are reported; make them non-null so the null check does not report them twice.
        result = pc.if_else(pc.and_(result.is_null(), strings.is_valid()), pa.scalar(0, result.type), result)
    return result


# --------------------------------------------------------------------------------------------- labels / fields


def _classify(name: object, col: Column, errors: _RowErrors) -> tuple[str, Column]:
    """Decide label / field / drop for one column and convert it to its normal type."""
    t = col.type
    if len(col) == col.null_count:
        return "drop", col
    if not isinstance(name, str):
        raise InvalidNameError(f"column names must be strings, got {type(name).__name__} {name!r}")
    if pa.types.is_dictionary(t):
        value_type = t.value_type
        if _is_string_type(value_type):
            return "label", col.cast(pa.string())
        raise InvalidValueTypeError(
            f"column {name!r} is categorical of {value_type}; only string categories can be labels"
        )
    if _is_string_type(t):
        return "label", col if t == pa.string() else col.cast(pa.string())
    if pa.types.is_boolean(t):
        return "int64", col.cast(pa.int64())
    if pa.types.is_integer(t):
        if t == pa.uint64():
            over = pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64()))
            rows = _nonzero(over)
            if len(rows):
                errors.add(rows, "unsigned value does not fit in int64", name)
                col = pc.if_else(over, pa.scalar(0, pa.uint64()), col)
        return "int64", col if t == pa.int64() else col.cast(pa.int64())
    if pa.types.is_floating(t):
        return "float64", col if t == pa.float64() else col.cast(pa.float64())
    raise InvalidValueTypeError(
        f"column {name!r} has type {t}: labels must be strings and fields numeric (int, uint, float, bool)"
    )


def _is_string_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _may_hold_nul(col: Column) -> bool:
    """False when no string data buffer of ``col`` holds a zero byte (a cheap screen before the exact check)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True
        data = chunk.buffers()[2]
        if data is not None and np.frombuffer(data, np.uint8).min(initial=1) == 0:
            return True
    return False


def _may_be_too_long(col: Column) -> bool:
    """False when no value of ``col`` can exceed MAX_LABEL_VALUE_BYTES (a screen over the offsets buffer)."""
    if col.nbytes <= MAX_LABEL_VALUE_BYTES:
        return False
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True
        if len(chunk) == 0:
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], width)[chunk.offset : chunk.offset + len(chunk) + 1]
        if int(np.diff(offsets).max()) > MAX_LABEL_VALUE_BYTES:
            return True
    return False


def _check_label_values(name: str, distinct: Column, groups: np.ndarray, errors: _RowErrors) -> None:
    """Check the distinct values ``distinct`` of label ``name``; row ``i`` of the frame holds ``distinct[groups[i]]``."""
    checks = []
    if _may_hold_nul(distinct):
        checks.append(pc.match_substring(distinct, "\x00"))
    if _may_be_too_long(distinct):
        checks.append(pc.greater(pc.binary_length(distinct), pa.scalar(MAX_LABEL_VALUE_BYTES)))
    if not checks:
        return
    bad = checks[0] if len(checks) == 1 else pc.or_(checks[0], checks[1])
    bad_groups = _nonzero(bad)
    if not len(bad_groups):
        return
    rows = np.flatnonzero(np.isin(groups, bad_groups))
    flat = distinct.combine_chunks() if isinstance(distinct, pa.ChunkedArray) else distinct

    def reason(row: int) -> str:
        try:
            validate_label_value(name, flat[int(groups[row])].as_py())
        except InvalidNameError as exc:
            return exc.message
        return "invalid label value"  # pragma: no cover - the vectorised check and the rule agree

    errors.add(rows, reason, name)


def _check_rows_have_fields(fields: Mapping[str, Column], errors: _RowErrors) -> None:
    if not all(col.null_count for col in fields.values()):
        return
    all_null: Any = None
    for col in fields.values():
        nulls = col.is_null()
        all_null = nulls if all_null is None else pc.and_(all_null, nulls)
    rows = _nonzero(all_null)
    if len(rows):
        errors.add(rows, "row has no field value (every field is null)", None)
