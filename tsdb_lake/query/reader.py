"""Reading raw points: prune files through the catalog, prune chunks by bounds and labels, decode the rest.

The result of :func:`read_points` is a point frame sorted by (series, time) with duplicates across files and
the memtable resolved exactly as compaction would (newer data sequence wins, per field).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tsdb_lake.catalog import DataFile, MetricSchema, Snapshot
from tsdb_lake.format import chunk_columns_for, decode_chunks, read_chunks
from tsdb_lake.format.raw import (
    COUNT,
    T_MAX,
    T_MIN,
    TIME_BLOB,
    decode_fields,
    max_col,
    min_col,
    n_col,
    read_cached_chunks,
    reduce_float_fields,
    valid_col,
)
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID, SeriesIdCache, assign_series_ids, merge_duplicates
from tsdb_lake.query.aggregate import AggSpec, reduce_segments, reduced_partials
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.matchers import Matcher
from tsdb_lake.query.predicates import FieldPredicate, chunks_may_match, points_mask, predicate_expr
from tsdb_lake.storage.base import Storage

__all__ = [
    "SEQ",
    "STATS_AGGS",
    "PointsRead",
    "plan_files",
    "read_for_query",
    "read_points",
]

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


def _label_mask(chunks: pa.Table, matchers: Sequence[Matcher]) -> np.ndarray:
    """Per chunk row, whether its labels satisfy every matcher.

    Regex matchers run once per distinct label value with the same compiled pattern file pruning uses, so
    one regex engine decides everywhere (and label columns hold few distinct values per file).
    """
    names = set(chunks.column_names)
    mask = np.ones(chunks.num_rows, bool)
    for m in matchers:
        if m.label not in names:  # label absent from these files: it matches as ""
            if not m.matches(None):
                mask[:] = False
            continue
        column = chunks.column(m.label)
        if m.op in ("=", "!="):  # plain (in)equality: compare in Arrow, no conversion
            hit = np.asarray(pc.equal(column.fill_null(""), m.value), bool)
            mask &= hit if m.op == "=" else ~hit
            continue
        encoded = column.combine_chunks().dictionary_encode()
        values = encoded.dictionary.to_pylist()
        hits = np.array([m.matches(v) for v in values] + [m.matches(None)], bool)
        mask &= hits[np.asarray(encoded.indices.fill_null(len(values)), np.int64)]
    return mask


def _label_filter(chunks: pa.Table, matchers: Sequence[Matcher]) -> pa.Table:
    if not matchers or chunks.num_rows == 0:
        return chunks
    return chunks.filter(pa.array(_label_mask(chunks, matchers)))


def _files_with_candidates(
    storage: Storage,
    files: Sequence[Any],
    schema: MetricSchema,
    start: int,
    end: int,
    matchers: Sequence[Matcher],
    filters: Sequence[FieldPredicate],
    extra: Sequence[pl.DataFrame],
    explain: Explain,
) -> list[Any]:
    """The files with a chunk that matches the labels and may pass the value filters, from a probe read of
    bounds, matched labels and filter statistics only; the other files' chunks count as pruned.

    Label-selective queries keep few chunks per file, so value statistics often rule out whole files: those
    are never read in full. A chunk of a series with overlapping data keeps its file (see the exemption in
    :func:`read_for_query`).
    """
    scratch = Explain()
    probe_fields = list(dict.fromkeys(p.field for p in filters))
    chunks, seqs, _ = _read_files(
        storage,
        files,
        schema,
        [],
        start,
        end,
        (),
        scratch,
        [m.label for m in matchers],
        blobs=False,
        extra_columns=chunk_columns_for(probe_fields, blobs=False, stats=True),
    )
    if not chunks.num_rows:
        return list(files)
    labelled = _label_mask(chunks, matchers)
    may = _chunks_may_match(chunks, filters, schema)
    if extra or not may.all():
        _, _, overlap = _sorted_chunks(chunks, seqs)
        if overlap or extra:
            may |= np.isin(
                np.asarray(chunks.column(SERIES_ID), np.uint64), _overlapping_series(chunks, extra)
            )
    file_idx = np.asarray(chunks.column(FILE_IDX), np.int32)
    keep = np.unique(file_idx[labelled & may])
    skipped = ~np.isin(file_idx, keep)
    explain.chunks_read += int(skipped.sum())
    explain.chunks_pruned_by_labels += int((skipped & ~labelled).sum())
    explain.chunks_pruned_by_values += int((skipped & labelled).sum())
    return [files[i] for i in keep.tolist()]


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
    blobs: bool | Sequence[bool] = True,
    extra_columns: Sequence[str] = (),
) -> tuple[pa.Table, np.ndarray, int]:
    """The chunk rows of ``files`` that may hold matching points, each row's data sequence number and how
    many files contributed rows. Rows carry ``_file``, the index of their file in ``files``; without
    ``blobs`` (one flag, or one per file) only bounds, labels and statistics are read (the statistics path
    decides what to decode); rows of files read without blobs have null blob columns."""
    read_labels = [lb for lb in schema.labels if lb in labels or any(m.label == lb for m in matchers)]
    with_blobs = [blobs] * len(files) if isinstance(blobs, bool) else list(blobs)

    def columns(f: Any, b: bool) -> list[str]:
        cols = chunk_columns_for(fields, blobs=b, stats=stats)
        if b:  # a field without nulls in the file (per the catalog) has no validity bitmaps to read
            skip = {valid_col(name) for name in _fields_without_nulls(f, fields)}
            cols = [c for c in cols if c not in skip]
        return [
            SERIES_ID,
            *read_labels,
            T_MIN,
            T_MAX,
            COUNT,
            *([TIME_BLOB] if b else []),
            *cols,
            *extra_columns,
        ]

    wanted = [columns(f, b) for f, b in zip(files, with_blobs, strict=True)]

    def one(i: int) -> pa.Table:
        return read_chunks(storage, files[i].path, wanted[i], start=start, end=end)

    # small columns read before come from memory on this thread; the pool reads the rest
    found = [
        read_cached_chunks(storage, f.path, w, start=start, end=end)
        for f, w in zip(files, wanted, strict=True)
    ]
    misses = [i for i, t in enumerate(found) if t is None]
    # the calling thread reads one file itself rather than wait idle for the pool (cores may be busy)
    pending = [_POOL.submit(one, i) for i in misses[1:]]
    loaded = [one(misses[0])] if misses else []
    loaded += [p.result() for p in pending]
    for i, t in zip(misses, loaded, strict=True):
        found[i] = t
    tables: list[pa.Table] = [t for t in found if t is not None]
    explain.chunks_read += sum(t.num_rows for t in tables)
    seqs = np.repeat(np.asarray([_seq_of(f) for f in files], np.int64), [t.num_rows for t in tables])
    tables = [
        t.append_column(FILE_IDX, pa.array(np.full(t.num_rows, i, np.int32))) for i, t in enumerate(tables)
    ]
    keep = [i for i, t in enumerate(tables) if t.num_rows]
    if len(keep) == 1:
        chunks = tables[keep[0]]
    elif keep:
        chunks = pa.concat_tables([tables[i] for i in keep], promote_options="permissive").combine_chunks()
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


def _fields_without_nulls(f: Any, fields: Sequence[str]) -> set[str]:
    """The ``fields`` the catalog records as having a value at every point of file ``f``: their chunks carry
    no validity bitmaps (a file contradicting its record fails decoding on the value count)."""
    stats = getattr(f, "field_stats", None) or {}
    points = getattr(f, "points", None)
    return {name for name in fields if name in stats and points is not None and stats[name].count == points}


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
    *,
    overlap: bool = True,
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
    names = set(chunks.column_names)
    for f in fields:
        if n_col(f) not in names:
            return chunks, seqs, None
        n = chunks.column(n_col(f))
        ok &= np.asarray(n.is_valid())
        if minmax:
            for col in (min_col(f), max_col(f)):
                if col not in names:
                    return chunks, seqs, None
    if not ok.any():
        return chunks, seqs, None
    if overlap or extra:
        bad = _overlapping_series(chunks, extra)
        if len(bad):
            ok &= ~np.isin(sids, bad)
    if not ok.any():
        return chunks, seqs, None
    keep = pa.array(ok)
    rest = chunks.filter(pa.array(~ok))
    stat_cols = [n_col(f) for f in fields]
    if minmax:
        stat_cols += [c for f in fields for c in (min_col(f), max_col(f)) if c in names]
    present = [lb for lb in labels if lb in names]
    answered = chunks.select([SERIES_ID, *present, *stat_cols]).filter(keep)
    columns: dict[str, Any] = {
        SERIES_ID: pl.Series(SERIES_ID, sids[ok], pl.UInt64),
        BUCKET_COL: pl.Series(BUCKET_COL, tmin[ok] // every * every, pl.Int64),
    }
    for label in labels:
        columns[label] = (
            pl.Series(label, answered.column(label)).cast(pl.String)
            if label in present
            else pl.Series(label, [None] * answered.num_rows, pl.String)
        )
    for f in fields:
        n = pl.Series(n_col(f), answered.column(n_col(f))).cast(pl.Int64)
        columns[n_col(f)] = n
        if not minmax:
            continue
        is_int = schema.fields[f].dtype == "int64"
        for col in (min_col(f), max_col(f)):
            v = pl.Series(col, answered.column(col)).cast(pl.Int64 if is_int else pl.Float64)
            if not is_int and v.null_count():  # values present but no non-NaN minimum: all are NaN
                v = pl.select(
                    pl.when(v.is_null() & (n > 0)).then(float("nan")).otherwise(v).alias(col)
                ).to_series()
            columns[col] = v
    explain.chunks_answered_by_stats += int(ok.sum())
    explain.chunks_decoded -= int(ok.sum())
    explain.points_decoded -= int(np.asarray(chunks.column(COUNT), np.int64)[ok].sum())
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

    See :func:`read_for_query` for the columns; this decodes every chunk that may contribute.
    """
    return read_for_query(
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
    ).points


@dataclass
class PointsRead:
    """What :func:`read_for_query` read: points, chunk statistics (or None) and, when asked, one row per
    series (``_series_id`` and the asked labels) of every series that may contribute."""

    points: pl.DataFrame
    stats: pl.DataFrame | None = None
    series: pl.DataFrame | None = None
    partials: pl.DataFrame | None = None


def read_for_query(
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
    filters: Sequence[FieldPredicate] = (),
    series_labels: Sequence[str] | None = None,
    partials_every: int | None = None,
    partial_aggs: Sequence[AggSpec] = (),
) -> PointsRead:
    """The points of the metric in ``[start, end)`` matching ``matchers``, for ``fields``, merged and sorted,
    and (with ``stats_every``) the statistics of chunks answered without decoding.

    With ``stats_every`` (a bucket width, for queries whose aggregates are all in :data:`STATS_AGGS`),
    chunks that lie wholly inside the range and one bucket, of series without overlapping data, are not
    decoded: their rows come back as the second frame (see :func:`_split_stats`; ``stats_minmax`` False when
    only ``count`` is asked). Otherwise, or when no chunk qualifies, the second value is None.

    Columns: ``_series_id``, ``time``, the schema's labels (only those in ``labels`` when given: a query
    that groups by a few labels, or none, need not materialise the others per point), ``fields``. Chunks of
    all files decode in one batched call; duplicates are merged (newer data sequence wins per field) only
    when some series has overlapping chunks / memtable points — otherwise ordering the chunks is enough.
    ``filters`` keep only points passing every value predicate (chunks their statistics rule out are not
    decoded). ``series_labels`` asks for the series frame (labels attached once per series, not per point).
    With ``partials_every`` (decomposable ``partial_aggs``, see ``aggregate.reduce_segments``) chunks lying
    inside the range and one bucket, of series without overlapping data, are reduced per chunk while
    decoding (no timestamps decoded, no points built): they come back as ``partials``.
    """
    out_labels = list(schema.labels) if labels is None else [lb for lb in schema.labels if lb in set(labels)]
    filters = list(filters)
    if filters:
        stats_every = None  # statistics cannot tell which points of a chunk pass a value filter
    probe_fields = list(dict.fromkeys(p.field for p in filters))
    decode_fields = [*fields, *(f for f in probe_fields if f not in fields)]
    files = plan_files(snapshot, tenant, metric, "raw", start, end, matchers, explain)
    explain.files_read += len(files)
    if stats_every is not None and not any(
        (f.max_time - f.min_time) * max(f.series, 1) // max(f.rows, 1) <= stats_every for f in files
    ):
        # a file's chunks span about (time span x series / chunks); none is short enough to sit in one
        # bucket, so skip the blob-less first read of the statistics path
        stats_every = None
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
    if filters and matchers and len(files) > 1:
        files = _files_with_candidates(storage, files, schema, start, end, matchers, filters, extra, explain)
    chunks, seqs, n_files_with_data = _read_files(
        storage,
        files,
        schema,
        decode_fields,
        start,
        end,
        matchers,
        explain,
        [lb for lb in schema.labels if lb in set(out_labels) | set(series_labels or ())],
        stats=stats_every is not None,
        # the statistics path reads blobs only of files crossing a range bound: their edge chunks must decode
        blobs=True if stats_every is None else [f.min_time < start or f.max_time >= end for f in files],
        extra_columns=chunk_columns_for(probe_fields, blobs=False, stats=True),
    )
    overlap = False
    if chunks.num_rows:
        chunks, seqs, overlap = _sorted_chunks(chunks, seqs)
    series = None if series_labels is None else _series_frame(chunks, extra, schema, series_labels)
    stats: pl.DataFrame | None = None
    if stats_every is not None and chunks.num_rows:
        chunks, seqs, stats = _split_stats(
            chunks,
            seqs,
            extra,
            schema,
            fields,
            out_labels,
            start,
            end,
            stats_every,
            stats_minmax,
            explain,
            overlap=overlap,
        )
        blob_files = np.flatnonzero([f.min_time < start or f.max_time >= end for f in files])
        lacking = ~np.isin(np.asarray(chunks.column(FILE_IDX), np.int32), blob_files)
        if lacking.any():  # second phase: the blobs of the chunks statistics could not answer
            missing, missing_seqs = _read_blobs_of(
                storage,
                files,
                chunks.filter(pa.array(lacking)),
                schema,
                fields,
                start,
                end,
                matchers,
                out_labels,
                explain,
            )
            if lacking.all():
                chunks, seqs = missing, missing_seqs
            else:
                have = chunks.filter(pa.array(~lacking)).select(missing.column_names)
                both = pa.concat_tables([have, missing.cast(have.schema)])
                chunks, seqs, _ = _sorted_chunks(both, np.concatenate([seqs[~lacking], missing_seqs]))
    partials: pl.DataFrame | None = None
    if partials_every is not None and not filters and stats_every is None and chunks.num_rows:
        chunks, seqs, partials = _chunk_partials(
            chunks, seqs, extra, schema, fields, start, end, partials_every, partial_aggs, overlap
        )
    # Chunks of series with overlapping data (duplicates to merge, newer wins per field) are exempt from the
    # value filter until after the merge: an older duplicate must not survive because its newer one was cut.
    exempt = np.zeros(chunks.num_rows, bool)
    if filters and chunks.num_rows:
        if overlap or extra:
            exempt = np.isin(
                np.asarray(chunks.column(SERIES_ID), np.uint64), _overlapping_series(chunks, extra)
            )
        may = _chunks_may_match(chunks, filters, schema) | exempt
        if not may.all():
            pruned = chunks.filter(pa.array(~may))
            explain.chunks_pruned_by_values += pruned.num_rows
            explain.chunks_decoded -= pruned.num_rows
            explain.points_decoded -= int(pc.sum(pruned.column(COUNT)).as_py() or 0)
            chunks, seqs, exempt = chunks.filter(pa.array(may)), seqs[may], exempt[may]
    merge = n_files_with_data + len(extra) > 1 and bool(extra or overlap)
    columns = [SERIES_ID, TIME_COLUMN, *out_labels, *decode_fields]
    dtypes = {
        SERIES_ID: pl.UInt64,
        TIME_COLUMN: pl.Int64,
        SEQ: pl.Int64,
        **{label: pl.String for label in schema.labels},
        **{f: pl.Int64 if schema.fields[f].dtype == "int64" else pl.Float64 for f in decode_fields},
    }
    frames: list[pl.DataFrame] = []
    if chunks.num_rows:
        field_types = {name: schema.fields[name].dtype for name in decode_fields}
        t_lo = int(pc.min(chunks.column(T_MIN)).as_py())
        t_hi = int(pc.max(chunks.column(T_MAX)).as_py())
        select = None
        if filters or t_lo < start or t_hi >= end:
            window = (start, end) if t_lo < start or t_hi >= end else None
            select = (probe_fields, _value_selector(filters, exempt) if filters else None, window)
        decoded = decode_chunks(
            chunks,
            out_labels,
            field_types,
            key=files[0].path if len(files) == 1 else "?",
            select=select,
            chunk_values={SEQ: seqs} if merge else None,
        )
        frames.append(decoded)
    frames.extend(extra)
    out_columns = [*columns, SEQ] if merge else columns
    aligned = [
        fr
        if fr.columns == out_columns and all(fr.schema[c] == dtypes[c] for c in out_columns)
        else fr.select(
            [
                pl.col(c).cast(dtypes[c]) if c in fr.columns else pl.lit(None, dtypes[c]).alias(c)
                for c in out_columns
            ]
        )
        for fr in frames
    ]
    if not aligned:
        empty = pl.DataFrame(schema={c: dtypes[c] for c in [SERIES_ID, TIME_COLUMN, *out_labels, *fields]})
        return PointsRead(empty, stats, series, partials)
    merged = pl.concat(aligned, rechunk=False) if len(aligned) > 1 else aligned[0]
    if merge:
        merged = merged.sort([SERIES_ID, TIME_COLUMN, SEQ])
        if overlap or _ranges_overlap(chunks, extra):
            merged = merge_duplicates(merged, decode_fields)
        merged = merged.drop(SEQ)
    if filters and (extra or exempt.any()):
        merged = merged.filter(predicate_expr(filters, merged.schema))
    dropped = [f for f in decode_fields if f not in fields]
    return PointsRead(merged.drop(dropped) if dropped else merged, stats, series, partials)


def _chunk_partials(
    chunks: pa.Table,
    seqs: np.ndarray,
    extra: Sequence[pl.DataFrame],
    schema: MetricSchema,
    fields: Sequence[str],
    start: int,
    end: int,
    every: int,
    aggs: Sequence[AggSpec],
    overlap: bool,
) -> tuple[pa.Table, np.ndarray, pl.DataFrame | None]:
    """Reduce the chunks inside ``[start, end)`` and one ``every`` bucket, of series without overlapping data,
    to per-chunk partial aggregates (their fields decode, their timestamps need not); return the other
    chunks, their sequence numbers and the partials (None when no chunk qualifies)."""
    sids = np.asarray(chunks.column(SERIES_ID), np.uint64)
    tmin = np.asarray(chunks.column(T_MIN), np.int64)
    tmax = np.asarray(chunks.column(T_MAX), np.int64)
    ok = (tmin >= start) & (tmax < end) & (tmin // every == tmax // every)
    if ok.any() and (overlap or extra):
        bad = _overlapping_series(chunks, extra)
        if len(bad):
            ok &= ~np.isin(sids, bad)
    if not ok.any():
        return chunks, seqs, None
    whole = chunks.filter(pa.array(ok)) if not ok.all() else chunks
    counts = np.asarray(whole.column(COUNT), np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    # float fields reduce while decoding (no points kept); int64 fields decode, then reduce
    floats = [f for f in fields if schema.fields[f].dtype != "int64"]
    ints = {f: "int64" for f in fields if schema.fields[f].dtype == "int64"}
    partials = reduce_segments(decode_fields(whole, ints), starts, sids[ok], tmin[ok] // every * every, aggs)
    if floats:
        partials = partials.with_columns(**reduced_partials(reduce_float_fields(whole, floats), aggs))
    if ok.all():
        return chunks.slice(0, 0), seqs[:0], partials
    return chunks.filter(pa.array(~ok)), seqs[~ok], partials


def _series_frame(
    chunks: pa.Table, extra: Sequence[pl.DataFrame], schema: MetricSchema, labels: Sequence[str]
) -> pl.DataFrame:
    """One row per series id of ``chunks`` and the memtable frames: ``_series_id`` and ``labels`` (String)."""
    wanted = [lb for lb in schema.labels if lb in set(labels)]
    parts: list[pl.DataFrame] = []
    if chunks.num_rows:
        cols = [pl.Series(SERIES_ID, np.asarray(chunks.column(SERIES_ID), np.uint64))]
        names = set(chunks.column_names)
        for lb in wanted:
            if lb in names:
                cols.append(pl.Series(lb, chunks.column(lb)).cast(pl.String))
            else:
                cols.append(pl.Series(lb, [None] * chunks.num_rows, pl.String))
        parts.append(pl.DataFrame(cols))
    for fr in extra:
        parts.append(
            fr.select(
                [pl.col(SERIES_ID).cast(pl.UInt64)]
                + [
                    pl.col(lb).cast(pl.String) if lb in fr.columns else pl.lit(None, pl.String).alias(lb)
                    for lb in wanted
                ]
            )
        )
    if not parts:
        return pl.DataFrame(schema={SERIES_ID: pl.UInt64, **{lb: pl.String for lb in wanted}})
    return pl.concat(parts).unique(SERIES_ID, keep="first")


def _chunks_may_match(
    chunks: pa.Table, filters: Sequence[FieldPredicate], schema: MetricSchema
) -> np.ndarray:
    """Per chunk row, whether its statistics allow a point satisfying every filter (missing stats: maybe)."""
    may = np.ones(chunks.num_rows, bool)
    names = set(chunks.column_names)
    for p in filters:
        is_float = schema.fields[p.field].dtype != "int64"
        if any(c not in names for c in (n_col(p.field), min_col(p.field), max_col(p.field))):
            continue  # no statistics read: nothing to prune on
        n = np.asarray(chunks.column(n_col(p.field)).fill_null(-1), np.int64)
        lo_col, hi_col = chunks.column(min_col(p.field)), chunks.column(max_col(p.field))
        has = np.asarray(lo_col.is_valid(), bool) & np.asarray(hi_col.is_valid(), bool)
        fill = 0.0 if is_float else 0
        lo = np.asarray(lo_col.fill_null(fill))
        hi = np.asarray(hi_col.fill_null(fill))
        unknown = n < 0  # no count recorded: cannot prune
        may &= chunks_may_match(p, lo, hi, has, np.where(unknown, 1, n), is_float) | (unknown & ~has)
    return may


def _value_selector(
    filters: Sequence[FieldPredicate], exempt: np.ndarray
) -> Callable[[pl.DataFrame, np.ndarray], np.ndarray]:
    """The points to keep for their values while decoding: passing every filter, or in an exempt chunk."""

    def keep(probe: pl.DataFrame, chunk_index: np.ndarray) -> np.ndarray:
        passed = points_mask(filters, probe)
        if exempt.any():
            passed |= exempt[chunk_index]
        return passed

    return keep
