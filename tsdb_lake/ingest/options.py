"""Typed settings of a writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BackgroundPriority", "Backpressure", "Durability", "WriterOptions"]

Durability = Literal["batch", "interval", "none"]
Backpressure = Literal["block", "error"]
BackgroundPriority = Literal["low", "normal"]


@dataclass(frozen=True)
class WriterOptions:
    """How a writer logs, buffers and flushes.

    ``durability``: ``"batch"`` fsyncs the WAL before ``write`` returns; ``"interval"`` fsyncs every
    ``sync_interval_s``; ``"none"`` leaves it to the OS. The memtable flushes in the background once it holds
    ``flush_bytes`` or its oldest point is ``flush_interval_s`` old; (metric, hour) partitions that writing
    has moved past (a newer hour of the metric arrived) are flushed in the background, while writes go on,
    once they hold ``flush_completed_bytes`` (0 disables this); when buffered data reaches
    ``memtable_budget_bytes`` writes block (up to ``block_timeout_s``) or fail with a retryable
    ``RateLimitedError`` (``backpressure="error"``). ``background_priority="low"`` runs background flushes on
    threads of lowered CPU priority (Linux: nice 10, per thread; elsewhere normal), one thread per partition,
    so that they use spare cores without slowing the threads that write (as RocksDB lowers its background
    threads); a ``flush`` or ``close`` the caller waits for always runs at normal priority, in parallel.
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
    background_priority: BackgroundPriority = "low"
