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
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
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
from tsdb_lake.compaction.rollup_math import boundary_deltas, field_infos, merge_rollup, points_to_rollup
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
    "RollupReport",
    "TierPass",
    "boundary_deltas",
    "field_infos",
    "late_data_actions",
    "merge_rollup",
    "points_to_rollup",
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
        for tier_index, spec in enumerate(rollup_tiers(snapshot, t, m)):
            snapshot = catalog.refresh()
            tiers = rollup_tiers(snapshot, t, m)
            source = RAW if tier_index == 0 else tiers[tier_index - 1].name
            horizon = _floor(now - settle_ns, HOUR_NS)
            tier_started = time.perf_counter()
            tp = _run_tier(storage, catalog, snapshot, t, m, spec, source, horizon, dry_run, planned)
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
    tiers_by_name: Mapping[str, TierSpec],
    s: int,
    e: int,
    tp: TierPass,
    sources: set[str],
) -> list[pl.DataFrame]:
    labels = list(schema.labels)
    fields = field_infos(schema)
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
            out.append(points_to_rollup(points, labels, fields, spec.bucket_ns, sketches=spec.sketches))
        else:
            rows = [
                read_rollup(storage, f.path, labels=labels, fields=fields, start=cs, end=ce)
                for f in src_files
            ]
            frame = pl.concat(rows) if len(rows) > 1 else rows[0]
            tp.source_rows += frame.height
            out.append(merge_rollup(frame, labels, fields, spec.bucket_ns, sketches=spec.sketches))
    return out


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
    tiers_by_name = {x.name: x for x in rollup_tiers(snapshot, t, m)}
    actions: list[Action] = []
    written: list[str] = []
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
                    storage, snapshot, t, m, schema, spec, source, tiers_by_name, s, e, tp, sources
                )
            parts = [x for x in (*kept, *fresh) if x.height]
            actions += [RemoveFile(f.path, reason="rollup") for f in old_files]
            if not parts:
                continue
            frame = pl.concat(parts, how="vertical_relaxed").sort([SERIES_ID, TIME_COLUMN])
            key = layout.data_file_key(t, m, spec.name, p, uuid.uuid4().hex)
            lineage = Lineage(
                snapshot.version,
                tuple(sorted(sources | {f.path for f in old_files})),
                tuple(SourceRange(source, s, e) for s, e in in_p),
            )
            info = write_rollup_file(
                storage,
                key,
                frame,
                labels=labels,
                fields=fields,
                tier=spec.name,
                bucket_ns=spec.bucket_ns,
                lineage={
                    "source_version": snapshot.version,
                    "source_tier": source,
                    "source_paths": list(lineage.paths),
                    "ranges": [[s, e] for s, e in in_p],
                },
            )
            written.append(key)
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
        tp.error = f"{type(exc).__name__}: {exc}"
        tp.files_added = []
        storage.delete(written)
        log.warning("rollup of %s/%s tier %s abandoned: %s", t, m, spec.name, exc)
    return tp
