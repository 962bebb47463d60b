"""Typed settings of a writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Backpressure", "Durability", "WriterOptions"]

Durability = Literal["batch", "interval", "none"]
Backpressure = Literal["block", "error"]


@dataclass(frozen=True)
class WriterOptions:
    """How a writer logs, buffers and flushes.

    ``durability``: ``"batch"`` fsyncs the WAL before ``write`` returns; ``"interval"`` fsyncs every
    ``sync_interval_s``; ``"none"`` leaves it to the OS. The memtable flushes in the background once it holds
    ``flush_bytes`` or its oldest point is ``flush_interval_s`` old; (metric, hour) partitions that writing
    has moved past (a newer hour of the metric arrived) are flushed in the background, while writes go on,
    once they hold ``flush_completed_bytes`` (0 disables this); when buffered data reaches
    ``memtable_budget_bytes`` writes block (up to ``block_timeout_s``) or fail with a retryable
    ``RateLimitedError`` (``backpressure="error"``).
    """

    durability: Durability = "batch"
    sync_interval_s: float = 1.0
    memtable_budget_bytes: int = 512 << 20
    flush_bytes: int = 256 << 20
    flush_interval_s: float = 300.0
    flush_completed_bytes: int = 1 << 20
    backpressure: Backpressure = "block"
    block_timeout_s: float = 60.0
    max_chunk_points: int = 4096
    wal_segment_bytes: int = 64 << 20
    max_series_per_metric: int | None = None
