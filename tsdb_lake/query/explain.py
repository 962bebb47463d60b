"""What a query read and skipped: the evidence that pruning happens."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Explain"]


@dataclass
class Explain:
    """Counters filled while a query plans and runs; ``to_dict()`` is what ``explain=True`` returns."""

    snapshot_version: int = -1
    tiers: list[dict[str, Any]] = field(default_factory=list)
    files_total: int = 0
    files_pruned_by_time: int = 0
    files_pruned_by_labels: int = 0
    files_read: int = 0
    chunks_read: int = 0
    chunks_pruned_by_labels: int = 0
    chunks_pruned_by_values: int = 0
    chunks_answered_by_stats: int = 0
    chunks_decoded: int = 0
    points_decoded: int = 0
    bytes_read: int = 0
    memtable_batches: int = 0
    approximate: bool = False

    @property
    def files_considered(self) -> int:
        """Files of the metric and tier in the snapshot before pruning."""
        return self.files_total

    @property
    def files_pruned(self) -> int:
        """Files skipped without being opened."""
        return self.files_pruned_by_time + self.files_pruned_by_labels

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out = asdict(self)
        out["files_pruned"] = self.files_pruned
        return out
