"""Rollup tiers: bucket state from raw points, coarser buckets by merging finer ones, incremental passes.

The *bucket state* of a (series, bucket) is the row layout of :mod:`tsdb_lake.format.rollup`. Two pure
functions build it: :func:`points_to_rollup` (raw points → buckets) and :func:`merge_rollup` (buckets →
coarser buckets, never re-reading raw). Counter increase is defined so that merging is exact:

* a bucket's ``increase`` sums the reset-aware deltas between consecutive non-null values *inside* the
  bucket (the bucket's first value contributes nothing);
* the delta from the previous bucket's ``last`` to this bucket's ``first`` (a *boundary delta*) is not part
  of either bucket; whoever merges buckets adds the boundary deltas between consecutive non-empty buckets
  of a series (``delta(prev, cur) = cur - prev``, or ``cur`` when ``cur < prev`` — a reset).

:func:`run_rollups` is the incremental pass: per (tenant, metric, tier) it advances the catalog watermark over
complete, settled ranges and rebuilds exactly the dirty (late-data) ranges, replacing the affected partition
files in one commit per tier, finest tier first, so rebuilt buckets cascade up the tier chain.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tsdb_lake.catalog import (
    Action,
    AddFile,
    Catalog,
    ClearDirty,
    DataFile,
    FieldStats,
    Lineage,
    MarkDirty,
    MetricSchema,
    RemoveFile,
    SetWatermark,
    Snapshot,
    SourceRange,
    TierSpec,
)
from tsdb_lake.compaction.rollup_math import (
    boundary_deltas,
    field_infos,
    merge_rollup,
    points_to_rollup,
    sort_by_series_time,
    state_rollup,
)
from tsdb_lake.errors import CommitConflictError, TsdbLakeError
from tsdb_lake.format.rollup import (
    ROLLUP_FORMAT_VERSION,
    read_rollup,
    write_rollup_file,
)
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.reader import read_points
from tsdb_lake.storage import layout
from tsdb_lake.storage.base import Storage

__all__ = [
    "HOUR_NS",
    "QUANTILE_MIN_BUCKET_NS",
    "RollupReport",
    "TierPass",
    "boundary_deltas",
    "field_infos",
    "late_data_actions",
    "merge_rollup",
    "points_to_rollup",
    "quantile_tiers",
    "rollup_tiers",
    "run_rollups",
]

log = logging.getLogger(__name__)
HOUR_NS = 3_600_000_000_000
RAW = "raw"


# ------------------------------------------------------------------------------------------ tier helpers


def rollup_tiers(snapshot: Snapshot, tenant: str, metric: str) -> list[TierSpec]:
    """The metric's rollup tiers, finest first, that the lake layout can store (unknown names are skipped)."""
    tiers = sorted(snapshot.tiers_for(tenant, metric), key=lambda t: t.bucket_ns)
    out: list[TierSpec] = []
    for t in tiers:
        if t.name not in layout.PARTITION_KIND or t.name == RAW:
            log.warning("rollup tier %r of %s/%s has no storage layout; skipped", t.name, tenant, metric)
            continue
        if out and t.bucket_ns % out[-1].bucket_ns:
            log.warning("rollup tier %r does not divide into %r; skipped", t.name, out[-1].name)
            continue
        out.append(t)
    return out


#: Tiers with buckets at least this wide keep quantile state; finer ones (a 1m bucket of 10 s data holds 6
#: values, whose histogram is larger than the values in raw) keep none, except a lake's coarsest tier.
QUANTILE_MIN_BUCKET_NS = HOUR_NS


def quantile_tiers(tiers: Sequence[TierSpec]) -> set[str]:
    """Names of the tiers (``rollup_tiers`` order, finest first) that keep quantile state.

    Those with buckets of at least :data:`QUANTILE_MIN_BUCKET_NS`, and always the coarsest tier, so some tier
    answers quantiles over any range once raw has expired.
    """
    return {
        t.name for i, t in enumerate(tiers) if t.bucket_ns >= QUANTILE_MIN_BUCKET_NS or i == len(tiers) - 1
    }


def _floor(t: int, step: int) -> int:
    return t // step * step


def _ceil(t: int, step: int) -> int:
    return -((-t) // step) * step


def _partition_range(tier: str, t: int) -> tuple[str, int, int]:
    p = layout.partition_of(tier, t)
    s, e = layout.partition_bounds(p)
    return p, s, e


def _normalise(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[0] < r[1]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _intersect(ranges: Sequence[tuple[int, int]], s: int, e: int) -> list[tuple[int, int]]:
    return [(max(a, s), min(b, e)) for a, b in ranges if a < e and b > s]


def late_data_actions(
    snapshot: Snapshot, tenant: str, metric: str, min_time: int, max_time: int, *, now_ns: int | None = None
) -> list[MarkDirty]:
    """MarkDirty actions for a raw file with points in ``[min_time, max_time]`` landing in the lake.

    Each built tier is marked dirty over the file's range widened to whole buckets, up to the later of the
    tier's watermark and the start of the current hour (a pass running concurrently may be rolling any closed
    hour; a range marked above the watermark is simply rebuilt by the pass that advances over it).
    """
    now = time.time_ns() if now_ns is None else now_ns
    out: list[MarkDirty] = []
    for t in rollup_tiers(snapshot, tenant, metric):
        mark = snapshot.watermark(tenant, metric, t.name)
        if mark is None:
            continue
        limit = max(mark, _floor(now, HOUR_NS))
        start = _floor(min_time, t.bucket_ns)
        end = min(_ceil(max_time + 1, t.bucket_ns), _ceil(limit, t.bucket_ns))
        if start < end:
            out.append(MarkDirty(tenant, metric, t.name, start, end))
    return out


# ------------------------------------------------------------------------------------------ the pass


@dataclass
class TierPass:
    """What one tier of one metric did (or would do, in a dry run)."""

    tenant: str
    metric: str
    tier: str
    source: str
    watermark_before: int | None
    watermark_after: int | None
    ranges: list[tuple[int, int]] = field(default_factory=list)
    dirty_rebuilt: list[tuple[int, int]] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_added: list[str] = field(default_factory=list)
    rows: int = 0
    source_rows: int = 0
    source_values: int = 0
    bytes_written: int = 0
    version: int | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class RollupReport:
    """The result of :func:`run_rollups`: one :class:`TierPass` per (tenant, metric, tier) with work."""

    dry_run: bool
    now_ns: int
    passes: list[TierPass] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def raw_values_rolled(self) -> int:
        """Field values read from raw by the pass (what the ``values/s`` benchmark counts)."""
        return sum(p.source_values for p in self.passes if p.source == RAW)

    @property
    def files_added(self) -> list[str]:
        """Every rollup file the pass committed."""
        return [f for p in self.passes for f in p.files_added]

    @property
    def files_removed(self) -> list[str]:
        """Every rollup file the pass replaced."""
        return [f for p in self.passes for f in p.files_removed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dry_run": self.dry_run,
            "now_ns": self.now_ns,
            "seconds": self.seconds,
            "raw_values_rolled": self.raw_values_rolled,
            "passes": [p.to_dict() for p in self.passes],
        }


@dataclass
class _PassCache:
    """Quantile state built from raw points during a pass, for the tiers that take it from raw.

    A tier with quantile state whose source tier keeps none (1h over a stateless 1m) builds its state from
    raw. The raw read of the finest tier computes it for whole buckets of those tiers (``targets``) and keeps
    it here as ``(start, end, state rows)`` per tier, so the coarser tier need not read raw again.
    """

    targets: list[TierSpec] = field(default_factory=list)
    raw_state: dict[str, list[tuple[int, int, pl.DataFrame]]] = field(default_factory=dict)
    #: the next coarser tier, and whether it takes its quantile state from this tier's rows
    next_tier: TierSpec | None = None
    next_merges_state: bool = False
    #: file key written this pass → (bucket, its rows merged into ``next_tier``'s buckets)
    rows: dict[str, tuple[int, pl.DataFrame]] = field(default_factory=dict)


def run_rollups(
    storage: Storage,
    catalog: Catalog,
    tenant: str | None = None,
    metric: str | None = None,
    dry_run: bool = False,
    *,
    now_ns: int | None = None,
    settle_ns: int = 0,
) -> RollupReport:
    """Advance and repair every rollup tier (of ``tenant`` / ``metric``, default all); returns a report.

    Raw data is rolled up to ``floor(now - settle, 1h)``: only closed hours. Each coarser tier follows the
    watermark of the tier below it. A tier commit that loses a race is abandoned (its files stay orphaned for
    vacuum) and reported with ``error``; the next pass redoes it.
    """
    started = time.perf_counter()
    now = time.time_ns() if now_ns is None else now_ns
    report = RollupReport(dry_run=dry_run, now_ns=now)
    snapshot = catalog.refresh()
    targets = [
        (t, m)
        for (t, m) in sorted(snapshot.schemas)
        if (tenant is None or t == tenant) and (metric is None or m == metric)
    ]
    for t, m in targets:
        planned: dict[str, int | None] = {}  # dry run: the watermarks the finer tiers would reach
        cache = _PassCache()
        for tier_index, spec in enumerate(rollup_tiers(snapshot, t, m)):
            snapshot = catalog.refresh()
            tiers = rollup_tiers(snapshot, t, m)
            if tier_index >= len(tiers) or tiers[tier_index].name != spec.name:
                break  # the tiers changed under the pass; the next pass follows the new ones
            qtiers = quantile_tiers(tiers)
            cache.targets = [
                x
                for i, x in enumerate(tiers)
                if i > 0 and x.name in qtiers and tiers[i - 1].name not in qtiers
            ]
            cache.next_tier = tiers[tier_index + 1] if tier_index + 1 < len(tiers) else None
            cache.next_merges_state = (
                cache.next_tier is not None and {spec.name, cache.next_tier.name} <= qtiers
            )
            source = RAW if tier_index == 0 else tiers[tier_index - 1].name
            horizon = _floor(now - settle_ns, HOUR_NS)
            tier_started = time.perf_counter()
            tp = _run_tier(storage, catalog, snapshot, t, m, spec, source, horizon, dry_run, planned, cache)
            if tp is not None:
                tp.seconds = time.perf_counter() - tier_started
                report.passes.append(tp)
                planned[spec.name] = tp.watermark_after
    report.seconds = time.perf_counter() - started
    return report


def _source_horizon(
    snapshot: Snapshot, t: str, m: str, source: str, horizon: int, planned: Mapping[str, int | None]
) -> int | None:
    if source == RAW:
        return horizon
    mark = planned[source] if source in planned else snapshot.watermark(t, m, source)
    if mark is None:
        return None
    return min(mark, horizon)


def _plan_tier(
    snapshot: Snapshot,
    t: str,
    m: str,
    spec: TierSpec,
    source: str,
    horizon: int,
    planned: Mapping[str, int | None],
) -> tuple[int | None, int | None, list[tuple[int, int]], list[tuple[int, int]]]:
    """(old watermark, new watermark, ranges to rebuild, dirty ranges handled) — all bucket-aligned."""
    b = spec.bucket_ns
    old = snapshot.watermark(t, m, spec.name)
    src_end = _source_horizon(snapshot, t, m, source, horizon, planned)
    src_dirty = [] if source == RAW else _normalise(snapshot.dirty(t, m, source))
    src_files = snapshot.files(t, m, source)
    if src_end is None:
        return old, old, [], []
    new = _floor(src_end, b)
    start = old
    if start is None:
        first = [f.min_time for f in src_files]
        if not first and source in planned:  # dry run: the source tier would start where its source does
            first = [f.min_time for f in snapshot.files(t, m, RAW)]
        if not first:
            return None, None, [], []
        start = _floor(min(first), b)
    # Never advance over a range of the source that is itself waiting for a rebuild.
    for s, _e in src_dirty:
        if s < new and _ceil(_e, b) > start:
            new = min(new, _floor(s, b))
    new = max(new, start)
    advance = [(start, new)] if new > start else []
    dirty = []
    for s, e in _normalise(snapshot.dirty(t, m, spec.name)):
        s2, e2 = _floor(s, b), min(_ceil(e, b), max(new, start))
        if s2 >= e2 or any(ds < e2 and de > s2 for ds, de in src_dirty):
            continue
        dirty.append((s2, e2))
    ranges = _normalise([*advance, *dirty])
    new_mark = new if (old is None or new > old) else old
    return old, new_mark, ranges, dirty


def _partitions_for(
    snapshot: Snapshot, t: str, m: str, spec: TierSpec, source: str, ranges: Sequence[tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Partitions of the tier touched by ``ranges`` that hold source data or existing rollup rows."""
    out: dict[str, tuple[int, int]] = {}
    candidates = [*snapshot.files(t, m, source), *snapshot.files(t, m, spec.name)]
    for f in candidates:
        for s, e in _intersect(ranges, f.min_time, f.max_time + 1):
            cur = _floor(s, spec.bucket_ns)
            while cur < e:
                p, ps, pe = _partition_range(spec.name, cur)
                out[p] = (ps, pe)
                cur = pe
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]))


def _source_chunks(source: str, s: int, e: int, bucket: int) -> list[tuple[int, int]]:
    """Split ``[s, e)`` into pieces no wider than one source partition, cut on ``bucket`` boundaries."""
    if source == RAW:
        return [(s, e)]
    out: list[tuple[int, int]] = []
    cur = s
    while cur < e:
        _, _, pe = _partition_range(source, cur)
        nxt = min(e, max(_ceil(pe, bucket), cur + bucket))
        out.append((cur, nxt))
        cur = nxt
    return out


def _compute(
    storage: Storage,
    snapshot: Snapshot,
    t: str,
    m: str,
    schema: MetricSchema,
    spec: TierSpec,
    source: str,
    qtiers: set[str],
    s: int,
    e: int,
    tp: TierPass,
    sources: set[str],
    cache: _PassCache,
) -> list[pl.DataFrame]:
    labels = list(schema.labels)
    fields = field_infos(schema)
    has_q = spec.name in qtiers
    out = []
    for cs, ce in _source_chunks(source, s, e, spec.bucket_ns):
        src_files = snapshot.files(t, m, source, start=cs, end=ce)
        if not src_files:
            continue
        sources.update(f.path for f in src_files)
        if source == RAW:
            points = read_points(storage, snapshot, t, m, schema, cs, ce, (), list(fields), [], Explain())
            tp.source_rows += points.height
            tp.source_values += sum(points.height - points.get_column(f).null_count() for f in fields)
            # the coarser tiers' quantile state from the same points, in a second thread (numba releases the GIL)
            state_job = _helper_pool().submit(_cache_raw_state, cache, points, fields, cs, ce)
            try:
                out.append(
                    points_to_rollup(
                        points, labels, fields, spec.bucket_ns, sketches=spec.sketches, quantile_state=has_q
                    )
                )
            finally:
                state_job.result()
        else:
            from_raw = has_q and source not in qtiers
            cached = [cache.rows.get(f.path) for f in src_files]
            if all(c is not None and c[0] == spec.bucket_ns for c in cached):
                # rows this pass wrote to the source tier, already merged into this tier's buckets
                rows = [c[1] for c in cached if c is not None]
                frame = pl.concat(rows) if len(rows) > 1 else rows[0]
                merged = frame.filter(pl.col(TIME_COLUMN).is_between(cs, ce, "left"))
                tp.source_rows += merged.height
            else:
                rows = [
                    read_rollup(storage, f.path, labels=labels, fields=fields, start=cs, end=ce)
                    for f in src_files
                ]
                frame = pl.concat(rows) if len(rows) > 1 else rows[0]
                tp.source_rows += frame.height
                merged = merge_rollup(
                    frame,
                    labels,
                    fields,
                    spec.bucket_ns,
                    sketches=spec.sketches,
                    quantile_state=has_q and not from_raw,
                )
            if from_raw:
                state = _raw_state(storage, snapshot, t, m, schema, spec, cs, ce, cache)
                sources.update(f.path for f in snapshot.files(t, m, RAW, start=cs, end=ce))
                merged = _attach_state(merged, state, fields)
            out.append(merged)
    return out


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    """A process-wide thread for work that runs beside the pass's main thread."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsdb-lake-rollup-state")
        return _POOL


def _cache_raw_state(
    cache: _PassCache, points: pl.DataFrame, fields: Mapping[str, Any], s: int, e: int
) -> None:
    """Quantile state of the whole buckets of ``[s, e)`` for every tier that builds it from raw."""
    for q in cache.targets:
        lo, hi = _ceil(s, q.bucket_ns), _floor(e, q.bucket_ns)
        if lo >= hi:
            continue
        tcol = pl.col(TIME_COLUMN)
        sub = points if (lo <= s and hi >= e) else points.filter((tcol >= lo) & (tcol < hi))
        state = state_rollup(sub, fields, q.bucket_ns, sketches=q.sketches)
        cache.raw_state.setdefault(q.name, []).append((lo, hi, state))


def _raw_state(
    storage: Storage,
    snapshot: Snapshot,
    t: str,
    m: str,
    schema: MetricSchema,
    spec: TierSpec,
    s: int,
    e: int,
    cache: _PassCache,
) -> pl.DataFrame:
    """Quantile state of ``spec``'s buckets in ``[s, e)`` from raw: cached by this pass, else read."""
    fields = field_infos(schema)
    frames = []
    todo = [(s, e)]
    for lo, hi, frame in cache.raw_state.get(spec.name, []):
        if lo < e and hi > s:
            frames.append(
                frame if (lo >= s and hi <= e) else frame.filter(pl.col(TIME_COLUMN).is_between(s, e, "left"))
            )
            todo = _subtract(todo, lo, hi)
    for a, b in todo:
        points = read_points(
            storage, snapshot, t, m, schema, a, b, (), list(fields), [], Explain(), labels=[]
        )
        frames.append(state_rollup(points, fields, spec.bucket_ns, sketches=spec.sketches))
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def _subtract(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for a, b in ranges:
        if hi <= a or lo >= b:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


def _attach_state(rows: pl.DataFrame, state: pl.DataFrame, fields: Mapping[str, Any]) -> pl.DataFrame:
    """``rows`` (merged aggregates, stateless) with the quantile state columns of the same buckets."""
    names = [f"{f}__{p}" for f in fields for p in ("values", "weights", "sketch")]
    joined = rows.drop(names).join(state, on=[SERIES_ID, TIME_COLUMN], how="left", maintain_order="left")
    return joined.select(rows.columns)


def _data_file(info: Any, t: str, m: str, tier: str, partition: str, lineage: Lineage) -> DataFile:
    return DataFile(
        path=info.key,
        tenant=t,
        metric=m,
        tier=tier,
        partition=partition,
        min_time=info.min_time,
        max_time=info.max_time,
        rows=info.rows,
        points=info.points,
        series=info.series,
        bytes=info.bytes,
        created_ms=int(time.time() * 1000),
        writer="rollup",
        field_stats={f: FieldStats(v["min"], v["max"], int(v["count"])) for f, v in info.field_stats.items()},
        label_values={k: tuple(v) for k, v in info.label_values.items()},
        series_min=info.series_min,
        series_max=info.series_max,
        lineage=lineage,
        codecs={"format": "rollup", "rollup_format_version": ROLLUP_FORMAT_VERSION},
    )


def _run_tier(
    storage: Storage,
    catalog: Catalog,
    snapshot: Snapshot,
    t: str,
    m: str,
    spec: TierSpec,
    source: str,
    horizon: int,
    dry_run: bool,
    planned: Mapping[str, int | None],
    cache: _PassCache,
) -> TierPass | None:
    schema = snapshot.schema(t, m)
    if schema is None:
        return None
    old, new, ranges, dirty = _plan_tier(snapshot, t, m, spec, source, horizon, planned if dry_run else {})
    if not ranges and new == old:
        return None
    tp = TierPass(t, m, spec.name, source, old, new, ranges=ranges, dirty_rebuilt=dirty)
    partitions = _partitions_for(snapshot, t, m, spec, source, ranges)
    tp.partitions = list(partitions)
    existing = snapshot.files(t, m, spec.name)
    for p in partitions:
        tp.files_removed += [f.path for f in existing if f.partition == p]
    if dry_run:
        return tp
    labels = list(schema.labels)
    fields = field_infos(schema)
    qtiers = quantile_tiers(rollup_tiers(snapshot, t, m))
    actions: list[Action] = []
    written: list[str] = []
    # Each partition's file is written (and merged into the next tier's buckets for the cache) in a
    # background thread while the next partition is computed: Parquet encoding and numba release the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsdb-lake-rollup") as pool:
        pending: list[tuple[str, str, Lineage, Future[Any]]] = []
        try:
            for p, (ps, pe) in partitions.items():
                in_p = _intersect(ranges, ps, pe)
                old_files = [f for f in existing if f.partition == p]
                kept = []
                for f in old_files:
                    rows = read_rollup(storage, f.path, labels=labels, fields=fields)
                    tcol = pl.col(TIME_COLUMN)
                    inside = pl.lit(False)
                    for s, e in in_p:
                        inside = inside | ((tcol >= s) & (tcol < e))
                    kept.append(rows.filter(~inside))
                sources: set[str] = set()
                fresh = []
                for s, e in in_p:
                    fresh += _compute(
                        storage, snapshot, t, m, schema, spec, source, qtiers, s, e, tp, sources, cache
                    )
                parts = [x for x in (*kept, *fresh) if x.height]
                actions += [RemoveFile(f.path, reason="rollup") for f in old_files]
                if not parts:
                    continue
                frame = sort_by_series_time(
                    pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
                )
                key = layout.data_file_key(t, m, spec.name, p, uuid.uuid4().hex)
                lineage = Lineage(
                    snapshot.version,
                    tuple(sorted(sources | {f.path for f in old_files})),
                    tuple(SourceRange(source, s, e) for s, e in in_p),
                )
                written.append(key)
                job = pool.submit(
                    _write_partition,
                    storage,
                    key,
                    frame,
                    labels,
                    fields,
                    spec,
                    source,
                    qtiers,
                    lineage,
                    in_p,
                    ps,
                    pe,
                    cache,
                )
                pending.append((key, p, lineage, job))
            for key, p, lineage, job in pending:
                info = job.result()
                tp.rows += info.rows
                tp.bytes_written += info.bytes
                tp.files_added.append(key)
                actions.append(AddFile(_data_file(info, t, m, spec.name, p, lineage)))
            if new is not None and new != old:
                actions.append(SetWatermark(t, m, spec.name, new))
            actions += [ClearDirty(t, m, spec.name, s, e) for s, e in dirty]
            if actions:
                snap = catalog.commit(actions, operation="rollup", base=snapshot, writer="rollup")
                tp.version = snap.version
        except (CommitConflictError, TsdbLakeError) as exc:
            for *_, job in pending:  # let every write finish before deleting what it wrote
                job.cancel() or job.exception()
            tp.error = f"{type(exc).__name__}: {exc}"
            tp.files_added = []
            storage.delete(written)
            log.warning("rollup of %s/%s tier %s abandoned: %s", t, m, spec.name, exc)
    return tp


def _write_partition(
    storage: Storage,
    key: str,
    frame: pl.DataFrame,
    labels: Sequence[str],
    fields: Mapping[str, Any],
    spec: TierSpec,
    source: str,
    qtiers: set[str],
    lineage: Lineage,
    in_p: Sequence[tuple[int, int]],
    ps: int,
    pe: int,
    cache: _PassCache,
) -> Any:
    """Write one partition file; keep its rows merged into the next tier's buckets in ``cache``."""
    info = write_rollup_file(
        storage,
        key,
        frame,
        labels=labels,
        fields=fields,
        tier=spec.name,
        bucket_ns=spec.bucket_ns,
        quantile_state=spec.name in qtiers,
        lineage={
            "source_version": lineage.source_version,
            "source_tier": source,
            "source_paths": list(lineage.paths),
            "ranges": [[s, e] for s, e in in_p],
        },
    )
    nxt = cache.next_tier
    if nxt is not None and ps % nxt.bucket_ns == 0 and pe % nxt.bucket_ns == 0:
        merged = merge_rollup(
            frame,
            labels,
            fields,
            nxt.bucket_ns,
            sketches=nxt.sketches,
            quantile_state=cache.next_merges_state,
        )
        cache.rows[key] = (nxt.bucket_ns, merged)
    return info
