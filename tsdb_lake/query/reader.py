"""Reading raw points: prune files through the catalog, prune chunks by bounds and labels, decode the rest.

The result of :func:`read_points` is a point frame sorted by (series, time) with duplicates across files and
the memtable resolved exactly as compaction would (newer data sequence wins, per field).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl
import pyarrow as pa

from tsdb_lake.catalog import DataFile, MetricSchema, Snapshot
from tsdb_lake.format import chunk_columns_for, decode_chunks, read_chunks
from tsdb_lake.format.raw import COUNT, T_MAX, T_MIN, TIME_BLOB
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID, SeriesIdCache, assign_series_ids, merge_duplicates
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.matchers import Matcher
from tsdb_lake.storage.base import Storage

__all__ = ["SEQ", "plan_files", "read_points"]

SEQ = "_seq"
_MEMTABLE_SEQ = 2**62
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="tsdb-lake-read")


def plan_files(
    snapshot: Snapshot,
    tenant: str,
    metric: str,
    tier: str,
    start: int,
    end: int,
    matchers: Sequence[Matcher],
    explain: Explain,
) -> list[Any]:
    """Files of (tenant, metric, tier) that may hold points in ``[start, end)`` matching ``matchers``."""
    all_files = snapshot.files(tenant, metric, tier)
    explain.files_total += len(all_files)
    out = []
    for f in all_files:
        if f.max_time < start or f.min_time >= end:
            explain.files_pruned_by_time += 1
            continue
        if not all(m.may_match_any(f.label_values.get(m.label)) for m in matchers):
            explain.files_pruned_by_labels += 1
            continue
        out.append(f)
    return out


def _label_filter(chunks: pa.Table, matchers: Sequence[Matcher]) -> pa.Table:
    if not matchers or chunks.num_rows == 0:
        return chunks
    frame = pl.from_arrow(chunks.select([m.label for m in matchers if m.label in chunks.column_names]))
    assert isinstance(frame, pl.DataFrame)
    exprs = [m.expr() if m.label in frame.columns else pl.lit(m.matches(None)) for m in matchers]
    mask = frame.select(pl.all_horizontal(exprs)).to_series().to_arrow()
    return chunks.filter(mask)


def _read_file(
    storage: Storage,
    f: Any,
    schema: MetricSchema,
    fields: Sequence[str],
    start: int,
    end: int,
    matchers: Sequence[Matcher],
) -> tuple[pl.DataFrame, dict[str, int]]:
    columns = [SERIES_ID, *schema.labels, T_MIN, T_MAX, COUNT, TIME_BLOB, *chunk_columns_for(fields, stats=False)]
    chunks = read_chunks(storage, f.path, columns, start=start, end=end)
    read = chunks.num_rows
    chunks = _label_filter(chunks, matchers)
    field_types = {name: schema.fields[name].dtype for name in fields}
    frame = decode_chunks(chunks, schema.labels, field_types, key=f.path)
    frame = frame.filter((pl.col(TIME_COLUMN) >= start) & (pl.col(TIME_COLUMN) < end))
    counts = {
        "chunks_read": read,
        "chunks_pruned_by_labels": read - chunks.num_rows,
        "chunks_decoded": chunks.num_rows,
        "points_decoded": int(pa.compute.sum(chunks.column(COUNT)).as_py() or 0),
        "bytes_read": int(chunks.nbytes),
    }
    return frame.with_columns(pl.lit(_seq_of(f), pl.Int64).alias(SEQ)), counts


def _seq_of(f: DataFile) -> int:
    return f.seq if f.seq is not None else 0


def read_points(
    storage: Storage,
    snapshot: Snapshot,
    tenant: str,
    metric: str,
    schema: MetricSchema,
    start: int,
    end: int,
    matchers: Sequence[Matcher],
    fields: Sequence[str],
    buffered: Iterable[pa.Table],
    explain: Explain,
    ids: SeriesIdCache | None = None,
) -> pl.DataFrame:
    """All points of the metric in ``[start, end)`` matching ``matchers``, for ``fields``, merged and sorted.

    Columns: ``_series_id``, ``time``, the schema's labels, ``fields``.
    """
    files = plan_files(snapshot, tenant, metric, "raw", start, end, matchers, explain)
    explain.files_read += len(files)
    frames: list[pl.DataFrame] = []
    for frame, counts in _POOL.map(
        lambda f: _read_file(storage, f, schema, fields, start, end, matchers), files
    ):
        frames.append(frame)
        for k, v in counts.items():
            setattr(explain, k, getattr(explain, k) + v)
    ids = ids or SeriesIdCache()
    for i, table in enumerate(buffered):
        explain.memtable_batches += 1
        loaded = pl.from_arrow(table)
        assert isinstance(loaded, pl.DataFrame)
        frame = loaded.filter((pl.col(TIME_COLUMN) >= start) & (pl.col(TIME_COLUMN) < end))
        if frame.height == 0:
            continue
        frame = assign_series_ids(frame, metric, schema.labels, ids)
        if matchers:
            frame = frame.filter(
                pl.all_horizontal(
                    [m.expr() if m.label in frame.columns else pl.lit(m.matches(None)) for m in matchers]
                )
            )
        frames.append(frame.with_columns(pl.lit(_MEMTABLE_SEQ + i, pl.Int64).alias(SEQ)))
    columns = [SERIES_ID, TIME_COLUMN, *schema.labels, *fields]
    dtypes = {
        SERIES_ID: pl.UInt64,
        TIME_COLUMN: pl.Int64,
        SEQ: pl.Int64,
        **{label: pl.String for label in schema.labels},
        **{f: pl.Int64 if schema.fields[f].dtype == "int64" else pl.Float64 for f in fields},
    }
    aligned = [
        fr.select([pl.col(c).cast(dtypes[c]) if c in fr.columns else pl.lit(None, dtypes[c]).alias(c)
                   for c in [*columns, SEQ]])
        for fr in frames
    ]
    if not aligned:
        return pl.DataFrame(schema={c: dtypes[c] for c in columns})
    merged = pl.concat(aligned, rechunk=False) if len(aligned) > 1 else aligned[0]
    if len(aligned) > 1:
        merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
        merged = merge_duplicates(merged, fields)
    return merged.drop(SEQ)
