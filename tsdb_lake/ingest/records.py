"""WAL record payloads: accepted writes, and carry records of a partial flush. The WAL treats both as opaque.

All integers are little-endian. A *grouped batch* (``B``, see :class:`~tsdb_lake.grouping.GroupedBatch`)
is encoded as: u32 series count ``S``, u64 length of the series stream, the series stream (one Arrow IPC stream:
the label columns, ``S`` rows), then u64 length of the points stream and the points stream (one Arrow IPC
stream: ``time`` int64, ``_group`` int32 in ``[0, S)``, the field columns).

Write record v2 (written now): magic ``b"TSR2"``, u16 metric-name length, the UTF-8 metric name, ``B``.

Carry record v2 (written when some partitions are flushed while others stay buffered): magic ``b"TSC2"``, u64
``covers`` (the flush commits WAL progress ``covers``), u32 batch count, then per batch: u16 metric-name
length, the UTF-8 metric name, ``B``. It re-logs the still-buffered points of records <= ``covers``; replay
uses it only when the committed progress is >= ``covers`` and < its own LSN (then those records are skipped,
and only the carry still holds the points), in the order the batches are stored, before any write record.

Version 1 records still replay: write record ``b"TSR1"``, u16 name length, name, then one Arrow IPC stream of
the batch in full normal form (``time``, labels, fields); carry record ``b"TSC1"``, u64 ``covers``, u32 table
count, then per table u16 name length, name, u64 stream length, one such stream.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa

from tsdb_lake.errors import CorruptBlockError
from tsdb_lake.grouping import GROUP_COLUMN, GroupedBatch

__all__ = [
    "decode_carry",
    "decode_record",
    "encode_carry",
    "encode_carry_v1",
    "encode_record",
    "encode_record_v1",
    "is_carry",
]

_MAGIC = b"TSR1"
_CARRY_MAGIC = b"TSC1"
_MAGIC2 = b"TSR2"
_CARRY_MAGIC2 = b"TSC2"
_SERIES_HEAD = struct.Struct("<IQ")
_HEAD = struct.Struct("<4sH")
_CARRY_HEAD = struct.Struct("<4sQI")
_CARRY_TABLE = struct.Struct("<H")
_CARRY_LEN = struct.Struct("<Q")
#: Record batches are written uncompressed: LZ4 shrank a batch ~2.5x but cost ~8x more CPU than the
#: serialisation itself, and on the write path CPU is scarcer than fsync bandwidth. Readers accept either
#: (compression is a per-stream Arrow IPC feature), so older LZ4 records still replay.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


def _ipc(table: pa.Table, sink: Any) -> None:
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as stream:
        stream.write_table(table)


def _read_ipc(data: bytes, metric: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except pa.ArrowException as exc:
        raise CorruptBlockError(
            f"WAL record for metric {metric!r} holds unreadable Arrow IPC: {exc}"
        ) from exc


def encode_record_v1(metric: str, table: pa.Table) -> memoryview:
    """A version 1 write record of a batch in full normal form (only replay and tests still need it)."""
    name = metric.encode("utf-8")
    sink = pa.BufferOutputStream()
    sink.write(_HEAD.pack(_MAGIC, len(name)) + name)
    _ipc(table, sink)
    return memoryview(sink.getvalue())


def is_carry(payload: bytes | memoryview) -> bool:
    """Whether a WAL payload is a carry record (either version)."""
    return bytes(payload[:4]) in (_CARRY_MAGIC, _CARRY_MAGIC2)


def encode_carry_v1(covers: int, tables: list[tuple[str, pa.Table]]) -> memoryview:
    """A version 1 carry record of full normal-form tables (only tests still need it)."""
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


def _decode_carry_v1(data: bytes) -> tuple[int, list[tuple[str, GroupedBatch]]]:
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
            tables.append((metric, _from_v1(_read_ipc(data[pos : pos + length], metric), metric)))
            pos += length
    except struct.error as exc:
        raise CorruptBlockError(f"WAL carry record is truncated: {exc}") from exc
    if pos != len(data):
        raise CorruptBlockError("WAL carry record has trailing bytes")
    return covers, tables


def _decode_record_v1(payload: bytes | memoryview) -> tuple[str, GroupedBatch]:
    _, n = _HEAD.unpack_from(payload)
    metric = bytes(payload[_HEAD.size : _HEAD.size + n]).decode("utf-8", "replace")
    # A copy: the stream then starts 8-byte aligned, so the zero-copy IPC buffers are aligned too.
    return metric, _from_v1(_read_ipc(bytes(payload[_HEAD.size + n :]), metric), metric)


def _from_v1(table: pa.Table, metric: str) -> GroupedBatch:
    try:
        return GroupedBatch.from_table(table)
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise CorruptBlockError(
            f"WAL v1 record for metric {metric!r} is not a normal-form batch: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------------- version 2


def _stream_size(table: pa.Table) -> int:
    """Bytes of ``table`` as an Arrow IPC stream, measured without copying any data."""
    mock = pa.MockOutputStream()
    _ipc(table, mock)
    return int(mock.size())


def _batch_size(batch: GroupedBatch) -> tuple[int, int, int]:
    """``(encoded size, series stream size, points stream size)`` of a grouped batch."""
    series, points = _stream_size(batch.series), _stream_size(batch.points)
    return _SERIES_HEAD.size + series + _CARRY_LEN.size + points, series, points


def _encode_batch(batch: GroupedBatch, sizes: tuple[int, int, int], sink: Any) -> None:
    _, series, points = sizes
    sink.write(_SERIES_HEAD.pack(batch.series.num_rows, series))
    _ipc(batch.series, sink)
    sink.write(_CARRY_LEN.pack(points))
    _ipc(batch.points, sink)


def _decode_batch(data: bytes, pos: int, metric: str) -> tuple[GroupedBatch, int]:
    """The grouped batch encoded at ``data[pos:]`` and the offset just past it."""
    try:
        count, length = _SERIES_HEAD.unpack_from(data, pos)
        pos += _SERIES_HEAD.size
        if pos + length > len(data):
            raise CorruptBlockError("WAL record is truncated (series stream)")
        series = _read_ipc(data[pos : pos + length], metric)
        pos += length
        (length,) = _CARRY_LEN.unpack_from(data, pos)
        pos += _CARRY_LEN.size
        if pos + length > len(data):
            raise CorruptBlockError("WAL record is truncated (points stream)")
        points = _read_ipc(data[pos : pos + length], metric)
        pos += length
    except struct.error as exc:
        raise CorruptBlockError(f"WAL record is truncated: {exc}") from exc
    _check_batch(series, points, count, metric)
    return GroupedBatch(series, points), pos


def _check_batch(series: pa.Table, points: pa.Table, count: int, metric: str) -> None:
    """Raise ``CorruptBlockError`` unless ``(series, points)`` is a well-formed grouped batch of ``count`` series."""
    names = points.column_names
    if series.num_rows != count or names[:2] != ["time", GROUP_COLUMN]:
        raise CorruptBlockError(f"WAL record for metric {metric!r} holds a malformed grouped batch")
    groups = points.column(GROUP_COLUMN)
    if groups.type != pa.int32() or groups.null_count or points.column("time").type != pa.int64():
        raise CorruptBlockError(f"WAL record for metric {metric!r} holds a malformed grouped batch")
    if points.num_rows:
        g = np.concatenate([c.to_numpy() for c in groups.chunks])
        if int(g.min()) < 0 or int(g.max()) >= count:
            raise CorruptBlockError(f"WAL record for metric {metric!r} names a series it does not hold")


def encode_record(metric: str, batch: GroupedBatch) -> memoryview:
    """Serialise one accepted batch for the WAL as a version 2 write record."""
    name = metric.encode("utf-8")
    sizes = _batch_size(batch)
    # Streams are sized first, so the record is serialised once, straight into a buffer of its exact size.
    buf = pa.allocate_buffer(_HEAD.size + len(name) + sizes[0])
    sink = pa.FixedSizeBufferWriter(buf)
    sink.write(_HEAD.pack(_MAGIC2, len(name)) + name)
    _encode_batch(batch, sizes, sink)
    return memoryview(buf)


def encode_carry(covers: int, batches: list[tuple[str, GroupedBatch]]) -> memoryview:
    """Serialise a version 2 carry record: the ``(metric, batch)`` pairs still buffered from records <= ``covers``."""
    sink = pa.BufferOutputStream()
    sink.write(_CARRY_HEAD.pack(_CARRY_MAGIC2, covers, len(batches)))
    for metric, batch in batches:
        name = metric.encode("utf-8")
        sink.write(_CARRY_TABLE.pack(len(name)) + name)
        _encode_batch(batch, _batch_size(batch), sink)
    return memoryview(sink.getvalue())


def decode_record(payload: bytes | memoryview) -> tuple[str, GroupedBatch]:
    """Inverse of :func:`encode_record` (and of :func:`encode_record_v1`); ``CorruptBlockError`` if malformed."""
    magic = bytes(payload[:4])
    if len(payload) < _HEAD.size or magic not in (_MAGIC, _MAGIC2):
        raise CorruptBlockError("WAL record is not a tsdb-lake write record")
    if magic == _MAGIC:
        return _decode_record_v1(payload)
    data = bytes(payload)
    _, n = _HEAD.unpack_from(data)
    metric = data[_HEAD.size : _HEAD.size + n].decode("utf-8", "replace")
    batch, pos = _decode_batch(data, _HEAD.size + n, metric)
    if pos != len(data):
        raise CorruptBlockError("WAL write record has trailing bytes")
    return metric, batch


def decode_carry(payload: bytes | memoryview) -> tuple[int, list[tuple[str, GroupedBatch]]]:
    """Inverse of :func:`encode_carry` (and of :func:`encode_carry_v1`); ``CorruptBlockError`` if malformed."""
    data = bytes(payload)
    if data[:4] == _CARRY_MAGIC:
        return _decode_carry_v1(data)
    if len(data) < _CARRY_HEAD.size or data[:4] != _CARRY_MAGIC2:
        raise CorruptBlockError("WAL record is not a tsdb-lake carry record")
    _, covers, count = _CARRY_HEAD.unpack_from(data)
    pos = _CARRY_HEAD.size
    batches = []
    for _ in range(count):
        try:
            (n,) = _CARRY_TABLE.unpack_from(data, pos)
        except struct.error as exc:
            raise CorruptBlockError(f"WAL carry record is truncated: {exc}") from exc
        metric = data[pos + 2 : pos + 2 + n].decode("utf-8", "replace")
        batch, pos = _decode_batch(data, pos + 2 + n, metric)
        batches.append((metric, batch))
    if pos != len(data):
        raise CorruptBlockError("WAL carry record has trailing bytes")
    return covers, batches
