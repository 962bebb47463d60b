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
from tsdb_lake.format.raw import COUNT, T_MAX, T_MIN, TIME_BLOB, max_col, min_col, n_col
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID, SeriesIdCache, assign_series_ids, merge_duplicates
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.matchers import Matcher
from tsdb_lake.storage.base import Storage

__all__ = ["SEQ", "STATS_AGGS", "plan_files", "read_points", "read_points_with_stats"]

SEQ = "_seq"
FILE_IDX = "_file"
_MEMTABLE_SEQ = 2**62
#: Aggregates a chunk's statistics can answer when the whole chunk falls inside one bucket.
STATS_AGGS = frozenset({"count", "min", "max"})
BUCKET_COL = "_bucket"
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
    stats: bool = False,
    blobs: bool = True,
) -> tuple[pa.Table, np.ndarray, int]:
    """The chunk rows of ``files`` that may hold matching points, each row's data sequence number and how
    many files contributed rows. Rows carry ``_file``, the index of their file in ``files``; without
    ``blobs`` only bounds, labels and statistics are read (the statistics path decides what to decode)."""
    read_labels = [lb for lb in schema.labels if lb in labels or any(m.label == lb for m in matchers)]
    columns = [
        SERIES_ID,
        *read_labels,
        T_MIN,
        T_MAX,
        COUNT,
        *([TIME_BLOB] if blobs else []),
        *chunk_columns_for(fields, blobs=blobs, stats=stats),
    ]

    def one(f: Any) -> pa.Table:
        return read_chunks(storage, f.path, columns, start=start, end=end)

    tables = list(_POOL.map(one, files)) if len(files) > 1 else [one(f) for f in files]
    explain.chunks_read += sum(t.num_rows for t in tables)
    seqs = np.repeat(np.asarray([_seq_of(f) for f in files], np.int64), [t.num_rows for t in tables])
    tables = [
        t.append_column(FILE_IDX, pa.array(np.full(t.num_rows, i, np.int32))) for i, t in enumerate(tables)
    ]
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


def _overlapping_series(chunks: pa.Table, extra: Sequence[pl.DataFrame]) -> np.ndarray:
    """Series ids (uint64) whose chunks / memtable points overlap one another in time (as
    :func:`_ranges_overlap` judges them, per series): their duplicates need merging, so their chunks must decode."""
    parts = [
        pl.DataFrame(
            {
                SERIES_ID: pl.Series(np.asarray(chunks.column(SERIES_ID), np.uint64)),
                "lo": pl.Series(np.asarray(chunks.column(T_MIN), np.int64)),
                "hi": pl.Series(np.asarray(chunks.column(T_MAX), np.int64)),
            }
        )
    ]
    for fr in extra:
        parts.append(
            fr.group_by(SERIES_ID).agg(
                pl.col(TIME_COLUMN).min().alias("lo"), pl.col(TIME_COLUMN).max().alias("hi")
            )
        )
    ranges = pl.concat(parts).sort(SERIES_ID, "lo")
    prev_hi = pl.col("hi").cum_max().shift(1).over(SERIES_ID)
    hit = ranges.filter(pl.col("lo") <= prev_hi).get_column(SERIES_ID).unique()
    dup = [
        fr.filter(pl.struct(SERIES_ID, TIME_COLUMN).is_duplicated()).get_column(SERIES_ID).unique()
        for fr in extra
    ]
    return np.asarray(pl.concat([hit.cast(pl.UInt64), *[d.cast(pl.UInt64) for d in dup]]).unique(), np.uint64)


def _split_stats(
    chunks: pa.Table,
    seqs: np.ndarray,
    extra: Sequence[pl.DataFrame],
    schema: MetricSchema,
    fields: Sequence[str],
    labels: Sequence[str],
    start: int,
    end: int,
    every: int,
    minmax: bool,
    explain: Explain,
) -> tuple[pa.Table, np.ndarray, pl.DataFrame | None]:
    """Take out the chunks whose statistics answer count / min / max exactly; return the rest and their stats.

    A chunk qualifies when it lies inside ``[start, end)`` and inside one ``every`` bucket, its series has no
    overlapping data (duplicates to merge) and every field's statistics are present. (A zero minimum or maximum
    may come back as +0.0 where decoding would give -0.0 or the reverse: they compare equal, and which zero a
    min / max returns depends on value order anyway.)
    The stats frame has ``_series_id``, ``labels``, ``_bucket`` and per field ``_n__f``, ``_min__f``, ``_max__f``
    with an all-NaN chunk's min / max as NaN and an all-null chunk's as null — what decoding would give.
    """
    sids = np.asarray(chunks.column(SERIES_ID), np.uint64)
    tmin = np.asarray(chunks.column(T_MIN), np.int64)
    tmax = np.asarray(chunks.column(T_MAX), np.int64)
    ok = (tmin >= start) & (tmax < end) & (tmin // every == tmax // every)
    if not ok.any():
        return chunks, seqs, None
    for f in fields:
        if n_col(f) not in chunks.column_names:
            return chunks, seqs, None
        n = chunks.column(n_col(f))
        ok &= np.asarray(n.is_valid())
        if minmax:
            for col in (min_col(f), max_col(f)):
                if col not in chunks.column_names:
                    return chunks, seqs, None
    if not ok.any():
        return chunks, seqs, None
    bad = _overlapping_series(chunks, extra)
    if len(bad):
        ok &= ~np.isin(sids, bad)
    if not ok.any():
        return chunks, seqs, None
    answered = chunks.filter(pa.array(ok))
    rest = chunks.filter(pa.array(~ok))
    columns: dict[str, Any] = {
        SERIES_ID: pl.Series(SERIES_ID, sids[ok], pl.UInt64),
        BUCKET_COL: pl.Series(BUCKET_COL, tmin[ok] // every * every, pl.Int64),
    }
    for label in labels:
        values = (
            pl.Series(label, answered.column(label)).cast(pl.String)
            if label in answered.column_names
            else pl.Series(label, [None] * answered.num_rows, pl.String)
        )
        columns[label] = values
    for f in fields:
        n = pl.Series(n_col(f), answered.column(n_col(f))).cast(pl.Int64)
        columns[n_col(f)] = n
        if not minmax:
            continue
        is_int = schema.fields[f].dtype == "int64"
        for col in (min_col(f), max_col(f)):
            if col in answered.column_names:
                v = pl.Series(col, answered.column(col)).cast(pl.Int64 if is_int else pl.Float64)
            else:
                v = pl.Series(col, [None] * answered.num_rows, pl.Int64 if is_int else pl.Float64)
            if not is_int:  # values present but no non-NaN minimum: every value is NaN
                v = pl.select(
                    pl.when(v.is_null() & (n > 0)).then(float("nan")).otherwise(v).alias(col)
                ).to_series()
            columns[col] = v
    explain.chunks_answered_by_stats += answered.num_rows
    explain.chunks_decoded -= answered.num_rows
    explain.points_decoded -= int(pc.sum(answered.column(COUNT)).as_py() or 0)
    return rest, seqs[~ok], pl.DataFrame(columns)


def _read_blobs_of(
    storage: Storage,
    files: Sequence[Any],
    wanted: pa.Table,
    schema: MetricSchema,
    fields: Sequence[str],
    start: int,
    end: int,
    matchers: Sequence[Matcher],
    labels: Sequence[str],
    explain: Explain,
) -> tuple[pa.Table, np.ndarray]:
    """Re-read, with their blobs, the chunk rows of ``wanted`` (rows from a blob-less first read).

    Only the files that hold such rows are read again; rows are matched on (file, series, first time), which
    is unique because the chunks of one series in a file never overlap. Sorted like the first read.
    """
    need = np.unique(np.asarray(wanted.column(FILE_IDX), np.int32))
    scratch = Explain()
    full, full_seqs, _ = _read_files(
        storage, [files[i] for i in need], schema, fields, start, end, matchers, scratch, labels
    )
    explain.bytes_read += scratch.bytes_read
    full_file = need[np.asarray(full.column(FILE_IDX), np.int32)]
    keys = pl.DataFrame(
        {
            FILE_IDX: pl.Series(np.asarray(wanted.column(FILE_IDX), np.int32)),
            SERIES_ID: pl.Series(np.asarray(wanted.column(SERIES_ID), np.uint64)),
            T_MIN: pl.Series(np.asarray(wanted.column(T_MIN), np.int64)),
        }
    )
    rows = pl.DataFrame(
        {
            FILE_IDX: pl.Series(full_file.astype(np.int32)),
            SERIES_ID: pl.Series(np.asarray(full.column(SERIES_ID), np.uint64)),
            T_MIN: pl.Series(np.asarray(full.column(T_MIN), np.int64)),
            "_row": pl.Series(np.arange(full.num_rows, dtype=np.int64)),
        }
    )
    picked = rows.join(keys, on=[FILE_IDX, SERIES_ID, T_MIN], how="semi").get_column("_row").to_numpy()
    chunks, seqs, _ = _sorted_chunks(full.take(pa.array(picked)), full_seqs[picked])
    return chunks, seqs


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

    See :func:`read_points_with_stats` for the columns; this decodes every chunk that may contribute.
    """
    points, _ = read_points_with_stats(
        storage,
        snapshot,
        tenant,
        metric,
        schema,
        start,
        end,
        matchers,
        fields,
        buffered,
        explain,
        ids,
        labels=labels,
    )
    return points


def read_points_with_stats(
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
    stats_every: int | None = None,
    stats_minmax: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The points of the metric in ``[start, end)`` matching ``matchers``, for ``fields``, merged and sorted,
    and (with ``stats_every``) the statistics of chunks answered without decoding.

    With ``stats_every`` (a bucket width, for queries whose aggregates are all in :data:`STATS_AGGS`),
    chunks that lie wholly inside the range and one bucket, of series without overlapping data, are not
    decoded: their rows come back as the second frame (see :func:`_split_stats`; ``stats_minmax`` False when
    only ``count`` is asked). Otherwise, or when no chunk qualifies, the second value is None.

    Columns: ``_series_id``, ``time``, the schema's labels (only those in ``labels`` when given: a query that
    groups by a few labels, or none, need not materialise the others per point), ``fields``. Chunks of all files decode in one
    batched call; duplicates are merged (newer data sequence wins per field) only when some series has
    overlapping chunks / memtable points — otherwise ordering the chunks is enough.
    """
    out_labels = list(schema.labels) if labels is None else [lb for lb in schema.labels if lb in set(labels)]
    files = plan_files(snapshot, tenant, metric, "raw", start, end, matchers, explain)
    explain.files_read += len(files)
    if stats_every is not None and not any(
        (f.max_time - f.min_time) * max(f.series, 1) // max(f.rows, 1) <= stats_every for f in files
    ):
        # a file's chunks span about (time span x series / chunks); none is short enough to sit in one
        # bucket, so skip the blob-less first read of the statistics path
        stats_every = None
    chunks, seqs, n_files_with_data = _read_files(
        storage,
        files,
        schema,
        fields,
        start,
        end,
        matchers,
        explain,
        out_labels,
        stats=stats_every is not None,
        blobs=stats_every is None,
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
    stats: pl.DataFrame | None = None
    if stats_every is not None and chunks.num_rows:
        chunks, seqs, stats = _split_stats(
            chunks, seqs, extra, schema, fields, out_labels, start, end, stats_every, stats_minmax, explain
        )
        if chunks.num_rows:  # second phase: the blobs of the chunks statistics could not answer
            chunks, seqs = _read_blobs_of(
                storage, files, chunks, schema, fields, start, end, matchers, out_labels, explain
            )
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
        return pl.DataFrame(schema={c: dtypes[c] for c in columns}), stats
    sources = n_files_with_data + len(extra)
    merged = pl.concat(aligned, rechunk=False) if len(aligned) > 1 else aligned[0]
    if sources > 1 and (extra or overlap):
        if overlap or _ranges_overlap(chunks, extra):
            merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
            merged = merge_duplicates(merged, fields)
        else:
            merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
    return merged.drop(SEQ), stats
