"""The compaction planner: which raw hour partitions to merge, and which of their files. Pure: no I/O.

Input: the live raw :class:`~tsdb_lake.catalog.DataFile` records (usually ``snapshot.by_path.values()``), the
:class:`CompactionSettings` and the current time. Output: a :class:`CompactionPlan` of partition jobs plus
the partitions skipped and why.

Correctness rule the planner guarantees: the inputs of a job are closed under overlap — every live file of
the partition whose (series id range × time range) intersects an input is an input too. So no file left out
shares a single (series, time) key with the job's inputs, and the merged output can never change which
write wins for any point, whatever data sequence numbers the outputs carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tsdb_lake.catalog import DataFile
from tsdb_lake.compaction.settings import CompactionSettings
from tsdb_lake.storage.layout import partition_bounds

__all__ = [
    "CompactionPlan",
    "PartitionJob",
    "PartitionKey",
    "SkippedPartition",
    "files_overlap",
    "overlap_closure",
    "plan_compaction",
    "split_points",
]

#: (tenant, metric, partition) of the raw tier.
PartitionKey = tuple[str, str, str]
_RAW = "raw"
_U64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class PartitionJob:
    """Merge ``inputs`` (all in one raw partition) into about ``estimated_outputs`` files.

    ``reason`` is ``"small_files"`` or ``"overlap"``; ``target_points`` is the point budget per output
    file derived from the inputs' bytes per point.
    """

    tenant: str
    metric: str
    partition: str
    inputs: tuple[DataFile, ...]
    reason: str
    target_points: int
    estimated_outputs: int

    @property
    def input_bytes(self) -> int:
        """Total size of the inputs."""
        return sum(f.bytes for f in self.inputs)

    @property
    def input_points(self) -> int:
        """Total points of the inputs (before duplicates are merged)."""
        return sum(f.points for f in self.inputs)

    @property
    def paths(self) -> tuple[str, ...]:
        """The input paths."""
        return tuple(f.path for f in self.inputs)


@dataclass(frozen=True, slots=True)
class SkippedPartition:
    """A partition the planner left alone this pass and why (``"settling"``, ``"quiet"``, ``"too_large"``)."""

    tenant: str
    metric: str
    partition: str
    reason: str
    files: int


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """The planner's decision: jobs to run, partitions skipped, and how many partitions needed nothing."""

    jobs: tuple[PartitionJob, ...] = ()
    skipped: tuple[SkippedPartition, ...] = ()
    partitions_seen: int = 0
    settings: CompactionSettings = field(default_factory=CompactionSettings)


def _series_bounds(f: DataFile) -> tuple[int, int]:
    lo = 0 if f.series_min is None else f.series_min
    hi = _U64_MAX if f.series_max is None else f.series_max
    return lo, hi


def files_overlap(a: DataFile, b: DataFile) -> bool:
    """Whether two files may hold the same (series, time) key: their inclusive bounds intersect in both.

    Files without series bounds are treated as covering every series.
    """
    if a.max_time < b.min_time or b.max_time < a.min_time:
        return False
    alo, ahi = _series_bounds(a)
    blo, bhi = _series_bounds(b)
    return not (ahi < blo or bhi < alo)


def overlap_closure(seeds: Iterable[DataFile], files: Sequence[DataFile]) -> list[DataFile]:
    """``seeds`` plus every file of ``files`` linked to them by a chain of overlaps, sorted by path."""
    chosen = {f.path: f for f in seeds}
    rest = [f for f in files if f.path not in chosen]
    frontier = list(chosen.values())
    while frontier and rest:
        newly = [f for f in rest if any(files_overlap(f, g) for g in frontier)]
        if not newly:
            break
        taken = {f.path for f in newly}
        rest = [f for f in rest if f.path not in taken]
        for f in newly:
            chosen[f.path] = f
        frontier = newly
    return sorted(chosen.values(), key=lambda f: f.path)


def _has_overlap(files: Sequence[DataFile]) -> list[DataFile]:
    """The files that overlap at least one other file of ``files`` (sweep by min_time)."""
    ordered = sorted(files, key=lambda f: (f.min_time, f.path))
    hit: dict[str, DataFile] = {}
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.min_time > a.max_time:
                break
            if files_overlap(a, b):
                hit[a.path] = a
                hit[b.path] = b
    return list(hit.values())


def split_points(total_points: int, total_bytes: int, target_file_bytes: int) -> tuple[int, int]:
    """``(points per output file, estimated output count)`` for inputs of the given size."""
    if total_points <= 0:
        return 1, 1
    bytes_per_point = max(total_bytes, 1) / total_points
    per_file = max(1, int(target_file_bytes / bytes_per_point))
    return per_file, max(1, -(-total_points // per_file))


def _plan_partition(
    key: PartitionKey, files: list[DataFile], settings: CompactionSettings, now_ns: int
) -> PartitionJob | SkippedPartition | None:
    tenant, metric, partition = key
    if len(files) < 2:
        return None
    small_limit = min(settings.small_file_bytes, settings.target_file_bytes // 2)
    small = [f for f in files if f.bytes < small_limit]
    overlapping = _has_overlap(files) if settings.merge_overlaps else []
    if len(small) >= settings.min_small_files:
        reason, seeds = "small_files", small + overlapping
    elif len(overlapping) >= 2:
        reason, seeds = "overlap", overlapping
    else:
        return None
    _, end_ns = partition_bounds(partition)
    if now_ns < end_ns + settings.settle_ns:
        return SkippedPartition(tenant, metric, partition, "settling", len(files))
    newest_ns = max(f.created_ms for f in files) * 1_000_000
    if now_ns < newest_ns + settings.quiet_ns:
        return SkippedPartition(tenant, metric, partition, "quiet", len(files))
    inputs = overlap_closure(seeds, files)
    if len(inputs) < 2:
        return None
    total_bytes = sum(f.bytes for f in inputs)
    if total_bytes > settings.max_input_bytes:
        inputs = _bounded(inputs, files, settings.max_input_bytes)
        if len(inputs) < 2:
            return SkippedPartition(tenant, metric, partition, "too_large", len(files))
        total_bytes = sum(f.bytes for f in inputs)
    per_file, n_out = split_points(sum(f.points for f in inputs), total_bytes, settings.target_file_bytes)
    return PartitionJob(tenant, metric, partition, tuple(inputs), reason, per_file, n_out)


def _bounded(inputs: list[DataFile], files: list[DataFile], budget: int) -> list[DataFile]:
    """A smaller overlap-closed input set within ``budget`` bytes: grow from the smallest files."""
    chosen: list[DataFile] = []
    for seed in sorted(inputs, key=lambda f: (f.bytes, f.path)):
        if any(seed.path == c.path for c in chosen):
            continue
        candidate = overlap_closure([*chosen, seed], files)
        if sum(f.bytes for f in candidate) > budget:
            continue
        chosen = candidate
    return chosen


def plan_compaction(
    files: Iterable[DataFile],
    settings: CompactionSettings,
    now_ns: int,
    *,
    tenant: str | None = None,
    metric: str | None = None,
) -> CompactionPlan:
    """Decide which raw partitions to compact (optionally only one tenant / metric).

    Jobs are ordered by partition key; at most ``settings.max_jobs`` are returned (the rest are simply not
    planned this pass). Non-raw files are ignored.
    """
    groups: dict[PartitionKey, list[DataFile]] = {}
    for f in files:
        if f.tier != _RAW or (tenant is not None and f.tenant != tenant):
            continue
        if metric is not None and f.metric != metric:
            continue
        groups.setdefault((f.tenant, f.metric, f.partition), []).append(f)
    jobs: list[PartitionJob] = []
    skipped: list[SkippedPartition] = []
    for key in sorted(groups):
        if settings.max_jobs is not None and len(jobs) >= settings.max_jobs:
            break
        decision = _plan_partition(key, groups[key], settings, now_ns)
        if isinstance(decision, PartitionJob):
            jobs.append(decision)
        elif isinstance(decision, SkippedPartition):
            skipped.append(decision)
    return CompactionPlan(tuple(jobs), tuple(skipped), len(groups), settings)
