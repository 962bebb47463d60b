"""Vacuum: delete data objects no snapshot within the grace period references, and old orphans.

The grace period protects readers of older snapshots. With ``older_than = g`` and cutoff ``now - g``:

* ``protected`` = the catalog version that was current at the cutoff (``version_as_of``; version 0 if the
  lake is younger than ``g``);
* every data path live in ``protected`` or added by any later entry is kept (``referenced_paths``), so a
  reader that pinned any snapshot taken within the grace period still finds all its files;
* every other object under ``data/`` whose modification time is before the cutoff is deleted: files
  removed from the catalog (compacted away, expired) at or before ``protected``, and orphans — files that
  were never committed (a writer or compactor crashed or lost a race) and stray objects under ``data/``
  that are not data-file keys (backend temp files, if the backend lists them).

Vacuum also expires the catalog log (:meth:`Catalog.expire_log`): entries and checkpoints older than the log
retention — the ``log_retention`` argument, else the lake property ``catalog.log_retention``
(a duration string or seconds), else 30 days — and never less than the grace period, so every version
vacuum protects stays readable.

Never deleted: anything the current snapshot references (re-checked just before deleting), anything
younger than the cutoff (it may belong to a commit in flight — the grace period must exceed the longest
write-to-commit time), and anything outside ``data/`` (``_catalog/``, ``_wal/`` are never touched).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tsdb_lake.catalog import DEFAULT_LOG_RETENTION_MS, Catalog, LogExpiry
from tsdb_lake.compaction.settings import DEFAULT_VACUUM_GRACE_NS, DurationLike, duration_ns
from tsdb_lake.errors import InvalidNameError, InvalidQueryError, NotFoundError
from tsdb_lake.storage.base import Storage
from tsdb_lake.storage.layout import DATA_PREFIX, parse_data_file_key

__all__ = ["LOG_RETENTION_PROPERTY", "VacuumReport", "VacuumedObject", "run_vacuum"]

_DELETE_BATCH = 1000
#: Lake property holding the catalog log retention (a duration string like ``"7d"`` or seconds).
LOG_RETENTION_PROPERTY = "catalog.log_retention"


@dataclass(frozen=True, slots=True)
class VacuumedObject:
    """One object vacuum deleted (or would): ``kind`` is ``unreferenced`` (a data-file key) or ``stray``."""

    key: str
    bytes: int
    kind: str
    mtime: float


@dataclass
class VacuumReport:
    """The outcome of a vacuum pass."""

    dry_run: bool
    grace_ns: int
    cutoff_ms: int
    protected_version: int
    head_version: int
    deleted: list[VacuumedObject] = field(default_factory=list)
    kept_referenced: int = 0
    kept_recent: int = 0
    log: LogExpiry | None = None

    @property
    def files(self) -> int:
        """Objects deleted (or that would be)."""
        return len(self.deleted)

    @property
    def bytes(self) -> int:
        """Bytes freed (or that would be)."""
        return sum(o.bytes for o in self.deleted)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "dry_run": self.dry_run,
            "grace_s": self.grace_ns / 1e9,
            "cutoff_ms": self.cutoff_ms,
            "protected_version": self.protected_version,
            "head_version": self.head_version,
            "files": self.files,
            "bytes": self.bytes,
            "kept_referenced": self.kept_referenced,
            "kept_recent": self.kept_recent,
            "deleted": [o.key for o in self.deleted],
            "log": None if self.log is None else self.log.to_dict(),
        }


def _kind(key: str) -> str:
    try:
        parse_data_file_key(key)
    except InvalidNameError:
        return "stray"
    return "unreferenced"


def run_vacuum(
    storage: Storage,
    catalog: Catalog,
    older_than: DurationLike = DEFAULT_VACUUM_GRACE_NS / 1e9,
    *,
    dry_run: bool = False,
    now_ns: int | None = None,
    log_retention: DurationLike | None = None,
) -> VacuumReport:
    """Delete unreferenced data objects older than the grace period ``older_than`` (default one hour), then
    expire catalog log entries older than the log retention."""
    grace = duration_ns(older_than, what="vacuum grace period")
    now = time.time_ns() if now_ns is None else now_ns
    cutoff_ms = (now - grace) // 1_000_000
    retention_ms = max(_log_retention_ms(catalog, log_retention), grace // 1_000_000)
    try:
        protected = catalog.version_as_of(cutoff_ms)
    except NotFoundError:
        protected = catalog.log_floor()  # nothing retained is older than the grace period: keep it all
    keep = catalog.referenced_paths(protected)
    head = catalog.snapshot()
    report = VacuumReport(dry_run, grace, cutoff_ms, protected, head.version)
    cutoff_s = cutoff_ms / 1000.0
    candidates: list[VacuumedObject] = []
    for obj in storage.list(DATA_PREFIX):
        if not obj.key.startswith(DATA_PREFIX):
            continue  # defensive: vacuum never touches anything outside data/
        if obj.key in keep:
            report.kept_referenced += 1
            continue
        if obj.mtime >= cutoff_s:
            report.kept_recent += 1
            continue
        candidates.append(VacuumedObject(obj.key, obj.size, _kind(obj.key), obj.mtime))
    live = catalog.refresh().by_path  # never delete what the current snapshot references
    report.deleted = [c for c in candidates if c.key not in live]
    report.kept_referenced += len(candidates) - len(report.deleted)
    if not dry_run:
        keys = [c.key for c in report.deleted]
        for i in range(0, len(keys), _DELETE_BATCH):
            storage.delete(keys[i : i + _DELETE_BATCH])
    report.log = catalog.expire_log(retention_ms, now_ms=now // 1_000_000, dry_run=dry_run)
    return report


def _log_retention_ms(catalog: Catalog, explicit: DurationLike | None) -> int:
    """The log retention in ms: the argument, else the lake property, else the default (30 days)."""
    value = explicit if explicit is not None else catalog.snapshot().properties.get(LOG_RETENTION_PROPERTY)
    if value is None:
        return DEFAULT_LOG_RETENTION_MS
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidQueryError(f"{LOG_RETENTION_PROPERTY} must be a duration, got {value!r}")
    return duration_ns(value, what="catalog log retention") // 1_000_000
