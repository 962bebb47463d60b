"""Retention: per tenant × metric × tier TTL rules stored in the catalog, and expiry as a catalog commit.

Rules are :class:`~tsdb_lake.catalog.SetRetention` actions; the most specific scope wins (tenant+metric,
tenant, metric, lake default) and a tier with no rule keeps its data forever. Rules change at run time by
committing a new rule.

Expiry works on whole partitions: a partition of a tier is expired when its *end* is at or before
``now - ttl`` — every point in it is older than the TTL. A partially expired partition (its start is past
the cutoff but not its end) is kept until it is wholly expired; data therefore lives at most one partition
width longer than its TTL (an hour for raw), never shorter.

The guard: data of a tier is never expired before every coarser configured rollup tier covering it is
built and committed — the tier's watermark is at or past the partition's end, no dirty (late-data) range
of the tier overlaps the partition, and a rollup file of the tier covering the range is live. A coarser tier
whose own TTL has already passed for that range is not required. Blocked partitions are reported with the
reason. Expiry removes the partition's files with ``RemoveFile(reason="retention")`` in one commit; the
objects are deleted later by vacuum.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tsdb_lake.catalog import (
    Action,
    Catalog,
    DataFile,
    RemoveFile,
    RemoveRetention,
    SetRetention,
    Snapshot,
    TierSpec,
    Validator,
)
from tsdb_lake.compaction.settings import DurationLike, duration_ns
from tsdb_lake.errors import CommitConflictError
from tsdb_lake.model import validate_name
from tsdb_lake.storage.layout import partition_bounds

__all__ = [
    "RAW_TIER",
    "BlockedPartition",
    "ExpiredPartition",
    "Retention",
    "RetentionReport",
    "RetentionRule",
    "apply_retention",
    "plan_retention",
    "retention_rules",
]

RAW_TIER = "raw"
_COMMIT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One stored rule: scope (None = any), tier, and TTL in ns (None = keep forever)."""

    tenant: str | None
    metric: str | None
    tier: str
    ttl_ns: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with the TTL also in seconds."""
        out = dataclasses.asdict(self)
        out["ttl_s"] = None if self.ttl_ns is None else self.ttl_ns / 1e9
        return out


@dataclass(frozen=True, slots=True)
class ExpiredPartition:
    """A partition whose files expire (or would, in a dry run)."""

    tenant: str
    metric: str
    tier: str
    partition: str
    end_ns: int
    paths: tuple[str, ...]
    bytes: int
    points: int


@dataclass(frozen=True, slots=True)
class BlockedPartition:
    """A partition past its TTL that the guard keeps, and why."""

    tenant: str
    metric: str
    tier: str
    partition: str
    files: int
    bytes: int
    reason: str


@dataclass
class RetentionReport:
    """What a retention pass expired (or would expire) and what the guard kept."""

    dry_run: bool
    now_ns: int
    base_version: int
    expired: list[ExpiredPartition] = field(default_factory=list)
    blocked: list[BlockedPartition] = field(default_factory=list)
    version: int | None = None

    @property
    def files(self) -> int:
        """Files expired (or that would be)."""
        return sum(len(p.paths) for p in self.expired)

    @property
    def bytes(self) -> int:
        """Bytes vacuum will free once the grace period has passed."""
        return sum(p.bytes for p in self.expired)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "dry_run": self.dry_run,
            "now_ns": self.now_ns,
            "base_version": self.base_version,
            "version": self.version,
            "files": self.files,
            "bytes": self.bytes,
            "expired": [
                {k: v for k, v in dataclasses.asdict(p).items() if k != "paths"} | {"files": len(p.paths)}
                for p in self.expired
            ],
            "blocked": [dataclasses.asdict(b) for b in self.blocked],
        }


def retention_rules(snapshot: Snapshot) -> list[RetentionRule]:
    """Every stored rule, sorted by (tenant, metric, tier) with None (any) first."""
    rules = [RetentionRule(t, m, tier, ttl) for (t, m, tier), ttl in snapshot.retention_rules.items()]
    return sorted(rules, key=lambda r: (r.tenant or "", r.metric or "", r.tier, r.tenant is not None))


def _tier_bucket(tier: str, tiers: Iterable[TierSpec]) -> int | None:
    if tier == RAW_TIER:
        return 0
    return next((t.bucket_ns for t in tiers if t.name == tier), None)


def _guard(
    snapshot: Snapshot, tenant: str, metric: str, tier: str, partition: str, now_ns: int
) -> str | None:
    """Why the partition may not expire yet (None = it may)."""
    start, end = partition_bounds(partition)
    tiers = snapshot.tiers_for(tenant, metric)
    mine = _tier_bucket(tier, tiers)
    for t in tiers:
        if mine is not None and t.bucket_ns <= mine:
            continue
        ttl = snapshot.retention_for(tenant, metric, t.name)
        if ttl is not None and end <= now_ns - ttl:
            continue  # that tier no longer keeps this range either
        mark = snapshot.watermark(tenant, metric, t.name)
        if mark is None or mark < end:
            return (
                f"rollup tier {t.name} is not built up to the partition end (watermark {mark}, needs {end})"
            )
        if any(s < end and e > start for s, e in snapshot.dirty(tenant, metric, t.name)):
            return f"rollup tier {t.name} has a dirty (late-data) range overlapping the partition"
        aligned = start - start % t.bucket_ns
        if not snapshot.files(tenant, metric, t.name, start=aligned, end=end):
            return f"no live rollup file of tier {t.name} covers the partition"
    return None


def plan_retention(
    snapshot: Snapshot,
    now_ns: int,
    *,
    tenant: str | None = None,
    metric: str | None = None,
) -> tuple[list[ExpiredPartition], list[BlockedPartition]]:
    """Pure: the partitions of ``snapshot`` that expire at ``now_ns`` and those the guard keeps."""
    groups: dict[tuple[str, str, str, str], list[DataFile]] = {}
    for f in snapshot.by_path.values():
        if (tenant is not None and f.tenant != tenant) or (metric is not None and f.metric != metric):
            continue
        groups.setdefault((f.tenant, f.metric, f.tier, f.partition), []).append(f)
    expired: list[ExpiredPartition] = []
    blocked: list[BlockedPartition] = []
    for (t, m, tier, partition), files in sorted(groups.items()):
        ttl = snapshot.retention_for(t, m, tier)
        if ttl is None:
            continue
        _, end = partition_bounds(partition)
        if end > now_ns - ttl:
            continue
        size = sum(f.bytes for f in files)
        reason = _guard(snapshot, t, m, tier, partition, now_ns)
        if reason is not None:
            blocked.append(BlockedPartition(t, m, tier, partition, len(files), size, reason))
            continue
        paths = tuple(sorted(f.path for f in files))
        expired.append(
            ExpiredPartition(t, m, tier, partition, end, paths, size, sum(f.points for f in files))
        )
    return expired, blocked


def _still_allowed(expired: list[ExpiredPartition], now_ns: int) -> Validator:
    """Commit validator: re-run the guard on the state the expiry lands on."""

    def validate(head: Snapshot, actions: list[Action]) -> None:
        for p in expired:
            reason = _guard(head, p.tenant, p.metric, p.tier, p.partition, now_ns)
            if reason is not None:
                raise CommitConflictError(f"retention of {p.partition} is no longer allowed: {reason}")

    return validate


def apply_retention(
    catalog: Catalog,
    *,
    dry_run: bool = True,
    now_ns: int | None = None,
    tenant: str | None = None,
    metric: str | None = None,
) -> RetentionReport:
    """Expire what the rules say (one commit), or with ``dry_run`` only report it.

    The guard is re-checked against the state the commit lands on; if a concurrent commit removed a file
    (e.g. compaction) the pass replans from the new snapshot, up to a few times.
    """
    now = time.time_ns() if now_ns is None else now_ns
    for attempt in range(_COMMIT_ATTEMPTS):
        base = catalog.refresh()
        expired, blocked = plan_retention(base, now, tenant=tenant, metric=metric)
        report = RetentionReport(dry_run, now, base.version, expired, blocked)
        if dry_run or not expired:
            return report
        actions: list[Action] = [RemoveFile(path, reason="retention") for p in expired for path in p.paths]
        try:
            snap = catalog.commit(
                actions, operation="retention", base=base, validate=_still_allowed(expired, now)
            )
        except CommitConflictError:
            if attempt == _COMMIT_ATTEMPTS - 1:
                raise
            continue
        report.version = snap.version
        return report
    raise AssertionError("unreachable")  # pragma: no cover


class Retention:
    """The ``lake.retention`` namespace: set, remove and show rules; apply them (dry run by default)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def set(
        self,
        tier: str,
        ttl: DurationLike | None,
        *,
        tenant: str | None = None,
        metric: str | None = None,
    ) -> RetentionRule:
        """Keep ``tier`` data of the scope for ``ttl`` (``"30d"``, timedelta, seconds; None = forever)."""
        if tenant is not None:
            validate_name("tenant", tenant)
        if metric is not None:
            validate_name("metric", metric)
        ttl_ns = None if ttl is None else duration_ns(ttl, what="retention ttl")
        self._catalog.commit([SetRetention(tenant, metric, tier, ttl_ns)], operation="set_retention")
        return RetentionRule(tenant, metric, tier, ttl_ns)

    def remove(self, tier: str, *, tenant: str | None = None, metric: str | None = None) -> None:
        """Delete the rule with exactly this scope, so a less specific rule applies again."""
        self._catalog.commit([RemoveRetention(tenant, metric, tier)], operation="set_retention")

    def show(self) -> list[RetentionRule]:
        """Every stored rule (latest catalog state)."""
        return retention_rules(self._catalog.refresh())

    def ttl(self, tenant: str, metric: str, tier: str = RAW_TIER) -> int | None:
        """The TTL (ns) that applies to one tenant / metric / tier, None = forever."""
        return self._catalog.refresh().retention_for(tenant, metric, tier)

    def apply(
        self,
        dry_run: bool = True,
        *,
        tenant: str | None = None,
        metric: str | None = None,
        now_ns: int | None = None,
    ) -> RetentionReport:
        """Expire what the rules say; with ``dry_run`` (the default) only report files and bytes."""
        return apply_retention(self._catalog, dry_run=dry_run, now_ns=now_ns, tenant=tenant, metric=metric)
