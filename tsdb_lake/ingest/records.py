"""The WAL record payload of an accepted write: the metric name and the normalised batch as Arrow IPC.

Layout: magic ``b"TSR1"``, u16 little-endian metric-name length, the UTF-8 metric name, then one Arrow IPC
stream (schema + record batches, LZ4-frame body compression). The WAL itself treats this as opaque bytes.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from tsdb_lake.errors import CorruptBlockError

__all__ = ["decode_record", "encode_record"]

_MAGIC = b"TSR1"
_HEAD = struct.Struct("<4sH")
#: Record batches are LZ4-frame compressed inside the IPC stream (an Arrow IPC feature every reader handles):
#: repeated label strings shrink ~5x, which is what the WAL's fsync pays for.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def encode_record(metric: str, table: pa.Table) -> bytes:
    """Serialise one accepted batch for the WAL."""
    name = metric.encode("utf-8")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as stream:
        stream.write_table(table)
    return _HEAD.pack(_MAGIC, len(name)) + name + sink.getvalue().to_pybytes()


def decode_record(payload: bytes) -> tuple[str, pa.Table]:
    """Inverse of :func:`encode_record`; raises ``CorruptBlockError`` on malformed payloads."""
    if len(payload) < _HEAD.size or payload[:4] != _MAGIC:
        raise CorruptBlockError("WAL record is not a tsdb-lake write record")
    _, n = _HEAD.unpack_from(payload)
    metric = payload[_HEAD.size : _HEAD.size + n].decode("utf-8", "replace")
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(payload[_HEAD.size + n :]))
        return metric, reader.read_all()
    except pa.ArrowException as exc:
        raise CorruptBlockError(f"WAL record for metric {metric!r} holds unreadable Arrow IPC: {exc}") from exc
