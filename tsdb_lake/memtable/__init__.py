"""Mutable in-memory buffers of accepted writes, per (metric, hour), sealed into sorted point frames."""

from tsdb_lake.memtable.memtable import HOUR_NS, Memtable, PartitionKey

__all__ = ["HOUR_NS", "Memtable", "PartitionKey"]
