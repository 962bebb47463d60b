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

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow._parquet import ParquetReader

from tsdb_lake import codecs
from tsdb_lake.errors import BackendReadError, CorruptBlockError
from tsdb_lake.format import chunkstats
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.storage.base import Storage

__all__ = [
    "CHUNK_COLUMNS",
    "FORMAT_VERSION",
    "PointSelector",
    "RawFileInfo",
    "chunk_columns_for",
    "decode_chunks",
    "decode_fields",
    "encode_chunks",
    "read_cached_chunks",
    "read_chunks",
    "reduce_float_fields",
    "write_raw_file",
]

FORMAT_VERSION = 1
T_MIN, T_MAX, COUNT, TIME_BLOB = "_t_min", "_t_max", "_count", "_time"
CHUNK_COLUMNS = (SERIES_ID, T_MIN, T_MAX, COUNT)
DEFAULT_CHUNK_POINTS = 4096
_LABEL_VALUES_LIMIT = 256
#: Batches with fewer points decode on the calling thread alone. Serial decoding runs at ~150-200 M values/s;
#: a parallel batch splits into pieces that pool threads and the caller claim one by one (the caller never
#: waits for a thread that has no core), which costs tens of microseconds.
PARALLEL_DECODE_MIN_POINTS = 50_000


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
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    return chunkstats.chunk_starts(np.ascontiguousarray(series), max_points)  # type: ignore[no-any-return]


def _string_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one ``pa.string()`` array; a ``large_string`` array under 2 GiB is converted through its
    buffers (polars hands out ``large_string``; Arrow's cast costs more for the few values of a chunk table)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.type == pa.string():
        return arr
    if arr.type != pa.large_string() or arr.offset:
        return arr.cast(pa.string())
    validity, off_buf, data = arr.buffers()
    off = np.frombuffer(off_buf, np.int64, len(arr) + 1)
    if int(off[-1]) >= 2**31:
        return arr.cast(pa.string())
    return pa.Array.from_buffers(
        pa.string(), len(arr), [validity, pa.py_buffer(off.astype(np.int32)), data], null_count=arr.null_count
    )


def _binary_array(data: np.ndarray, offsets: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    """An Arrow binary column from ``(uint8 data, int64 offsets)``; ``present`` False marks null rows.

    ``pa.binary()`` (int32 offsets) unless the data reaches 2 GiB, then ``pa.large_binary()``; both are the
    same Parquet ``BYTE_ARRAY`` column.
    """
    m = len(offsets) - 1
    if int(offsets[-1]) < 2**31 - 1:
        arrow_type, off = pa.binary(), offsets.astype(np.int32)
    else:
        arrow_type, off = pa.large_binary(), offsets.astype(np.int64)
    validity = None
    nulls = 0
    if present is not None and not bool(present.all()):
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
        nulls = int(m - np.count_nonzero(present))
    return pa.Array.from_buffers(
        arrow_type, m, [validity, pa.py_buffer(off), pa.py_buffer(data)], null_count=nulls
    )


def encode_chunks(
    frame: pl.DataFrame,
    labels: Sequence[str],
    fields: Mapping[str, str],
    *,
    max_chunk_points: int = DEFAULT_CHUNK_POINTS,
    series: pl.DataFrame | None = None,
    parallel: bool = True,
) -> pa.Table:
    """Encode a point frame sorted by (series, time) into the chunk table of a raw file.

    ``fields`` maps field name to dtype (``"float64"`` or ``"int64"``); labels and fields missing from the
    frame are written as nulls so every file of a metric carries the full schema known at write time.
    With ``series`` (one row per series id: ``_series_id`` and its labels) label values come from it and the
    frame needs no label columns. ``parallel=False`` encodes on the calling thread only (the codec thread pool
    is left to others).
    """
    n = frame.height
    sids = frame.get_column(SERIES_ID).to_numpy()
    times = np.ascontiguousarray(frame.get_column(TIME_COLUMN).to_numpy(), dtype=np.int64)
    starts = _chunk_bounds(sids, max_chunk_points)
    offsets = np.append(starts, n).astype(np.int64)
    counts = np.diff(offsets).astype(np.int32)
    chunk_sids = sids[starts]
    columns: dict[str, pa.Array] = {SERIES_ID: pa.array(chunk_sids, pa.uint64())}
    source = frame if series is None else series
    present_labels = [label for label in labels if label in source.columns]
    rows: np.ndarray | None = None  # the series frame's row of each chunk (None: the rows in order)
    if series is not None and present_labels:
        known = series.get_column(SERIES_ID).to_numpy()
        if not n:
            rows = np.zeros(0, np.int64)
        elif not (len(known) == len(chunk_sids) and np.array_equal(known, chunk_sids)):
            order = np.argsort(known)
            pos = np.minimum(np.searchsorted(known, chunk_sids, sorter=order), len(known) - 1)
            rows = order[pos]
            if not np.array_equal(known[rows], chunk_sids):
                raise ValueError("encode_chunks: a series id of the frame is missing from the series frame")
    if series is not None and rows is not None:
        series = series[rows]  # one row per chunk
    for label in labels:
        if label not in present_labels:
            columns[label] = pa.nulls(len(starts), pa.string())
            continue
        col = frame.get_column(label).gather(starts) if series is None else series.get_column(label)
        columns[label] = _string_array((col if col.dtype == pl.String else col.cast(pl.String)).to_arrow())
    columns[T_MIN] = pa.array(times[starts], pa.int64())
    columns[T_MAX] = pa.array(times[offsets[1:] - 1], pa.int64())
    columns[COUNT] = pa.array(counts, pa.int32())
    columns[TIME_BLOB] = _binary_array(*codecs.encode_timestamps_many(times, offsets, parallel=parallel))
    for name, dtype in fields.items():
        columns.update(_encode_field(frame, name, dtype, offsets, columns[COUNT], parallel=parallel))
    return pa.table(columns)


def _encode_field(
    frame: pl.DataFrame,
    name: str,
    dtype: str,
    offsets: np.ndarray,
    counts: pa.Array | None = None,
    *,
    parallel: bool = True,
) -> dict[str, pa.Array]:
    """The blob, validity, count, min and max columns of one field; chunk ``i`` is ``offsets[i]:offsets[i+1]``
    (``counts``: the chunks' point counts as an int32 array, reused as the count of a field without nulls).

    One batched codec call encodes every chunk's non-null values; min / max ignore NaN and are null when a
    chunk has no (non-NaN) value; a validity bitmap is written only for chunks with some nulls.
    """
    arrow_type = pa.int64() if dtype == "int64" else pa.float64()
    nchunks = len(offsets) - 1
    if name not in frame.columns:
        return {
            name: pa.nulls(nchunks, pa.binary()),
            valid_col(name): pa.nulls(nchunks, pa.binary()),
            n_col(name): pa.array(np.zeros(nchunks, np.int32)),
            min_col(name): pa.nulls(nchunks, arrow_type),
            max_col(name): pa.nulls(nchunks, arrow_type),
        }
    series = frame.get_column(name)
    pl_type, np_dtype = (pl.Int64, np.int64) if dtype == "int64" else (pl.Float64, np.float64)
    if series.dtype != pl_type:
        series = series.cast(pl_type)
    bitmaps = pa.nulls(nchunks, pa.binary())
    offsets_diff = np.diff(offsets)
    if series.null_count() > 0:
        valid = series.is_not_null().to_numpy()
        filled = np.ascontiguousarray(series.fill_null(0).to_numpy(), np_dtype)
        values, voff = chunkstats.compact_valid(filled, valid, offsets)
        n_valid = np.diff(voff)
        partial = (n_valid > 0) & (n_valid < offsets_diff)
        if partial.any():
            bitmaps = _binary_array(*chunkstats.validity_bitmaps(valid, offsets, partial), partial)
    else:
        values = np.ascontiguousarray(series.to_numpy(), np_dtype)
        voff = offsets
        n_valid = offsets_diff
    present = n_valid > 0
    many = codecs.encode_ints_many if dtype == "int64" else codecs.encode_floats_many

    def encode(v: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return many(v, off, parallel=parallel)

    idx = np.flatnonzero(present)
    if len(idx) == nchunks:
        data, blob_off = encode(values, voff) if nchunks else (np.zeros(0, np.uint8), np.zeros(1, np.int64))
        blobs = _binary_array(data, blob_off)
    else:
        blob_lens = np.zeros(nchunks, np.int64)
        data = np.zeros(0, np.uint8)
        if len(idx):
            data, boff = encode(values, np.append(voff[idx], voff[idx[-1] + 1]))
            blob_lens[idx] = np.diff(boff)
        blob_off = np.zeros(nchunks + 1, np.int64)
        np.cumsum(blob_lens, out=blob_off[1:])
        blobs = _binary_array(data, blob_off, present)
    lo = np.zeros(nchunks, np_dtype)
    hi = np.zeros(nchunks, np_dtype)
    if len(idx):
        # fmin / fmax skip NaN; a chunk of only NaN stays NaN and becomes null below
        low, high = (np.minimum, np.maximum) if dtype == "int64" else (np.fmin, np.fmax)
        first = voff[idx]
        if len(idx) == nchunks:
            lo, hi = low.reduceat(values, first), high.reduceat(values, first)
        else:
            lo[idx], hi[idx] = low.reduceat(values, first), high.reduceat(values, first)
    no_stat = ~present if dtype == "int64" else ~present | np.isnan(lo)
    mask = no_stat if no_stat.any() else None
    reuse_counts = counts is not None and n_valid is offsets_diff
    return {
        name: blobs,
        valid_col(name): bitmaps,
        n_col(name): counts if reuse_counts else pa.array(n_valid.astype(np.int32)),
        min_col(name): pa.array(lo, arrow_type, mask=mask),
        max_col(name): pa.array(hi, arrow_type, mask=mask),
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
    meta = {
        "tsdb_lake.format_version": str(FORMAT_VERSION),
        "tsdb_lake.kind": "raw",
        "tsdb_lake.labels": json.dumps(list(labels)),
        "tsdb_lake.fields": json.dumps(dict(fields)),
        **(metadata or {}),
    }
    compression, length_coded = _writer_options(tuple(chunks.column_names), tuple(fields))
    with storage.open_output(key) as sink:
        # The footer holds the tsdb_lake.* key/values but no base64 Arrow schema (``store_schema=False``):
        # the Parquet types map back exactly (UINT64, UTF8, BYTE_ARRAY, INT32 / INT64, DOUBLE) and the
        # schema would add ~6 KB to every file.
        with pq.ParquetWriter(
            sink,
            chunks.schema.remove_metadata(),
            compression=dict(compression),
            use_dictionary=list(labels),
            column_encoding=dict(length_coded),
            write_statistics=[SERIES_ID, T_MIN, T_MAX, *labels],
            store_schema=False,
        ) as writer:
            writer.write_table(chunks, row_group_size=64 * 1024)
            writer.add_key_value_metadata(meta)
        size = sink.tell()
    return _file_info(key, size or 0, chunks, labels, fields)


@functools.lru_cache(maxsize=64)
def _writer_options(
    columns: tuple[str, ...], fields: tuple[str, ...]
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Per-column Parquet compression and encodings of a raw file (blobs are not compressed)."""
    blob_cols = {TIME_BLOB, *fields, *(valid_col(f) for f in fields)}
    compression = tuple((c, "NONE" if c in blob_cols else "ZSTD") for c in columns)
    # Value and timestamp blobs: DELTA_LENGTH_BYTE_ARRAY stores their lengths bit-packed (about 1 byte a blob
    # instead of PLAIN's 4-byte prefix; 0.010 B/value on TSBS). Validity bitmaps are mostly null: PLAIN.
    length_coded = tuple((c, "DELTA_LENGTH_BYTE_ARRAY") for c in (TIME_BLOB, *fields))
    return compression, length_coded


def _file_info(
    key: str, size: int, chunks: pa.Table, labels: Sequence[str], fields: Mapping[str, str]
) -> RawFileInfo:
    sids = _numpy_of(chunks.column(SERIES_ID))
    ordered = len(sids) < 2 or bool((sids[1:] >= sids[:-1]).all())
    info = RawFileInfo(
        key=key,
        bytes=size,
        rows=chunks.num_rows,
        points=int(_numpy_of(chunks.column(COUNT)).sum()),
        series=int(np.count_nonzero(sids[1:] != sids[:-1])) + 1
        if ordered and len(sids)
        else len(np.unique(sids)),
        min_time=int(_numpy_of(chunks.column(T_MIN)).min()),
        max_time=int(_numpy_of(chunks.column(T_MAX)).max()),
        series_min=int(sids.min()),
        series_max=int(sids.max()),
    )
    for f, dtype in fields.items():
        n = int(_numpy_of(chunks.column(n_col(f))).sum())
        cast = int if dtype == "int64" else float
        lo_v = _extreme(chunks.column(min_col(f)), largest=False)
        hi_v = _extreme(chunks.column(max_col(f)), largest=True)
        info.field_stats[f] = {
            "count": n,
            "min": None if lo_v is None else cast(lo_v),
            "max": None if hi_v is None else cast(hi_v),
        }
        info.codecs[f] = _codec_counts(chunks.column(f))
    for label in labels:
        values = pa.compute.unique(chunks.column(label)).drop_null().to_pylist()
        if len(values) <= _LABEL_VALUES_LIMIT:
            info.label_values[label] = sorted(values)
    return info


def _numpy_of(column: pa.ChunkedArray) -> np.ndarray:
    """A null-free numeric column as one numpy array (zero-copy for a single chunk)."""
    return column.chunk(0).to_numpy() if column.num_chunks == 1 else column.to_numpy()


def _extreme(column: pa.ChunkedArray, *, largest: bool) -> int | float | None:
    """The smallest (``largest``: the largest) non-null value of a numeric column; None when all are null."""
    if column.null_count == len(column):
        return None
    values = _numpy_of(column.drop_null() if column.null_count else column)
    return (values.max() if largest else values.min()).item()  # type: ignore[no-any-return]


#: A parsed footer: Parquet metadata, Arrow schema, column index by name and the names of the blob columns.
_Footer = tuple[Any, pa.Schema, dict[str, int], frozenset[str]]
#: Parsed footers of raw files by (storage uri, key): data files are immutable and uniquely named, so a
#: footer never goes stale; bounded so a long-lived process does not grow without limit.
_FOOTERS: OrderedDict[tuple[str, str], _Footer] = OrderedDict()
_FOOTERS_LIMIT = 1024
_FOOTERS_LOCK = threading.Lock()


def _remember_footer(cache_key: tuple[str, str], footer: _Footer) -> None:
    with _FOOTERS_LOCK:
        _FOOTERS[cache_key] = footer
        while len(_FOOTERS) > _FOOTERS_LIMIT:
            _FOOTERS.popitem(last=False)


#: Small columns (ids, labels, bounds, counts, per-chunk statistics — not the codec blobs) of raw files by
#: (storage uri, key), whole files: pruning and statistics-only reads then need no I/O. Immutable files make
#: entries never stale; least recently used files are dropped beyond SMALL_COLUMNS_CACHE_BYTES.
_SMALL: OrderedDict[tuple[str, str], dict[str, pa.ChunkedArray]] = OrderedDict()
_SMALL_BYTES = [0]
SMALL_COLUMNS_CACHE_BYTES = 64 * 2**20


def _is_small(arrow_type: pa.DataType) -> bool:
    """Whether a raw-file column is cached with the small columns (everything but binary blobs)."""
    return not (pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))


def _cached_small(cache_key: tuple[str, str], footer: _Footer, columns: Sequence[str]) -> pa.Table | None:
    """The file's requested columns from the cache when all are cached small columns, else None."""
    index = footer[2]
    wanted = [c for c in dict.fromkeys(columns) if c in index]
    with _FOOTERS_LOCK:
        entry = _SMALL.get(cache_key)
        if entry is None or any(c not in entry for c in wanted):
            return None
        _SMALL.move_to_end(cache_key)
        return pa.Table.from_arrays([entry[c] for c in wanted], names=wanted)


def _remember_small(cache_key: tuple[str, str], table: pa.Table) -> None:
    with _FOOTERS_LOCK:
        entry = _SMALL.setdefault(cache_key, {})
        for name in table.column_names:
            if name not in entry:
                entry[name] = table.column(name)
                _SMALL_BYTES[0] += table.column(name).nbytes
        _SMALL.move_to_end(cache_key)
        while _SMALL_BYTES[0] > SMALL_COLUMNS_CACHE_BYTES and len(_SMALL) > 1:
            _, dropped = _SMALL.popitem(last=False)
            _SMALL_BYTES[0] -= sum(col.nbytes for col in dropped.values())


def _row_groups(meta: Any, names: Mapping[str, int], start: int | None, end: int | None) -> list[int]:
    """Row groups whose ``_t_min`` / ``_t_max`` statistics may overlap ``[start, end)`` (all without stats, or
    when the file has one); ``names`` maps column name to index."""
    groups = list(range(meta.num_row_groups))
    # a lone row group is read (the chunk filter after it is exact): its statistics cost more than that
    if (start is None and end is None) or len(groups) < 2 or T_MIN not in names or T_MAX not in names:
        return groups
    i_min, i_max = names[T_MIN], names[T_MAX]
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


def _codec_counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """How many blobs of a binary column use each codec (from each blob's first byte, without copying)."""
    totals = np.zeros(256, np.int64)
    parts = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for arr in parts:
        if len(arr) == 0 or arr.null_count == len(arr):
            continue
        _, off_buf, data_buf = arr.buffers()
        off = np.frombuffer(off_buf, np.int64 if pa.types.is_large_binary(arr.type) else np.int32)
        off = off[arr.offset : arr.offset + len(arr) + 1]
        valid = np.asarray(arr.is_valid()) if arr.null_count else np.ones(len(arr), np.bool_)
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        totals += chunkstats.codec_tally(data, off, valid)
    out: dict[str, int] = {}
    for cid in np.flatnonzero(totals).tolist():
        try:
            out[codecs.CodecId(cid).name.lower()] = int(totals[cid])
        except ValueError:
            raise CorruptBlockError(f"unknown codec id {cid}") from None
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
    cache_key = (storage.uri, key)
    footer = _FOOTERS.get(cache_key)
    table = None if footer is None else _cached_small(cache_key, footer, columns)
    try:
        if table is None:
            with storage.arrow_fs().open_input_file(storage.arrow_path(key)) as source:
                reader = ParquetReader()
                reader.open(source, metadata=footer[0] if footer else None, pre_buffer=False)
                if footer is None:
                    arrow_schema = reader.schema_arrow
                    names = arrow_schema.names
                    blobs = frozenset(
                        n for n, t in zip(names, arrow_schema.types, strict=True) if not _is_small(t)
                    )
                    footer = (reader.metadata, arrow_schema, {n: i for i, n in enumerate(names)}, blobs)
                    _remember_footer(cache_key, footer)
                wanted = [c for c in dict.fromkeys(columns) if c in footer[2]]
                table = _read_wanted(reader, cache_key, footer, wanted, start, end)
    except FileNotFoundError as exc:
        raise BackendReadError(f"data file {key} is missing from storage", retryable=False) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            raise BackendReadError(f"cannot read data file {key}: {exc}") from exc
        raise CorruptBlockError(f"unreadable Parquet data file: {exc}", path=key) from exc
    return _rows_in(table, key, start, end, series_ids)


def _read_wanted(
    reader: Any,
    cache_key: tuple[str, str],
    footer: _Footer,
    wanted: list[str],
    start: int | None,
    end: int | None,
) -> pa.Table:
    """Read ``wanted`` columns of an open raw file and keep its small columns when read whole.

    Small columns alone are read for every row group (so the cache holds whole files). Reads with blobs
    read only the blobs from the file when the small columns are cached (the Parquet reader's cost is mostly
    per column), else everything they want.
    """
    meta, arrow_schema, index, blob_names = footer
    small = [c for c in wanted if c not in blob_names]
    every_group = list(range(meta.num_row_groups))
    whole_file = len(small) == len(wanted)  # small columns alone: read (and cache) every row group
    groups = every_group if whole_file else _row_groups(meta, index, start, end)
    if not groups:
        return arrow_schema.empty_table().select(wanted)
    cached = None if whole_file or not small else _cached_columns(cache_key, small)
    if cached is not None:
        blobs = [c for c in wanted if c not in cached]
        read = reader.read_row_groups(groups, column_indices=[index[c] for c in blobs], use_threads=False)
        if len(groups) < len(every_group):
            ends = np.cumsum([meta.row_group(g).num_rows for g in every_group])
            spans = [(int(ends[g] - meta.row_group(g).num_rows), meta.row_group(g).num_rows) for g in groups]
            cached = {
                c: pa.chunked_array([part for o, n in spans for part in col.slice(o, n).chunks], col.type)
                for c, col in cached.items()
            }
        return pa.Table.from_arrays(
            [cached[c] if c in cached else read.column(c) for c in wanted], names=wanted
        )
    table = reader.read_row_groups(groups, column_indices=[index[c] for c in wanted], use_threads=False)
    if small and len(groups) == len(every_group):
        _remember_small(cache_key, table.select(small))
    return table


def _cached_columns(cache_key: tuple[str, str], names: Sequence[str]) -> dict[str, pa.ChunkedArray] | None:
    """The cached small columns ``names`` of a file (whole file), or None unless all are cached."""
    with _FOOTERS_LOCK:
        entry = _SMALL.get(cache_key)
        if entry is None or any(c not in entry for c in names):
            return None
        _SMALL.move_to_end(cache_key)
        return {c: entry[c] for c in names}


def read_cached_chunks(
    storage: Storage, key: str, columns: Sequence[str], *, start: int | None = None, end: int | None = None
) -> pa.Table | None:
    """:func:`read_chunks` answered from memory (small columns of a file read before), or None: no I/O."""
    cache_key = (storage.uri, key)
    footer = _FOOTERS.get(cache_key)
    table = None if footer is None else _cached_small(cache_key, footer, columns)
    return None if table is None else _rows_in(table, key, start, end, None)


def _rows_in(
    table: pa.Table, key: str, start: int | None, end: int | None, series_ids: Sequence[int] | None
) -> pa.Table:
    """The rows of a chunk table that may hold points in ``[start, end)`` of ``series_ids``."""
    if table.num_rows == 0 or (start is None and end is None and series_ids is None):
        return table
    try:
        mask = np.ones(table.num_rows, bool)
        if start is not None:
            mask &= np.asarray(table.column(T_MAX), np.int64) >= start
        if end is not None:
            mask &= np.asarray(table.column(T_MIN), np.int64) < end
        if series_ids is not None:
            wanted_ids = np.asarray([int(s) for s in series_ids], np.uint64)
            mask &= np.isin(np.asarray(table.column(SERIES_ID), np.uint64), wanted_ids)
    except KeyError as exc:
        raise CorruptBlockError(f"raw file lacks a chunk column: {exc}", path=key) from exc
    if mask.all():
        return table
    return table.filter(pa.array(mask))


#: ``(probe fields, fn, window)`` for :func:`decode_chunks`: ``fn(probe, chunk_index)`` (None: keep every value)
#: gets a frame of the probe fields for every point and each point's chunk, and returns a boolean numpy mask of
#: the points to keep for their values; ``window`` (None: no time bound) keeps only times in ``[start, end)``.
PointSelector = tuple[
    Sequence[str], Callable[[pl.DataFrame, np.ndarray], np.ndarray] | None, tuple[int, int] | None
]


def decode_chunks(
    chunks: pa.Table,
    labels: Sequence[str],
    fields: Mapping[str, str],
    *,
    key: str = "?",
    select: PointSelector | None = None,
    chunk_values: Mapping[str, np.ndarray] | None = None,
) -> pl.DataFrame:
    """Expand chunk rows into a point frame: ``_series_id``, ``time``, labels, fields (nulls restored).

    Each blob column decodes in one batched codec call over the Arrow buffers. With ``select`` the probe fields
    decode first, then the timestamps of chunks with a point kept for its values, then the other fields only
    for chunks with a selected point, and only selected points come back; label values and ``chunk_values``
    (one value per chunk, e.g. a sequence number) are gathered for the returned points only.
    """
    counts = np.asarray(chunks.column(COUNT), dtype=np.int64)
    chunk_index = np.repeat(np.arange(chunks.num_rows, dtype=np.int32), counts)
    rows: np.ndarray | None = None
    done: dict[str, pl.Series] = {}
    values = dict(chunk_values or {})
    try:
        if select is not None and chunks.num_rows:
            probe_fields, keep_fn, window = select
            mask: np.ndarray | None = None
            if keep_fn is not None:
                for f in probe_fields:
                    done[f] = _decode_field(chunks, f, fields[f], counts, chunk_index)
                mask = np.asarray(keep_fn(pl.DataFrame(list(done.values())), chunk_index), bool)
                chunks, values, counts, chunk_index, in_hit = _hit_chunks(chunks, values, counts, mask)
                if in_hit is not None:  # chunks without a kept value: no timestamps or other fields decoded
                    mask = mask[in_hit]
                    done = {f: s.filter(pl.Series(in_hit)) for f, s in done.items()}
            times = _decode_times(chunks, counts)
            if window is not None:
                inside = (times >= window[0]) & (times < window[1])
                mask = inside if mask is None else mask & inside
            if mask is not None:
                chunks, values, counts, chunk_index, in_hit = _hit_chunks(chunks, values, counts, mask)
                if in_hit is not None:
                    times, mask = times[in_hit], mask[in_hit]
                    done = {f: s.filter(pl.Series(in_hit)) for f, s in done.items()}
                rows = mask
        else:
            times = _decode_times(chunks, counts)
        point_chunk = chunk_index if rows is None else chunk_index[rows]
        out: dict[str, Any] = {
            SERIES_ID: pl.Series(SERIES_ID, np.asarray(chunks.column(SERIES_ID))[point_chunk], pl.UInt64),
            TIME_COLUMN: times if rows is None else times[rows],
        }
        if labels:
            names = set(chunks.column_names)
            per_chunk = pl.DataFrame(
                [
                    pl.Series(label, chunks.column(label)).cast(pl.String)
                    if label in names
                    else pl.Series(label, [None] * chunks.num_rows, pl.String)
                    for label in labels
                ]
            )
            gathered = per_chunk[point_chunk] if chunks.num_rows else per_chunk
            for label in labels:
                out[label] = gathered.get_column(label)
        for f, dtype in fields.items():
            if f in done:
                out[f] = done[f] if rows is None else done[f].filter(pl.Series(rows))
            else:
                out[f] = _decode_field(chunks, f, dtype, counts, chunk_index, rows)
        for name, per in values.items():
            out[name] = np.asarray(per)[point_chunk]
    except CorruptBlockError as exc:
        raise exc.with_path(key) from exc
    return pl.DataFrame(out)


def _decode_times(chunks: pa.Table, counts: np.ndarray) -> np.ndarray:
    """Every point's timestamp in chunk order, checked against the chunks' counts."""
    if not chunks.num_rows:
        return np.zeros(0, np.int64)
    times, tcounts = codecs.decode_timestamps_many(
        chunks.column(TIME_BLOB).combine_chunks(), parallel=_parallel(int(counts.sum()))
    )
    if not np.array_equal(tcounts, counts):
        raise CorruptBlockError("timestamp chunks disagree with their _count column")
    return times


def _hit_chunks(
    chunks: pa.Table, values: dict[str, np.ndarray], counts: np.ndarray, mask: np.ndarray
) -> tuple[pa.Table, dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray | None]:
    """Keep the chunks with a point selected by ``mask``: ``(chunks, chunk values, counts, chunk index of each
    point, which old points remain)``, the last None when every chunk stays."""
    chunk_index = np.repeat(np.arange(chunks.num_rows, dtype=np.int32), counts)
    if mask.all():
        return chunks, values, counts, chunk_index, None
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    hit = np.maximum.reduceat(mask, first) if len(mask) else np.zeros(0, bool)
    if hit.all():
        return chunks, values, counts, chunk_index, None
    in_hit = np.repeat(hit, counts)
    counts = counts[hit]
    kept = chunks.filter(pa.array(hit))
    chunk_index = np.repeat(np.arange(kept.num_rows, dtype=np.int32), counts)
    return kept, {k: np.asarray(v)[hit] for k, v in values.items()}, counts, chunk_index, in_hit


def decode_fields(chunks: pa.Table, fields: Mapping[str, str], *, key: str = "?") -> dict[str, pl.Series]:
    """Each field's values over all points of ``chunks`` in chunk order (nulls restored), timestamps not
    decoded: for callers that reduce whole chunks."""
    counts = np.asarray(chunks.column(COUNT), dtype=np.int64)
    chunk_index = np.repeat(np.arange(chunks.num_rows, dtype=np.int32), counts)
    try:
        return {f: _decode_field(chunks, f, dtype, counts, chunk_index) for f, dtype in fields.items()}
    except CorruptBlockError as exc:
        raise exc.with_path(key) from exc


def reduce_float_fields(
    chunks: pa.Table, fields: Sequence[str], *, key: str = "?"
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of each float field, without materialising points: ``(non-null count, sum, min, max)``
    (see :func:`~tsdb_lake.codecs.reduce_floats_many`); a chunk without values has count 0, sum 0.0 and NaN
    minimum / maximum."""
    m = chunks.num_rows
    total = int(np.asarray(chunks.column(COUNT), np.int64).sum()) if m else 0
    counts_col = np.asarray(chunks.column(COUNT), np.int64)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    names = set(chunks.column_names)
    try:
        for f in fields:
            n = np.zeros(m, np.int64)
            sums = np.zeros(m, np.float64)
            lo = np.full(m, np.nan)
            hi = np.full(m, np.nan)
            if f in names and m:
                blobs = chunks.column(f).combine_chunks()
                has = np.asarray(blobs.is_valid())
                present = blobs.filter(pa.array(has)) if not has.all() else blobs
                if len(present):
                    c, s, a, b = codecs.reduce_floats_many(present, parallel=_parallel(total))
                    n[has], sums[has], lo[has], hi[has] = c, s, a, b
                bitmaps = chunks.column(valid_col(f)) if valid_col(f) in names else None
                full = has if bitmaps is None else has & ~np.asarray(bitmaps.is_valid())
                if bool(np.any(n > counts_col)) or bool(np.any(n[full] != counts_col[full])):
                    raise CorruptBlockError(f"field {f!r} chunks decode to more or fewer values than points")
            out[f] = (n, sums, lo, hi)
    except CorruptBlockError as exc:
        raise exc.with_path(key) from exc
    return out


def _parallel(points: int) -> bool:
    """Whether a batch is big enough for the parallel decoders (a parallel region costs more than a small
    batch takes serially, and much more when other processes hold the cores)."""
    return points >= PARALLEL_DECODE_MIN_POINTS


def _decode_blobs(blobs: pa.Array, dtype: str, points: int) -> np.ndarray:
    if dtype == "float64":
        values, _ = codecs.decode_floats_many(blobs, parallel=_parallel(points))
        return values
    parts = [codecs.decode_ints(b) for b in blobs.to_pylist()]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _field_series(name: str, values: np.ndarray, valid: np.ndarray | None, pl_type: Any) -> pl.Series:
    """A polars Series from numpy values and an optional validity mask (False = null)."""
    if valid is None or bool(valid.all()):
        return pl.Series(name, values, pl_type)
    return pl.Series(name, pa.array(values, mask=~valid))


def _decode_field(
    chunks: pa.Table,
    f: str,
    dtype: str,
    counts: np.ndarray,
    chunk_index: np.ndarray,
    rows: np.ndarray | None = None,
) -> pl.Series:
    """One field's values for every point of ``chunks`` (only where the boolean ``rows`` holds), nulls restored."""
    pl_type = pl.Int64 if dtype == "int64" else pl.Float64
    np_type = np.int64 if dtype == "int64" else np.float64
    total = int(counts.sum())
    names = set(chunks.column_names)
    if f not in names:
        n_out = total if rows is None else int(np.count_nonzero(rows))
        return pl.Series(f, [None] * n_out, pl_type)
    blobs = chunks.column(f).combine_chunks()
    has_blob = np.asarray(blobs.is_valid())
    present = blobs.filter(pa.array(has_blob)) if not has_blob.all() else blobs
    decoded = _decode_blobs(present, dtype, total) if len(present) else np.zeros(0, np_type)
    bitmaps = chunks.column(valid_col(f)) if valid_col(f) in names else None
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
            valid[s : s + n] = np.unpackbits(
                np.frombuffer(bitmap, np.uint8), count=n, bitorder="little"
            ).astype(bool)
    elif has_blob.all():
        if len(decoded) != total:
            raise CorruptBlockError(f"field {f!r} chunks decode to {len(decoded)} values for {total} points")
        return pl.Series(f, decoded if rows is None else decoded[rows], pl_type)
    else:
        valid = has_blob[chunk_index]
    if int(valid.sum()) != len(decoded):
        raise CorruptBlockError(f"field {f!r}: {len(decoded)} values for {int(valid.sum())} valid points")
    values = np.zeros(total, np_type)
    values[valid] = decoded
    if rows is not None:
        values, valid = values[rows], valid[rows]
    return _field_series(f, values, valid, pl_type)
