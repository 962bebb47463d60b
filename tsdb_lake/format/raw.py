"""Raw data files: one Parquet row per (series, chunk) with codec-encoded timestamp and field columns.

Layout of a raw file (``format_version`` 1, specified in ``catalog/FORMAT.md``):

=================  ==========  ===============================================================
column             type        meaning
=================  ==========  ===============================================================
``_series_id``     uint64      the series id (see ``model.series_id``)
<label>            string      one column per label key of the metric; null = label absent
``_t_min``         int64       first timestamp of the chunk (ns)
``_t_max``         int64       last timestamp of the chunk (ns)
``_count``         int32       points in the chunk
``_time``          binary      timestamp codec blob
<field>            binary      value codec blob of the non-null values; null when none
``_valid__<f>``    binary      LSB-first validity bitmap over the chunk's points; null = all valid
``_n__<f>``        int32       non-null values of the field in the chunk
``_min__<f>``      f's type    minimum ignoring NaN; null when none
``_max__<f>``      f's type    maximum ignoring NaN; null when none
=================  ==========  ===============================================================

Rows are sorted by (``_series_id``, ``_t_min``). This module reads and writes these files; it never touches
the catalog.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tsdb_lake import codecs
from tsdb_lake.errors import BackendReadError, CorruptBlockError
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.storage.base import Storage

__all__ = [
    "CHUNK_COLUMNS",
    "FORMAT_VERSION",
    "RawFileInfo",
    "chunk_columns_for",
    "decode_chunks",
    "encode_chunks",
    "read_chunks",
    "write_raw_file",
]

FORMAT_VERSION = 1
T_MIN, T_MAX, COUNT, TIME_BLOB = "_t_min", "_t_max", "_count", "_time"
CHUNK_COLUMNS = (SERIES_ID, T_MIN, T_MAX, COUNT)
DEFAULT_CHUNK_POINTS = 4096
_LABEL_VALUES_LIMIT = 256


def valid_col(f: str) -> str:
    """Name of the validity-bitmap column of field ``f``."""
    return f"_valid__{f}"


def n_col(f: str) -> str:
    """Name of the non-null-count column of field ``f``."""
    return f"_n__{f}"


def min_col(f: str) -> str:
    """Name of the per-chunk minimum column of field ``f``."""
    return f"_min__{f}"


def max_col(f: str) -> str:
    """Name of the per-chunk maximum column of field ``f``."""
    return f"_max__{f}"


def chunk_columns_for(fields: Sequence[str], *, blobs: bool = True, stats: bool = True) -> list[str]:
    """The per-field column names to read for ``fields`` (blobs and/or statistics)."""
    cols: list[str] = []
    for f in fields:
        if blobs:
            cols += [f, valid_col(f)]
        if stats:
            cols += [n_col(f), min_col(f), max_col(f)]
    return cols


@dataclass
class RawFileInfo:
    """What the catalog needs to know about a written raw file."""

    key: str
    bytes: int
    rows: int
    points: int
    series: int
    min_time: int
    max_time: int
    series_min: int
    series_max: int
    field_stats: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    label_values: dict[str, list[str]] = field(default_factory=dict)
    codecs: dict[str, dict[str, int]] = field(default_factory=dict)


def _chunk_bounds(series: np.ndarray, max_points: int) -> np.ndarray:
    """Start offsets of chunks: a new chunk at each series change and every ``max_points`` within a series."""
    n = len(series)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(series[1:] != series[:-1]) + 1))
    ends = np.append(starts[1:], n)
    out: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        out.extend(range(s, e, max_points))
    return np.asarray(out, dtype=np.int64)


def encode_chunks(
    frame: pl.DataFrame,
    labels: Sequence[str],
    fields: Mapping[str, str],
    *,
    max_chunk_points: int = DEFAULT_CHUNK_POINTS,
) -> pa.Table:
    """Encode a point frame sorted by (series, time) into the chunk table of a raw file.

    ``fields`` maps field name to dtype (``"float64"`` or ``"int64"``); labels and fields missing from the
    frame are written as nulls so every file of a metric carries the full schema known at write time.
    """
    n = frame.height
    sids = frame.get_column(SERIES_ID).to_numpy()
    times = np.ascontiguousarray(frame.get_column(TIME_COLUMN).to_numpy(), dtype=np.int64)
    starts = _chunk_bounds(sids, max_chunk_points)
    ends = np.append(starts[1:], n).astype(np.int64)
    counts = (ends - starts).astype(np.int32)
    columns: dict[str, pa.Array] = {SERIES_ID: pa.array(sids[starts], pa.uint64())}
    first = frame[starts.tolist()] if n else frame.clear()
    for label in labels:
        if label in frame.columns:
            columns[label] = first.get_column(label).cast(pl.String).to_arrow().cast(pa.string())
        else:
            columns[label] = pa.nulls(len(starts), pa.string())
    columns[T_MIN] = pa.array(times[starts], pa.int64())
    columns[T_MAX] = pa.array(times[ends - 1], pa.int64())
    columns[COUNT] = pa.array(counts, pa.int32())
    columns[TIME_BLOB] = pa.array(
        [codecs.encode_timestamps(times[s:e]) for s, e in zip(starts, ends, strict=True)], pa.binary()
    )
    for name, dtype in fields.items():
        columns.update(_encode_field(frame, name, dtype, starts, ends))
    return pa.table(columns)


def _encode_field(
    frame: pl.DataFrame, name: str, dtype: str, starts: np.ndarray, ends: np.ndarray
) -> dict[str, pa.Array]:
    arrow_type = pa.int64() if dtype == "int64" else pa.float64()
    nchunks = len(starts)
    if name not in frame.columns:
        return {
            name: pa.nulls(nchunks, pa.binary()),
            valid_col(name): pa.nulls(nchunks, pa.binary()),
            n_col(name): pa.array(np.zeros(nchunks, np.int32)),
            min_col(name): pa.nulls(nchunks, arrow_type),
            max_col(name): pa.nulls(nchunks, arrow_type),
        }
    series = frame.get_column(name)
    np_dtype = np.int64 if dtype == "int64" else np.float64
    values = series.fill_null(0).cast(pl.Int64 if dtype == "int64" else pl.Float64).to_numpy()
    values = np.ascontiguousarray(values, dtype=np_dtype)
    valid = ~series.is_null().to_numpy()
    all_valid = bool(valid.all())
    encode = codecs.encode_ints if dtype == "int64" else codecs.encode_floats
    blobs: list[bytes | None] = []
    bitmaps: list[bytes | None] = []
    n_valid = np.zeros(nchunks, np.int32)
    mins: list[float | int | None] = []
    maxs: list[float | int | None] = []
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        v = values[s:e]
        if not all_valid:
            m = valid[s:e]
            if not m.all():
                v = v[m]
                bitmaps.append(np.packbits(m, bitorder="little").tobytes() if len(v) else None)
            else:
                bitmaps.append(None)
        else:
            bitmaps.append(None)
        n_valid[i] = len(v)
        if len(v) == 0:
            blobs.append(None)
            mins.append(None)
            maxs.append(None)
            continue
        blobs.append(encode(v))
        if dtype == "int64":
            mins.append(int(v.min()))
            maxs.append(int(v.max()))
        else:
            finite = v[~np.isnan(v)]
            mins.append(float(finite.min()) if len(finite) else None)
            maxs.append(float(finite.max()) if len(finite) else None)
    return {
        name: pa.array(blobs, pa.binary()),
        valid_col(name): pa.array(bitmaps, pa.binary()),
        n_col(name): pa.array(n_valid),
        min_col(name): pa.array(mins, arrow_type),
        max_col(name): pa.array(maxs, arrow_type),
    }


def write_raw_file(
    storage: Storage,
    key: str,
    chunks: pa.Table,
    labels: Sequence[str],
    fields: Mapping[str, str],
    metadata: Mapping[str, str] | None = None,
) -> RawFileInfo:
    """Write an encoded chunk table to ``key`` and return its statistics for the catalog."""
    blob_cols = [TIME_BLOB, *fields, *(valid_col(f) for f in fields)]
    meta = {
        "tsdb_lake.format_version": str(FORMAT_VERSION),
        "tsdb_lake.kind": "raw",
        "tsdb_lake.labels": json.dumps(list(labels)),
        "tsdb_lake.fields": json.dumps(dict(fields)),
        **(metadata or {}),
    }
    table = chunks.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    compression = {c: ("NONE" if c in blob_cols else "ZSTD") for c in table.column_names}
    with storage.open_output(key) as sink:
        pq.write_table(
            table,
            sink,
            compression=compression,
            use_dictionary=list(labels),
            write_statistics=[SERIES_ID, T_MIN, T_MAX, *labels],
            row_group_size=64 * 1024,
        )
        size = sink.tell()
    return _file_info(key, size or 0, chunks, labels, fields)


def _file_info(
    key: str, size: int, chunks: pa.Table, labels: Sequence[str], fields: Mapping[str, str]
) -> RawFileInfo:
    sids = chunks.column(SERIES_ID).to_numpy()
    info = RawFileInfo(
        key=key,
        bytes=size,
        rows=chunks.num_rows,
        points=int(np.asarray(chunks.column(COUNT)).sum()),
        series=len(np.unique(sids)),
        min_time=int(np.asarray(chunks.column(T_MIN)).min()),
        max_time=int(np.asarray(chunks.column(T_MAX)).max()),
        series_min=int(sids.min()),
        series_max=int(sids.max()),
    )
    for f, dtype in fields.items():
        n = int(np.asarray(chunks.column(n_col(f))).sum())
        lo, hi = chunks.column(min_col(f)), chunks.column(max_col(f))
        cast = int if dtype == "int64" else float
        lo_v = pa.compute.min(lo).as_py()
        hi_v = pa.compute.max(hi).as_py()
        info.field_stats[f] = {
            "count": n,
            "min": None if lo_v is None else cast(lo_v),
            "max": None if hi_v is None else cast(hi_v),
        }
        ids: dict[str, int] = {}
        for blob in chunks.column(f).to_pylist():
            if blob is not None:
                name = codecs.codec_id(blob).name.lower()
                ids[name] = ids.get(name, 0) + 1
        info.codecs[f] = ids
    for label in labels:
        values = pa.compute.unique(chunks.column(label).drop_null()).to_pylist()
        if len(values) <= _LABEL_VALUES_LIMIT:
            info.label_values[label] = sorted(values)
    return info


def _row_groups(meta: Any, names: list[str], start: int | None, end: int | None) -> list[int]:
    """Row groups whose ``_t_min`` / ``_t_max`` statistics may overlap ``[start, end)`` (all without stats)."""
    groups = list(range(meta.num_row_groups))
    if (start is None and end is None) or T_MIN not in names or T_MAX not in names:
        return groups
    i_min, i_max = names.index(T_MIN), names.index(T_MAX)
    out = []
    for g in groups:
        rg = meta.row_group(g)
        lo, hi = rg.column(i_min).statistics, rg.column(i_max).statistics
        if start is not None and hi is not None and hi.has_min_max and hi.max < start:
            continue
        if end is not None and lo is not None and lo.has_min_max and lo.min >= end:
            continue
        out.append(g)
    return out


def read_chunks(
    storage: Storage,
    key: str,
    columns: Sequence[str],
    *,
    start: int | None = None,
    end: int | None = None,
    series_ids: Sequence[int] | None = None,
) -> pa.Table:
    """Read the chunk rows of a raw file that may hold points in ``[start, end)`` of ``series_ids``.

    Row groups are skipped by their statistics; chunks are then filtered exactly on their bounds. Requested
    columns the file does not have (labels / fields added to the metric after it was written) are left out;
    :func:`decode_chunks` reads them as nulls. One file is read on the calling thread (callers parallelise
    across files).
    """
    try:
        with storage.arrow_fs().open_input_file(storage.arrow_path(key)) as source:
            pf = pq.ParquetFile(source, pre_buffer=False)
            names = pf.schema_arrow.names
            wanted = [c for c in dict.fromkeys(columns) if c in names]
            groups = _row_groups(pf.metadata, names, start, end)
            if groups:
                table = pf.read_row_groups(groups, columns=wanted, use_threads=False)
            else:
                table = pf.schema_arrow.empty_table().select(wanted)
    except FileNotFoundError as exc:
        raise BackendReadError(f"data file {key} is missing from storage", retryable=False) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            raise BackendReadError(f"cannot read data file {key}: {exc}") from exc
        raise CorruptBlockError(f"unreadable Parquet data file: {exc}", path=key) from exc
    if table.num_rows == 0 or (start is None and end is None and series_ids is None):
        return table
    try:
        mask = None
        if start is not None:
            mask = pc.greater_equal(table.column(T_MAX), start)
        if end is not None:
            below = pc.less(table.column(T_MIN), end)
            mask = below if mask is None else pc.and_(mask, below)
        if series_ids is not None:
            wanted_ids = pa.array([int(s) for s in series_ids], pa.uint64())
            inside = pc.is_in(table.column(SERIES_ID), value_set=wanted_ids)
            mask = inside if mask is None else pc.and_(mask, inside)
    except KeyError as exc:
        raise CorruptBlockError(f"raw file lacks a chunk column: {exc}", path=key) from exc
    if mask is None or pc.all(mask).as_py():
        return table
    return table.filter(mask)


def decode_chunks(
    chunks: pa.Table,
    labels: Sequence[str],
    fields: Mapping[str, str],
    *,
    key: str = "?",
) -> pl.DataFrame:
    """Expand chunk rows into a point frame: ``_series_id``, ``time``, labels, fields (nulls restored).

    Each blob column decodes in one batched (parallel) codec call over the Arrow buffers; label values are
    gathered per point from the (small) per-chunk label frame.
    """
    counts = np.asarray(chunks.column(COUNT), dtype=np.int64)
    chunk_index = np.repeat(np.arange(chunks.num_rows), counts)
    try:
        if chunks.num_rows:
            times, tcounts = codecs.decode_timestamps_many(chunks.column(TIME_BLOB).combine_chunks())
            if not np.array_equal(tcounts, counts):
                raise CorruptBlockError("timestamp chunks disagree with their _count column")
        else:
            times = np.zeros(0, np.int64)
        out: dict[str, Any] = {
            SERIES_ID: pl.Series(SERIES_ID, np.asarray(chunks.column(SERIES_ID))[chunk_index], pl.UInt64),
            TIME_COLUMN: times,
        }
        if labels:
            per_chunk = pl.DataFrame(
                [
                    pl.Series(label, chunks.column(label)).cast(pl.String)
                    if label in chunks.column_names
                    else pl.Series(label, [None] * chunks.num_rows, pl.String)
                    for label in labels
                ]
            )
            gathered = per_chunk[chunk_index] if chunks.num_rows else per_chunk
            for label in labels:
                out[label] = gathered.get_column(label)
        for f, dtype in fields.items():
            out[f] = _decode_field(chunks, f, dtype, counts, chunk_index)
    except CorruptBlockError as exc:
        raise exc.with_path(key) from exc
    return pl.DataFrame(out)


def _decode_blobs(blobs: pa.Array, dtype: str) -> np.ndarray:
    if dtype == "float64":
        values, _ = codecs.decode_floats_many(blobs)
        return values
    parts = [codecs.decode_ints(b) for b in blobs.to_pylist()]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _decode_field(
    chunks: pa.Table, f: str, dtype: str, counts: np.ndarray, chunk_index: np.ndarray
) -> pl.Series:
    pl_type = pl.Int64 if dtype == "int64" else pl.Float64
    np_type = np.int64 if dtype == "int64" else np.float64
    total = int(counts.sum())
    if f not in chunks.column_names:
        return pl.Series(f, np.zeros(total, np_type), pl_type).set(pl.Series(np.ones(total, bool)), None)
    blobs = chunks.column(f).combine_chunks()
    has_blob = np.asarray(blobs.is_valid())
    present = blobs.filter(pa.array(has_blob)) if not has_blob.all() else blobs
    decoded = _decode_blobs(present, dtype) if len(present) else np.zeros(0, np_type)
    bitmaps = chunks.column(valid_col(f)) if valid_col(f) in chunks.column_names else None
    if bitmaps is not None and bitmaps.null_count < len(bitmaps):
        valid = has_blob[chunk_index]
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else counts
        for i, bitmap in enumerate(bitmaps.to_pylist()):
            if bitmap is None or not has_blob[i]:
                continue
            n = int(counts[i])
            if len(bitmap) * 8 < n:
                raise CorruptBlockError(f"field {f!r} validity bitmap is too short")
            s = int(starts[i])
            valid[s : s + n] = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=n, bitorder="little").astype(bool)
    elif has_blob.all():
        if len(decoded) != total:
            raise CorruptBlockError(f"field {f!r} chunks decode to {len(decoded)} values for {total} points")
        return pl.Series(f, decoded, pl_type)
    else:
        valid = has_blob[chunk_index]
    if int(valid.sum()) != len(decoded):
        raise CorruptBlockError(f"field {f!r}: {len(decoded)} values for {int(valid.sum())} valid points")
    values = np.zeros(total, np_type)
    values[valid] = decoded
    return pl.Series(f, values, pl_type).set(pl.Series(~valid), None)
