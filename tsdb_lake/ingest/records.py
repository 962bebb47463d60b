"""WAL record payloads: accepted writes, and carry records of a partial flush. The WAL treats both as opaque.

Write record: magic ``b"TSR1"``, u16 little-endian metric-name length, the UTF-8 metric name, then one Arrow
IPC stream (schema + record batches).

Carry record (written when some partitions are flushed while others stay buffered): magic ``b"TSC1"``, u64
``covers`` (the flush commits WAL progress ``covers``), u32 table count, then per table: u16 metric-name
length, the UTF-8 metric name, u64 stream length, one Arrow IPC stream. It re-logs the still-buffered rows of
records <= ``covers``; replay uses it only when the committed progress is >= ``covers`` and < its own LSN
(then those records are skipped, and only the carry still holds the rows), in the order the tables are stored,
before any write record.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from tsdb_lake.errors import CorruptBlockError

__all__ = ["decode_carry", "decode_record", "encode_carry", "encode_record", "is_carry"]

_MAGIC = b"TSR1"
_CARRY_MAGIC = b"TSC1"
_HEAD = struct.Struct("<4sH")
_CARRY_HEAD = struct.Struct("<4sQI")
_CARRY_TABLE = struct.Struct("<H")
_CARRY_LEN = struct.Struct("<Q")
#: Record batches are written uncompressed: LZ4 shrank a batch ~2.5x but cost ~8x more CPU than the
#: serialisation itself, and on the write path CPU is scarcer than fsync bandwidth. Readers accept either
#: (compression is a per-stream Arrow IPC feature), so older LZ4 records still replay.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


def _ipc(table: pa.Table, sink: pa.BufferOutputStream) -> None:
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as stream:
        stream.write_table(table)


def _read_ipc(data: bytes, metric: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except pa.ArrowException as exc:
        raise CorruptBlockError(
            f"WAL record for metric {metric!r} holds unreadable Arrow IPC: {exc}"
        ) from exc


def encode_record(metric: str, table: pa.Table) -> memoryview:
    """Serialise one accepted batch for the WAL (one buffer, built without an extra copy)."""
    name = metric.encode("utf-8")
    sink = pa.BufferOutputStream()
    sink.write(_HEAD.pack(_MAGIC, len(name)) + name)
    _ipc(table, sink)
    return memoryview(sink.getvalue())


def is_carry(payload: bytes | memoryview) -> bool:
    """Whether a WAL payload is a carry record."""
    return bytes(payload[:4]) == _CARRY_MAGIC


def encode_carry(covers: int, tables: list[tuple[str, pa.Table]]) -> memoryview:
    """Serialise a carry record: the ``(metric, table)`` pairs still buffered from records <= ``covers``."""
    sink = pa.BufferOutputStream()
    sink.write(_CARRY_HEAD.pack(_CARRY_MAGIC, covers, len(tables)))
    for metric, table in tables:
        name = metric.encode("utf-8")
        part = pa.BufferOutputStream()
        _ipc(table, part)
        stream = part.getvalue()
        sink.write(_CARRY_TABLE.pack(len(name)) + name + _CARRY_LEN.pack(stream.size))
        sink.write(stream)
    return memoryview(sink.getvalue())


def decode_carry(payload: bytes | memoryview) -> tuple[int, list[tuple[str, pa.Table]]]:
    """Inverse of :func:`encode_carry`; raises ``CorruptBlockError`` on malformed payloads."""
    data = bytes(payload)
    if len(data) < _CARRY_HEAD.size or data[:4] != _CARRY_MAGIC:
        raise CorruptBlockError("WAL record is not a tsdb-lake carry record")
    _, covers, count = _CARRY_HEAD.unpack_from(data)
    pos = _CARRY_HEAD.size
    tables = []
    try:
        for _ in range(count):
            (n,) = _CARRY_TABLE.unpack_from(data, pos)
            metric = data[pos + 2 : pos + 2 + n].decode("utf-8", "replace")
            pos += 2 + n
            (length,) = _CARRY_LEN.unpack_from(data, pos)
            pos += _CARRY_LEN.size
            if pos + length > len(data):
                raise CorruptBlockError("WAL carry record is truncated")
            # A copy of the stream: it then starts 8-byte aligned, and so do its zero-copy buffers.
            tables.append((metric, _read_ipc(data[pos : pos + length], metric)))
            pos += length
    except struct.error as exc:
        raise CorruptBlockError(f"WAL carry record is truncated: {exc}") from exc
    if pos != len(data):
        raise CorruptBlockError("WAL carry record has trailing bytes")
    return covers, tables


def decode_record(payload: bytes | memoryview) -> tuple[str, pa.Table]:
    """Inverse of :func:`encode_record`; raises ``CorruptBlockError`` on malformed payloads."""
    if len(payload) < _HEAD.size or payload[:4] != _MAGIC:
        raise CorruptBlockError("WAL record is not a tsdb-lake write record")
    _, n = _HEAD.unpack_from(payload)
    metric = bytes(payload[_HEAD.size : _HEAD.size + n]).decode("utf-8", "replace")
    # A copy: the stream then starts 8-byte aligned, so the zero-copy IPC buffers are aligned too.
    return metric, _read_ipc(bytes(payload[_HEAD.size + n :]), metric)
