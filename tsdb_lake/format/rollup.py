"""Rollup files: plain Parquet, one row per (series, bucket), specified byte for byte in ``catalog/ROLLUPS.md``.

Columns (``format_version`` 1), rows sorted by (``_series_id``, ``time``):

=======================  =========================  ===========================================================
column                   Parquet / Arrow type       meaning
=======================  =========================  ===========================================================
``_series_id``           uint64                     series id
<label>                  string                     one per label key; null = label absent
``time``                 timestamp[ns, UTC]         bucket start (epoch-aligned)
``f__count``             int64                      non-null values of field ``f`` in the bucket (NaN counted)
``f__sum``               f's type                   IEEE sum (NaN propagates); 0 when count = 0
``f__min`` / ``f__max``  f's type                   min / max ignoring NaN (NaN if all NaN; null if none)
``f__first``             f's type                   value at the earliest timestamp holding a value
``f__first_time``        timestamp[ns, UTC]         that timestamp
``f__last`` / ``_time``  f's type / timestamp       value (and time) at the latest timestamp holding a value
``f__sumsq``             float64                    sum of squares (NaN propagates)
``f__increase``          float64                    counters only: reset-aware increase *inside* the bucket
``f__values``            binary                     exact histogram: encode_floats(sorted distinct non-NaN values)
``f__weights``           binary                     encode_ints(their multiplicities); null when all are 1
``f__sketch``            binary                     serialised kll_doubles_sketch of the non-NaN values, or null
=======================  =========================  ===========================================================

``f``'s type is int64 for int64 fields and float64 otherwise. Inside the library the frames carry ``time`` and
the ``*_time`` columns as int64 nanoseconds; this module converts at the file boundary. It never touches the
catalog.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tsdb_lake.codecs import encode_floats
from tsdb_lake.compaction.sketches import SKETCH_K, exact_limit_bytes
from tsdb_lake.errors import BackendReadError, CorruptBlockError
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.storage.base import Storage

__all__ = [
    "PARTS",
    "ROLLUP_FORMAT_VERSION",
    "FieldInfo",
    "RollupFileInfo",
    "col",
    "empty_rollup_frame",
    "field_columns",
    "read_rollup",
    "rollup_polars_schema",
    "write_rollup_file",
]

ROLLUP_FORMAT_VERSION = 1
#: Per-field parts, in column order (``increase`` only for counters).
PARTS = (
    "count",
    "sum",
    "min",
    "max",
    "first",
    "first_time",
    "last",
    "last_time",
    "sumsq",
    "increase",
    "values",
    "weights",
    "sketch",
)
_TIME_PARTS = ("first_time", "last_time")
_VALUE_PARTS = ("sum", "min", "max", "first", "last")
_UTC_NS = pa.timestamp("ns", tz="UTC")
_EMPTY_VALUES = encode_floats(np.zeros(0))


@dataclass(frozen=True)
class FieldInfo:
    """What a rollup needs to know about a field: its dtype (``float64`` / ``int64``) and counter-ness."""

    dtype: str = "float64"
    counter: bool = False


def col(f: str, part: str) -> str:
    """The column name of ``part`` of field ``f``: ``f__part``."""
    return f"{f}__{part}"


def field_columns(f: str, info: FieldInfo) -> list[str]:
    """Every column of field ``f`` in file order."""
    return [col(f, p) for p in PARTS if p != "increase" or info.counter]


def _pl_type(f_dtype: str, part: str) -> pl.DataType:
    if part == "count":
        return pl.Int64()
    if part in _TIME_PARTS:
        return pl.Int64()
    if part in _VALUE_PARTS:
        return pl.Int64() if f_dtype == "int64" else pl.Float64()
    if part in ("values", "weights", "sketch"):
        return pl.Binary()
    return pl.Float64()


def rollup_polars_schema(labels: Sequence[str], fields: Mapping[str, FieldInfo]) -> dict[str, pl.DataType]:
    """The in-memory schema of rollup rows (times as int64 ns)."""
    out: dict[str, pl.DataType] = {SERIES_ID: pl.UInt64(), **{label: pl.String() for label in labels}}
    out[TIME_COLUMN] = pl.Int64()
    for f, info in fields.items():
        for name in field_columns(f, info):
            out[name] = _pl_type(info.dtype, name.rsplit("__", 1)[1])
    return out


def empty_rollup_frame(labels: Sequence[str], fields: Mapping[str, FieldInfo]) -> pl.DataFrame:
    """A rollup frame with no rows."""
    return pl.DataFrame(schema=rollup_polars_schema(labels, fields))


@dataclass
class RollupFileInfo:
    """What the catalog needs to know about a written rollup file."""

    key: str
    bytes: int
    rows: int
    points: int
    series: int
    min_time: int
    max_time: int
    series_min: int
    series_max: int
    field_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_values: dict[str, list[str]] = field(default_factory=dict)


def _to_arrow(frame: pl.DataFrame, labels: Sequence[str], fields: Mapping[str, FieldInfo]) -> pa.Table:
    schema = rollup_polars_schema(labels, fields)
    aligned = frame.select(
        [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in schema.items()]
    )
    table = aligned.to_arrow()
    arrays = []
    names = []
    for name in table.column_names:
        arr = table.column(name)
        if name == TIME_COLUMN or name.endswith(("__first_time", "__last_time")):
            arr = arr.cast(pa.int64()).cast(_UTC_NS)
        elif name in labels:
            arr = arr.cast(pa.string())
        elif name.endswith(("__values", "__weights", "__sketch")):
            arr = arr.cast(pa.binary())
        arrays.append(arr)
        names.append(name)
    return pa.table(arrays, names=names)


def write_rollup_file(
    storage: Storage,
    key: str,
    frame: pl.DataFrame,
    *,
    labels: Sequence[str],
    fields: Mapping[str, FieldInfo],
    tier: str,
    bucket_ns: int,
    lineage: Mapping[str, Any],
    sketch_k: int = SKETCH_K,
    quantile_state: bool = True,
) -> RollupFileInfo:
    """Write rollup rows (sorted by series, time) to ``key``; returns the statistics the catalog records.

    ``quantile_state=False`` marks a tier whose rows hold no quantile state (footer ``quantile_state`` = ``none``).
    """
    if frame.height > 1:
        sid = frame.get_column(SERIES_ID).to_numpy()
        t = frame.get_column(TIME_COLUMN).to_numpy()
        if not bool(((sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (t[1:] >= t[:-1]))).all()):
            frame = frame.sort([SERIES_ID, TIME_COLUMN], maintain_order=True)
    table = _to_arrow(frame, labels, fields)
    meta = {
        "tsdb_lake.format_version": str(ROLLUP_FORMAT_VERSION),
        "tsdb_lake.kind": "rollup",
        "tsdb_lake.tier": tier,
        "tsdb_lake.bucket_ns": str(bucket_ns),
        "tsdb_lake.sketch": "kll_doubles_sketch",
        "tsdb_lake.sketch_k": str(sketch_k),
        "tsdb_lake.quantile_state": "histogram+kll" if quantile_state else "none",
        "tsdb_lake.exact_limit_bytes": str(exact_limit_bytes(sketch_k)),
        "tsdb_lake.labels": json.dumps(list(labels)),
        "tsdb_lake.fields": json.dumps(
            {f: {"dtype": i.dtype, "counter": i.counter} for f, i in fields.items()}
        ),
        "tsdb_lake.lineage": json.dumps(dict(lineage), sort_keys=True),
    }
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    # Measured on TSBS and NAB: dictionaries for labels, values and the small quantile blobs (they repeat);
    # delta encoding for the sorted / regular timestamps. pyarrow falls back to plain when a dictionary grows.
    delta_cols = [c for c in table.column_names if c == TIME_COLUMN or c.endswith(_TIME_PARTS)]
    dict_cols = [c for c in table.column_names if c not in delta_cols]
    with storage.open_output(key) as sink:
        pq.write_table(
            table,
            sink,
            compression="zstd",
            use_dictionary=dict_cols,  # type: ignore[arg-type]
            column_encoding={c: "DELTA_BINARY_PACKED" for c in delta_cols},
            write_statistics=[SERIES_ID, TIME_COLUMN, *labels],
            row_group_size=128 * 1024,
            coerce_timestamps=None,
            version="2.6",
        )
    size = storage.arrow_fs().get_file_info(storage.arrow_path(key)).size or 0
    return _file_info(key, size, frame, labels, fields)


def _file_info(
    key: str, size: int, frame: pl.DataFrame, labels: Sequence[str], fields: Mapping[str, FieldInfo]
) -> RollupFileInfo:
    sids = frame.get_column(SERIES_ID)
    times = frame.get_column(TIME_COLUMN)
    counts = [frame.get_column(col(f, "count")) for f in fields]
    info = RollupFileInfo(
        key=key,
        bytes=size,
        rows=frame.height,
        points=int(max((int(c.sum()) for c in counts), default=0)),
        series=sids.n_unique(),
        min_time=int(times.min()),  # type: ignore[arg-type]
        max_time=int(times.max()),  # type: ignore[arg-type]
        series_min=int(sids.min()),  # type: ignore[arg-type]
        series_max=int(sids.max()),  # type: ignore[arg-type]
    )
    for f, fi in fields.items():
        lo = frame.get_column(col(f, "min"))
        hi = frame.get_column(col(f, "max"))
        if fi.dtype != "int64":
            lo = lo.filter(~lo.is_nan())
            hi = hi.filter(~hi.is_nan())
        cast = int if fi.dtype == "int64" else float
        lo_v, hi_v = lo.min(), hi.max()
        info.field_stats[f] = {
            "count": int(frame.get_column(col(f, "count")).sum()),
            "min": None if lo_v is None else cast(lo_v),  # type: ignore[arg-type]
            "max": None if hi_v is None else cast(hi_v),  # type: ignore[arg-type]
        }
    for label in labels:
        values = frame.get_column(label).drop_nulls().unique().to_list()
        if len(values) <= 256:
            info.label_values[label] = sorted(values)
    return info


def read_rollup(
    storage: Storage,
    key: str,
    *,
    labels: Sequence[str],
    fields: Mapping[str, FieldInfo],
    parts: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> pl.DataFrame:
    """Rollup rows of ``key`` with ``time`` in ``[start, end)``, aligned to ``labels`` / ``fields``.

    ``parts`` limits the per-field columns read (default: all). Columns missing from an older file (schema
    evolution) come back as null, counts as 0 and value lists as empty. Times are int64 ns.
    """
    wanted_parts = list(PARTS) if parts is None else list(parts)
    schema = rollup_polars_schema(labels, fields)
    want = [SERIES_ID, *labels, TIME_COLUMN] + [
        c for f, fi in fields.items() for c in field_columns(f, fi) if c.rsplit("__", 1)[1] in wanted_parts
    ]
    filters: list[tuple[str, str, object]] = []
    if start is not None:
        filters.append((TIME_COLUMN, ">=", pa.scalar(start, _UTC_NS)))
    if end is not None:
        filters.append((TIME_COLUMN, "<", pa.scalar(end, _UTC_NS)))
    try:
        pf_schema = pq.read_schema(storage.arrow_path(key), filesystem=storage.arrow_fs())
        present = [c for c in want if c in pf_schema.names]
        table = pq.read_table(
            storage.arrow_path(key),
            filesystem=storage.arrow_fs(),
            columns=present,
            filters=filters or None,  # type: ignore[arg-type]
        )
    except FileNotFoundError as exc:
        raise BackendReadError(f"rollup file {key} is missing from storage", retryable=False) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            raise BackendReadError(f"cannot read rollup file {key}: {exc}") from exc
        raise CorruptBlockError(f"unreadable Parquet rollup file: {exc}", path=key) from exc
    cols: dict[str, Any] = {}
    for name in table.column_names:
        arr = table.column(name)
        if pa.types.is_timestamp(arr.type):
            arr = arr.cast(pa.int64())
        cols[name] = arr
    frame = pl.DataFrame(pa.table(cols)) if cols else pl.DataFrame()
    n = table.num_rows
    out = []
    for c in want:
        t = schema[c]
        if c in frame.columns:
            out.append(frame.get_column(c).cast(t))
        elif c.endswith("__count"):
            out.append(pl.Series(c, np.zeros(n, np.int64)))
        elif c.endswith("__values"):
            out.append(pl.Series(c, [_EMPTY_VALUES] * n, t))
        elif c.endswith(("__sum", "__sumsq")):
            out.append(pl.Series(c, np.zeros(n), pl.Float64).cast(t))
        else:
            out.append(pl.Series(c, [None] * n, t))
    return pl.DataFrame(out)
