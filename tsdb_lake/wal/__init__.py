"""The write-ahead log room: CRC-framed, size-rotated segments of opaque byte records on a local directory.

Knows nothing of Arrow, tables or object storage; the ingest layer encodes its batches into payloads.
Format: ``catalog/WAL.md``.
"""

from tsdb_lake.wal.format import FORMAT_VERSION, MAX_RECORD_BYTES
from tsdb_lake.wal.fsutil import wal_writer_id
from tsdb_lake.wal.log import WAL, Durability, ReplayReport, SegmentInfo, WalRecord

__all__ = [
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "WAL",
    "Durability",
    "ReplayReport",
    "SegmentInfo",
    "WalRecord",
    "wal_writer_id",
]
