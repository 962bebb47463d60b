"""Lake maintenance: compaction (pure planner + merge), retention and vacuum; rollups live beside them.

``run_compaction`` merges the small / overlapping raw files of settled hour partitions (one catalog commit per
partition); ``Retention`` / ``apply_retention`` expire whole partitions past their TTL behind the rollup guard;
``run_vacuum`` deletes unreferenced objects after a grace period. Rollup names (``run_rollups`` ...) are
re-exported lazily from :mod:`tsdb_lake.compaction.rollup`, which the rollup room owns.
"""

from __future__ import annotations

import importlib
from typing import Any

from tsdb_lake.compaction.merge import (
    COMPACTOR_WRITER,
    CompactionReport,
    JobResult,
    data_seqs,
    merge_job,
    merge_points,
    read_job_points,
    run_compaction,
)
from tsdb_lake.compaction.planner import (
    CompactionPlan,
    PartitionJob,
    SkippedPartition,
    files_overlap,
    overlap_closure,
    plan_compaction,
    split_points,
)
from tsdb_lake.compaction.retention import (
    BlockedPartition,
    ExpiredPartition,
    Retention,
    RetentionReport,
    RetentionRule,
    apply_retention,
    plan_retention,
    retention_rules,
)
from tsdb_lake.compaction.settings import (
    DEFAULT_VACUUM_GRACE_NS,
    CompactionSettings,
    DurationLike,
    duration_ns,
)
from tsdb_lake.compaction.vacuum import VacuumedObject, VacuumReport, run_vacuum

#: Names served lazily from the rollup room (tsdb_lake/compaction/rollup.py) so this package imports even
#: while that module is being written. TODO(lead): add the rollup helper's other public names here.
_LAZY = {"run_rollups": "tsdb_lake.compaction.rollup"}

__all__ = [
    "COMPACTOR_WRITER",
    "DEFAULT_VACUUM_GRACE_NS",
    "BlockedPartition",
    "CompactionPlan",
    "CompactionReport",
    "CompactionSettings",
    "DurationLike",
    "ExpiredPartition",
    "JobResult",
    "PartitionJob",
    "Retention",
    "RetentionReport",
    "RetentionRule",
    "SkippedPartition",
    "VacuumReport",
    "VacuumedObject",
    "apply_retention",
    "data_seqs",
    "duration_ns",
    "files_overlap",
    "merge_job",
    "merge_points",
    "overlap_closure",
    "plan_compaction",
    "plan_retention",
    "read_job_points",
    "retention_rules",
    "run_compaction",
    "run_rollups",
    "run_vacuum",
    "split_points",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
