"""Snapshot state: the lake as of one catalog version, and the rules that turn entries into state.

A :class:`Snapshot` is immutable: the live data files, per-metric schemas, writer progress, tier and
retention rules, rollup watermarks, dirty (late-data) ranges and lake properties at one version, plus
pruning helpers for readers. :class:`StateBuilder` applies entries to a state — trusting them when replaying
the log, checking them (``check=True``) when a commit is being prepared or rebased.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from tsdb_lake.catalog.actions import (
    RAW_TIER,
    AddFile,
    ClearDirty,
    DataFile,
    Entry,
    MarkDirty,
    PropertyValue,
    RemoveFile,
    RemoveRetention,
    SetProperty,
    SetRetention,
    SetSchema,
    SetTiers,
    SetWatermark,
    TierSpec,
    WriterProgress,
)
from tsdb_lake.catalog.schema import MetricSchema, evolve
from tsdb_lake.errors import CommitConflictError

__all__ = ["DirtyRange", "Scope", "Snapshot", "StateBuilder"]

#: A rule scope: (tenant or None for any, metric or None for any).
Scope: TypeAlias = tuple[str | None, str | None]
MetricKey: TypeAlias = tuple[str, str]
TierKey: TypeAlias = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class DirtyRange:
    """Half-open ``[start_ns, end_ns)`` needing a rebuild; ``version`` is the newest entry that marked it."""

    start_ns: int
    end_ns: int
    version: int


def _scopes(tenant: str, metric: str) -> tuple[Scope, ...]:
    """Rule lookup order, most specific first: tenant+metric, tenant, metric, default."""
    return ((tenant, metric), (tenant, None), (None, metric), (None, None))


def normalise_dirty(ranges: Iterable[DirtyRange]) -> tuple[DirtyRange, ...]:
    """Sort and merge overlapping or touching ranges (the merged range keeps the newest marking version)."""
    out: list[DirtyRange] = []
    for r in sorted(ranges, key=lambda r: (r.start_ns, r.end_ns)):
        if out and r.start_ns <= out[-1].end_ns:
            last = out[-1]
            out[-1] = DirtyRange(last.start_ns, max(last.end_ns, r.end_ns), max(last.version, r.version))
        else:
            out.append(r)
    return tuple(out)


def _subtract(
    ranges: tuple[DirtyRange, ...], start: int, end: int, upto: int | None
) -> tuple[DirtyRange, ...]:
    out: list[DirtyRange] = []
    for r in ranges:
        if (upto is not None and r.version > upto) or r.end_ns <= start or r.start_ns >= end:
            out.append(r)
            continue
        if r.start_ns < start:
            out.append(DirtyRange(r.start_ns, start, r.version))
        if r.end_ns > end:
            out.append(DirtyRange(end, r.end_ns, r.version))
    return tuple(out)


class Snapshot:
    """The immutable state of the lake at one catalog version, with pruning and rule-resolution helpers.

    ``by_path`` maps every live data path to its :class:`DataFile`; :meth:`files` is the pruned query.
    """

    __slots__ = (
        "_index",
        "by_path",
        "dirty_ranges",
        "properties",
        "retention_rules",
        "schemas",
        "tier_rules",
        "timestamp_ms",
        "version",
        "watermarks",
        "writer_progress",
    )

    def __init__(
        self,
        version: int,
        timestamp_ms: int,
        by_path: dict[str, DataFile],
        schemas: dict[MetricKey, MetricSchema],
        writer_progress: dict[str, int],
        tier_rules: dict[Scope, tuple[TierSpec, ...]],
        retention_rules: dict[tuple[str | None, str | None, str], int | None],
        watermarks: dict[TierKey, int],
        dirty_ranges: dict[TierKey, tuple[DirtyRange, ...]],
        properties: dict[str, PropertyValue],
    ) -> None:
        self.version = version
        self.timestamp_ms = timestamp_ms
        self.by_path: Mapping[str, DataFile] = MappingProxyType(by_path)
        self.schemas: Mapping[MetricKey, MetricSchema] = MappingProxyType(schemas)
        self.writer_progress: Mapping[str, int] = MappingProxyType(writer_progress)
        self.tier_rules: Mapping[Scope, tuple[TierSpec, ...]] = MappingProxyType(tier_rules)
        self.retention_rules: Mapping[tuple[str | None, str | None, str], int | None] = MappingProxyType(
            retention_rules
        )
        self.watermarks: Mapping[TierKey, int] = MappingProxyType(watermarks)
        self.dirty_ranges: Mapping[TierKey, tuple[DirtyRange, ...]] = MappingProxyType(dirty_ranges)
        self.properties: Mapping[str, PropertyValue] = MappingProxyType(properties)
        self._index: dict[TierKey, tuple[list[int], list[DataFile]]] | None = None

    def __repr__(self) -> str:
        return f"Snapshot(version={self.version}, files={len(self.by_path)}, metrics={len(self.schemas)})"

    @staticmethod
    def empty() -> Snapshot:
        """The state before version 0."""
        return Snapshot(-1, 0, {}, {}, {}, {}, {}, {}, {}, {})

    # ------------------------------------------------------------------------------------------ queries

    def tenants(self) -> list[str]:
        """Every tenant that has a schema or a live file, sorted."""
        return sorted({t for t, _ in self.schemas} | {f.tenant for f in self.by_path.values()})

    def metrics(self, tenant: str) -> list[str]:
        """Every metric of ``tenant`` that has a schema or a live file, sorted."""
        out = {m for t, m in self.schemas if t == tenant}
        out.update(f.metric for f in self.by_path.values() if f.tenant == tenant)
        return sorted(out)

    def _built_index(self) -> dict[TierKey, tuple[list[int], list[DataFile]]]:
        if self._index is None:
            groups: dict[TierKey, list[DataFile]] = {}
            for f in self.by_path.values():
                groups.setdefault((f.tenant, f.metric, f.tier), []).append(f)
            index: dict[TierKey, tuple[list[int], list[DataFile]]] = {}
            for key, files in groups.items():
                files.sort(key=lambda f: (f.min_time, f.path))
                index[key] = ([f.min_time for f in files], files)
            self._index = index
        return self._index

    def files(
        self,
        tenant: str,
        metric: str,
        tier: str = RAW_TIER,
        start: int | None = None,
        end: int | None = None,
        where_labels: Mapping[str, str] | None = None,
    ) -> list[DataFile]:
        """Live files of a tenant / metric / tier that may hold points in ``[start, end)`` matching labels.

        A file is skipped only when its time bounds miss the range or its ``label_values`` prove a wanted
        label value absent. Sorted by (min_time, path).
        """
        entry = self._built_index().get((tenant, metric, tier))
        if entry is None:
            return []
        starts, files = entry
        stop = len(files) if end is None else bisect.bisect_left(starts, end)
        out: list[DataFile] = []
        for f in files[:stop]:
            if start is not None and f.max_time < start:
                continue
            if where_labels and any(
                k in f.label_values and v not in f.label_values[k] for k, v in where_labels.items()
            ):
                continue
            out.append(f)
        return out

    def schema(self, tenant: str, metric: str) -> MetricSchema | None:
        """The metric's schema, or None if nothing was ever written to it."""
        return self.schemas.get((tenant, metric))

    def tiers_for(self, tenant: str, metric: str) -> tuple[TierSpec, ...]:
        """The rollup tiers configured for a metric (most specific rule wins; none configured = ())."""
        for scope in _scopes(tenant, metric):
            if scope in self.tier_rules:
                return self.tier_rules[scope]
        return ()

    def retention_for(self, tenant: str, metric: str, tier: str) -> int | None:
        """TTL in ns of a metric's tier (most specific rule wins), or None = keep forever."""
        for t, m in _scopes(tenant, metric):
            if (t, m, tier) in self.retention_rules:
                return self.retention_rules[(t, m, tier)]
        return None

    def watermark(self, tenant: str, metric: str, tier: str) -> int | None:
        """Rollup coverage of a tier: buckets before it are built; None if the tier was never built."""
        return self.watermarks.get((tenant, metric, tier))

    def dirty(self, tenant: str, metric: str, tier: str) -> list[tuple[int, int]]:
        """Merged half-open ``[start_ns, end_ns)`` ranges of a tier that need rebuilding."""
        return [(r.start_ns, r.end_ns) for r in self.dirty_ranges.get((tenant, metric, tier), ())]

    def progress(self, writer_id: str) -> int | None:
        """The highest WAL LSN of a writer whose data is in the lake, or None if it never committed."""
        return self.writer_progress.get(writer_id)

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes of all live data files."""
        return sum(f.bytes for f in self.by_path.values())


class StateBuilder:
    """Mutable working copy of a snapshot's state; apply entries, then :meth:`build` a new Snapshot."""

    def __init__(self, base: Snapshot) -> None:
        self.version = base.version
        self.timestamp_ms = base.timestamp_ms
        self.files = dict(base.by_path)
        self.schemas = dict(base.schemas)
        self.progress = dict(base.writer_progress)
        self.tiers = dict(base.tier_rules)
        self.retention = dict(base.retention_rules)
        self.watermarks = dict(base.watermarks)
        self.dirty = dict(base.dirty_ranges)
        self.properties = dict(base.properties)

    def build(self) -> Snapshot:
        """Freeze the current state. The builder must not be used afterwards."""
        return Snapshot(
            self.version,
            self.timestamp_ms,
            self.files,
            self.schemas,
            self.progress,
            self.tiers,
            self.retention,
            self.watermarks,
            self.dirty,
            self.properties,
        )

    def apply(self, entry: Entry, *, check: bool) -> None:
        """Apply ``entry`` (whose version must follow the current one).

        With ``check`` (preparing a commit) raise :class:`CommitConflictError` if the entry no longer fits
        the state: a read or removed path is not live, an added path already is, writer progress would go
        backwards; schema evolution raises :class:`SchemaConflictError`. On error the builder is spoilt.
        """
        if check:
            missing = [p for p in entry.reads if p not in self.files]
            if missing:
                raise CommitConflictError(
                    f"{len(missing)} file(s) this commit read are no longer live, e.g. {missing[0]!r} "
                    f"(removed by a concurrent commit after version {entry.base_version})"
                )
        for action in entry.actions:
            self._apply_one(action, entry, check)
        self.version = entry.version
        self.timestamp_ms = entry.timestamp_ms

    def _apply_one(self, a: object, entry: Entry, check: bool) -> None:
        if isinstance(a, AddFile):
            if check and a.file.path in self.files:
                raise CommitConflictError(f"data file {a.file.path!r} is already in the lake")
            added = a.file if a.file.seq is not None else dataclasses.replace(a.file, seq=entry.version)
            self.files[a.file.path] = added
        elif isinstance(a, RemoveFile):
            if self.files.pop(a.path, None) is None and check:
                raise CommitConflictError(
                    f"data file {a.path!r} is not live (removed by a concurrent commit?); nothing was applied"
                )
        elif isinstance(a, SetSchema):
            key = (a.tenant, a.metric)
            existing = self.schemas.get(key)
            new = evolve(existing, a.schema.labels, a.schema.fields, tenant=a.tenant, metric=a.metric)
            merged = new if new is not None else existing
            assert merged is not None
            if a.set_kinds:
                merged = merged.with_kinds({k: v.kind for k, v in a.schema.fields.items()})
            self.schemas[key] = merged
        elif isinstance(a, WriterProgress):
            old = self.progress.get(a.writer_id)
            if old is not None and a.lsn < old:
                if check:
                    raise CommitConflictError(
                        f"writer {a.writer_id!r} progress would go back from LSN {old} to {a.lsn}: "
                        "is another process using the same writer id?",
                        retryable=False,
                    )
                return
            self.progress[a.writer_id] = a.lsn
        elif isinstance(a, SetTiers):
            self.tiers[(a.tenant, a.metric)] = a.tiers
        elif isinstance(a, SetRetention):
            self.retention[(a.tenant, a.metric, a.tier)] = a.ttl_ns
        elif isinstance(a, RemoveRetention):
            self.retention.pop((a.tenant, a.metric, a.tier), None)
        elif isinstance(a, SetWatermark):
            self.watermarks[(a.tenant, a.metric, a.tier)] = a.watermark_ns
        elif isinstance(a, MarkDirty):
            key3 = (a.tenant, a.metric, a.tier)
            self.dirty[key3] = normalise_dirty(
                (*self.dirty.get(key3, ()), DirtyRange(a.start_ns, a.end_ns, entry.version))
            )
        elif isinstance(a, ClearDirty):
            key3 = (a.tenant, a.metric, a.tier)
            left = _subtract(self.dirty.get(key3, ()), a.start_ns, a.end_ns, entry.base_version)
            if left:
                self.dirty[key3] = left
            else:
                self.dirty.pop(key3, None)
        elif isinstance(a, SetProperty):
            if a.value is None:
                self.properties.pop(a.key, None)
            else:
                self.properties[a.key] = a.value
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {a!r}")
