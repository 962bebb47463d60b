"""Python entry points of the codecs: numpy in, bytes out, and back; batch decoders for the query engine.

Every decoder raises :class:`~tsdb_lake.errors.CorruptBlockError` for truncated, corrupt or hostile bytes.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tsdb_lake.codecs import kernels as K
from tsdb_lake.codecs.bits import OK, status_message
from tsdb_lake.codecs.ids import FLOAT_CODECS, INT_CODECS, CodecId, read_header
from tsdb_lake.errors import CorruptBlockError

__all__ = [
    "BlobsLike",
    "blob_count",
    "codec_id",
    "decode_floats",
    "decode_floats_many",
    "decode_gorilla",
    "decode_ints",
    "decode_timestamps",
    "decode_timestamps_many",
    "decode_values",
    "encode_floats",
    "encode_gorilla",
    "encode_ints",
    "encode_timestamps",
    "reduce_floats_many",
]

#: A batch of blobs: a sequence of bytes, an Arrow-like ``(data uint8 buffer, offsets)`` pair, or an object
#: with a pyarrow ``BinaryArray``-style ``buffers()`` / ``offset`` / ``__len__`` (no nulls).
BlobsLike = Sequence[bytes] | tuple[Any, Any] | Any

_MASK_TS = 1 << int(CodecId.TIMESTAMP)
_MASK_INT = 1 << int(CodecId.INT64)
_MASK_GORILLA = 1 << int(CodecId.GORILLA)


def _as_int64(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").view(np.int64)
    if arr.dtype != np.int64:
        if arr.dtype.kind not in "iub":
            raise TypeError(f"{what} must be integers, got {arr.dtype}")
        arr = arr.astype(np.int64)
    return np.ascontiguousarray(arr)


def _as_float64(a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    if arr.dtype != np.float64:
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"values must be numeric, got {arr.dtype}")
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def encode_timestamps(ts: np.ndarray) -> bytes:
    """Encode int64 (or datetime64) timestamps; any order and duplicates round-trip exactly."""
    x = _as_int64(ts, "timestamps")
    return K.encode_int_blob(int(CodecId.TIMESTAMP), x.view(np.uint64)).tobytes()


def encode_ints(values: np.ndarray) -> bytes:
    """Encode int64 field values (frame-of-reference, delta or delta-of-delta, whichever is smallest)."""
    x = _as_int64(values, "values")
    return K.encode_int_blob(int(CodecId.INT64), x.view(np.uint64)).tobytes()


def encode_floats(values: np.ndarray, codec: CodecId | None = None) -> bytes:
    """Encode float64 values losslessly; ``codec=None`` picks the smallest of RLE, ALP, Gorilla and raw."""
    v = _as_float64(values)
    if codec is None:
        return K.encode_adaptive(v).tobytes()
    cid = CodecId(codec)
    if cid not in FLOAT_CODECS:
        raise ValueError(f"{cid.name} is not a float codec")
    return K.encode_float_blob(int(cid), v).tobytes()


def encode_gorilla(values: np.ndarray) -> bytes:
    """Encode float64 values with Gorilla XOR compression."""
    return encode_floats(values, CodecId.GORILLA)


def _buf(blob: bytes | bytearray | memoryview) -> np.ndarray:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CorruptBlockError(f"expected a bytes blob, got {type(blob).__name__}")
    return np.frombuffer(blob, dtype=np.uint8)


def _decode(blob: bytes | bytearray | memoryview, mask: int, what: str) -> tuple[CodecId, np.ndarray]:
    data = _buf(blob)
    cid, n, _ = read_header(blob)
    if not (mask >> int(cid)) & 1:
        raise CorruptBlockError(f"blob holds codec {cid.name}, not {what}")
    out = np.empty(n, np.uint64)
    st = K.decode_blob(data, 0, data.shape[0], mask, out, out.view(np.float64), 0)
    if st != OK:
        raise CorruptBlockError(status_message(st))
    return cid, out


def codec_id(blob: bytes | bytearray | memoryview) -> CodecId:
    """The codec that encoded ``blob`` (from its first byte)."""
    return read_header(blob)[0]


def blob_count(blob: bytes | bytearray | memoryview) -> int:
    """The number of values ``blob`` claims to hold (validated against its size, not decoded)."""
    return read_header(blob)[1]


def decode_timestamps(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode a TIMESTAMP blob to int64 nanoseconds."""
    return _decode(blob, _MASK_TS, "timestamps")[1].view(np.int64)


def decode_ints(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode an INT64 blob to int64 values."""
    return _decode(blob, _MASK_INT, "int64 values")[1].view(np.int64)


def decode_floats(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode any float blob (Gorilla, raw, RLE, ALP) to float64, bit for bit."""
    return _decode(blob, K.MASK_FLOAT, "float values")[1].view(np.float64)


def decode_gorilla(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode a Gorilla blob to float64 (other codecs are rejected)."""
    return _decode(blob, _MASK_GORILLA, "Gorilla")[1].view(np.float64)


def decode_values(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode any blob: float64 for float codecs, int64 for INT64 and TIMESTAMP."""
    cid, out = _decode(blob, K.MASK_ANY, "values")
    return out.view(np.int64) if cid in INT_CODECS else out.view(np.float64)


def _arrow_layout(blobs: BlobsLike) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 data, int64 offsets)`` for any accepted batch form."""
    if isinstance(blobs, tuple) and len(blobs) == 2 and not isinstance(blobs[0], bytes | bytearray):
        data = np.frombuffer(blobs[0], dtype=np.uint8) if not isinstance(blobs[0], np.ndarray) else blobs[0]
        offsets = np.asarray(blobs[1])
        if data.dtype != np.uint8 or data.ndim != 1:
            data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if offsets.dtype.kind not in "iu" or offsets.ndim != 1 or offsets.shape[0] < 1:
            raise CorruptBlockError("offsets must be a non-empty one-dimensional integer array")
        return np.ascontiguousarray(data), np.ascontiguousarray(offsets, dtype=np.int64)
    if hasattr(blobs, "buffers") and hasattr(blobs, "offset"):  # pyarrow BinaryArray / LargeBinaryArray
        if getattr(blobs, "null_count", 0):
            raise CorruptBlockError("batch holds null blobs")
        bufs = blobs.buffers()
        large = "large" in str(getattr(blobs, "type", ""))
        off_all = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)
        offsets = off_all[blobs.offset : blobs.offset + len(blobs) + 1].astype(np.int64)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        return data, offsets
    items = list(blobs)
    for b in items:
        if not isinstance(b, bytes | bytearray | memoryview):
            raise CorruptBlockError(f"expected bytes blobs, got {type(b).__name__}")
    lengths = np.fromiter((len(b) for b in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(b"".join(items), dtype=np.uint8), offsets


#: Threads that encode or decode one batch (the calling thread plus pool helpers) and pieces per thread: small
#: pieces let a thread that runs sooner take over the work of one that waits for a core (the machine may be busy).
_CODEC_THREADS = max(1, min(os.cpu_count() or 1, 8))
_PIECES_PER_THREAD = 4
_CODEC_POOL: ThreadPoolExecutor | None = None
_CODEC_POOL_LOCK = threading.Lock()


def _codec_pool() -> ThreadPoolExecutor:
    global _CODEC_POOL
    with _CODEC_POOL_LOCK:
        if _CODEC_POOL is None:
            _CODEC_POOL = ThreadPoolExecutor(
                max_workers=max(1, _CODEC_THREADS - 1), thread_name_prefix="tsdb-lake-codec"
            )
        return _CODEC_POOL


def _in_pieces(starts: np.ndarray, run: Callable[[int, int], None]) -> None:
    """Call ``run(lo, hi)`` over chunk ranges of about equal value counts (``starts``: ``m + 1`` cumulative
    counts), claimed one by one by the calling thread and pool helpers (``run`` must release the GIL). The
    caller never waits for a helper that has not started: only for the ranges a helper has claimed."""
    m = starts.shape[0] - 1
    total = int(starts[m])
    parts = max(1, min(m, _CODEC_THREADS * _PIECES_PER_THREAD))
    cuts = np.searchsorted(starts, total * np.arange(1, parts, dtype=np.int64) // parts)
    bounds = sorted({0, m, *(min(max(int(c), 0), m) for c in cuts.tolist())})
    n = len(bounds) - 1
    claim = itertools.count()
    finished = threading.Semaphore(0)

    def work() -> None:
        while (i := next(claim)) < n:
            try:
                run(bounds[i], bounds[i + 1])
            finally:
                finished.release()

    pool = _codec_pool()
    for _ in range(min(_CODEC_THREADS - 1, n - 1)):
        pool.submit(work)
    work()
    for _ in range(n):
        finished.acquire()


def _decode_many(blobs: BlobsLike, mask: int, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    data, offsets = _arrow_layout(blobs)
    counts, st, bad = K.scan_counts(data, offsets, mask)
    if st != OK:
        raise CorruptBlockError(f"chunk {bad}: {status_message(st)}")
    starts = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    out = np.empty(int(starts[-1]), np.uint64)
    if parallel and counts.shape[0] > 1:
        status = np.zeros(counts.shape[0], np.int64)
        outf = out.view(np.float64)
        _in_pieces(
            starts,
            lambda lo, hi: K.decode_many_range(data, offsets, starts, mask, out, outf, status, lo, hi),
        )
    else:
        status = K.decode_many_serial(data, offsets, starts, mask, out, out.view(np.float64))
    bad_idx = np.flatnonzero(status)
    if bad_idx.size:
        i = int(bad_idx[0])
        raise CorruptBlockError(f"chunk {i}: {status_message(int(status[i]))}")
    return out, counts


def decode_timestamps_many(blobs: BlobsLike, *, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode many TIMESTAMP blobs in one call: ``(concatenated int64 values, per-chunk counts)``."""
    out, counts = _decode_many(blobs, _MASK_TS, parallel)
    return out.view(np.int64), counts


def decode_floats_many(blobs: BlobsLike, *, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode many float blobs (any float codec per chunk) in one call: ``(float64 values, counts)``."""
    out, counts = _decode_many(blobs, K.MASK_FLOAT, parallel)
    return out.view(np.float64), counts


def reduce_floats_many(
    blobs: BlobsLike, *, parallel: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per float blob, without keeping the values: ``(counts, sums, minimums, maximums)``.

    Sums follow IEEE arithmetic (a NaN makes them NaN; summation order is unspecified); minimum / maximum
    skip NaN unless every value is NaN, and are NaN for an empty blob.
    """
    data, offsets = _arrow_layout(blobs)
    counts, st, bad = K.scan_counts(data, offsets, K.MASK_FLOAT)
    if st != OK:
        raise CorruptBlockError(f"chunk {bad}: {status_message(st)}")
    m = counts.shape[0]
    sums = np.empty(m, np.float64)
    mins = np.empty(m, np.float64)
    maxs = np.empty(m, np.float64)
    status = np.zeros(m, np.int64)

    def run(lo: int, hi: int) -> None:
        K.reduce_many_range(data, offsets, counts, K.MASK_FLOAT, sums, mins, maxs, status, lo, hi)

    if parallel and m > 1:
        starts = np.zeros(m + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        _in_pieces(starts, run)
    else:
        run(0, m)
    bad_idx = np.flatnonzero(status)
    if bad_idx.size:
        i = int(bad_idx[0])
        raise CorruptBlockError(f"chunk {i}: {status_message(int(status[i]))}")
    return counts, sums, mins, maxs
