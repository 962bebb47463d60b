"""Reading raw points: prune files through the catalog, prune chunks by bounds and labels, decode the rest.

The result of :func:`read_points` is a point frame sorted by (series, time) with duplicates across files and
the memtable resolved exactly as compaction would (newer data sequence wins, per field).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

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


def _seq_of(f: DataFile) -> int:
    return f.seq if f.seq is not None else 0


def _read_files(
    storage: Storage,
    files: Sequence[Any],
    schema: MetricSchema,
    fields: Sequence[str],
    start: int,
    end: int,
    matchers: Sequence[Matcher],
    explain: Explain,
    labels: Sequence[str],
) -> tuple[pa.Table, np.ndarray, int]:
    """The chunk rows of ``files`` that may hold matching points, each row's data sequence number and how
    many files contributed rows."""
    read_labels = [lb for lb in schema.labels if lb in labels or any(m.label == lb for m in matchers)]
    columns = [
        SERIES_ID,
        *read_labels,
        T_MIN,
        T_MAX,
        COUNT,
        TIME_BLOB,
        *chunk_columns_for(fields, stats=False),
    ]

    def one(f: Any) -> pa.Table:
        return read_chunks(storage, f.path, columns, start=start, end=end)

    tables = list(_POOL.map(one, files)) if len(files) > 1 else [one(f) for f in files]
    explain.chunks_read += sum(t.num_rows for t in tables)
    seqs = np.repeat(np.asarray([_seq_of(f) for f in files], np.int64), [t.num_rows for t in tables])
    keep = [i for i, t in enumerate(tables) if t.num_rows]
    if len(keep) == 1:
        chunks = tables[keep[0]]
    elif keep:
        chunks = pa.concat_tables([tables[i] for i in keep], promote_options="permissive")
    else:
        return tables[0] if tables else pa.table({}), np.zeros(0, np.int64), 0
    read = chunks.num_rows
    if matchers:
        with_seq = chunks.append_column(SEQ, pa.array(seqs))
        with_seq = _label_filter(with_seq, matchers)
        seqs = np.asarray(with_seq.column(SEQ), np.int64)
        chunks = with_seq.drop_columns([SEQ])
    explain.chunks_pruned_by_labels += read - chunks.num_rows
    explain.chunks_decoded += chunks.num_rows
    explain.points_decoded += int(pc.sum(chunks.column(COUNT)).as_py() or 0) if chunks.num_rows else 0
    explain.bytes_read += int(chunks.nbytes)
    return chunks, seqs, len(keep)


def _sorted_chunks(chunks: pa.Table, seqs: np.ndarray) -> tuple[pa.Table, np.ndarray, bool]:
    """Chunks ordered by (series, first time) and whether any two of a series overlap in time.

    Chunks of one series that do not overlap hold no duplicate points, so decoding them in this order gives
    points sorted by (series, time) with nothing to merge.
    """
    sids = np.asarray(chunks.column(SERIES_ID), np.uint64)
    tmin = np.asarray(chunks.column(T_MIN), np.int64)
    tmax = np.asarray(chunks.column(T_MAX), np.int64)
    in_order = bool(np.all((sids[1:] > sids[:-1]) | ((sids[1:] == sids[:-1]) & (tmin[1:] >= tmin[:-1]))))
    if not in_order:
        order = np.lexsort((tmin, sids))
        sids, tmin, tmax, seqs = sids[order], tmin[order], tmax[order], seqs[order]
        chunks = chunks.take(pa.array(order))
    # Sorted by tmin within a series: with no consecutive overlap t_max grows, so pairs suffice.
    overlap = bool(np.any((sids[1:] == sids[:-1]) & (tmin[1:] <= tmax[:-1])))
    return chunks, seqs, overlap


def _ranges_overlap(chunks: pa.Table, extra: Sequence[pl.DataFrame]) -> bool:
    """Whether memtable frames overlap each other or the file chunks in (series, time)."""
    parts = (
        [
            pl.DataFrame(
                {
                    SERIES_ID: pl.Series(np.asarray(chunks.column(SERIES_ID), np.uint64)),
                    "lo": pl.Series(np.asarray(chunks.column(T_MIN), np.int64)),
                    "hi": pl.Series(np.asarray(chunks.column(T_MAX), np.int64)),
                }
            )
        ]
        if chunks.num_rows
        else []
    )
    for fr in extra:
        parts.append(
            fr.group_by(SERIES_ID).agg(
                pl.col(TIME_COLUMN).min().alias("lo"), pl.col(TIME_COLUMN).max().alias("hi")
            )
        )
        if fr.select(pl.struct(SERIES_ID, TIME_COLUMN).is_duplicated().any()).item():
            return True
    if len(parts) < 2:
        return False
    ranges = pl.concat(parts).sort(SERIES_ID, "lo")
    sids = ranges.get_column(SERIES_ID).to_numpy()
    lo = ranges.get_column("lo").to_numpy()
    hi = ranges.get_column("hi").to_numpy()
    same = sids[1:] == sids[:-1]
    # Ranges sorted by lo: compare each with the running maximum of earlier ends of its series.
    run = hi.copy()
    for i in range(1, len(run)):
        if same[i - 1] and run[i - 1] > run[i]:
            run[i] = run[i - 1]
    return bool(np.any(same & (lo[1:] <= run[:-1])))


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
    *,
    labels: Sequence[str] | None = None,
) -> pl.DataFrame:
    """All points of the metric in ``[start, end)`` matching ``matchers``, for ``fields``, merged and sorted.

    Columns: ``_series_id``, ``time``, the schema's labels (only those in ``labels`` when given: a query that
    groups by a few labels, or none, need not materialise the others per point), ``fields``. Chunks of all files decode in one
    batched call; duplicates are merged (newer data sequence wins per field) only when some series has
    overlapping chunks / memtable points — otherwise ordering the chunks is enough.
    """
    out_labels = list(schema.labels) if labels is None else [lb for lb in schema.labels if lb in set(labels)]
    files = plan_files(snapshot, tenant, metric, "raw", start, end, matchers, explain)
    explain.files_read += len(files)
    chunks, seqs, n_files_with_data = _read_files(
        storage, files, schema, fields, start, end, matchers, explain, out_labels
    )
    overlap = False
    if chunks.num_rows:
        chunks, seqs, overlap = _sorted_chunks(chunks, seqs)
    ids = ids or SeriesIdCache()
    extra: list[pl.DataFrame] = []
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
        extra.append(frame.with_columns(pl.lit(_MEMTABLE_SEQ + i, pl.Int64).alias(SEQ)))
    columns = [SERIES_ID, TIME_COLUMN, *out_labels, *fields]
    dtypes = {
        SERIES_ID: pl.UInt64,
        TIME_COLUMN: pl.Int64,
        SEQ: pl.Int64,
        **{label: pl.String for label in schema.labels},
        **{f: pl.Int64 if schema.fields[f].dtype == "int64" else pl.Float64 for f in fields},
    }
    frames: list[pl.DataFrame] = []
    if chunks.num_rows:
        field_types = {name: schema.fields[name].dtype for name in fields}
        decoded = decode_chunks(
            chunks, out_labels, field_types, key=files[0].path if len(files) == 1 else "?"
        )
        t_lo = int(pc.min(chunks.column(T_MIN)).as_py())
        t_hi = int(pc.max(chunks.column(T_MAX)).as_py())
        if t_lo < start or t_hi >= end:
            keep = (decoded.get_column(TIME_COLUMN) >= start) & (decoded.get_column(TIME_COLUMN) < end)
            decoded = decoded.with_columns(pl.Series(SEQ, np.repeat(seqs, np.asarray(chunks.column(COUNT)))))
            decoded = decoded.filter(keep)
        else:
            decoded = decoded.with_columns(pl.Series(SEQ, np.repeat(seqs, np.asarray(chunks.column(COUNT)))))
        frames.append(decoded)
    frames.extend(extra)
    aligned = [
        fr.select(
            [
                pl.col(c).cast(dtypes[c]) if c in fr.columns else pl.lit(None, dtypes[c]).alias(c)
                for c in [*columns, SEQ]
            ]
        )
        for fr in frames
    ]
    if not aligned:
        return pl.DataFrame(schema={c: dtypes[c] for c in columns})
    sources = n_files_with_data + len(extra)
    merged = pl.concat(aligned, rechunk=False) if len(aligned) > 1 else aligned[0]
    if sources > 1 and (extra or overlap):
        if overlap or _ranges_overlap(chunks, extra):
            merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
            merged = merge_duplicates(merged, fields)
        else:
            merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
    return merged.drop(SEQ)
