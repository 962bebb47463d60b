"""Batch encoders: many chunks of one column in a single numba call, in parallel over chunks.

Input is one value array plus ``m + 1`` chunk offsets (chunk ``i`` is ``values[offsets[i]:offsets[i+1]]``);
output is the Arrow binary layout ``(uint8 data, int64 blob offsets)``: blob ``i`` is
``data[blob_offsets[i]:blob_offsets[i+1]]`` and is byte for byte what the single-blob encoder of
:mod:`tsdb_lake.codecs.api` returns for that chunk. Each chunk is encoded into its own scratch region
(sized by the codec's upper bound) by a GIL-free numba kernel — over a few threads, each taking a range of
chunks, for large batches — then the blobs are compacted into one buffer.

For a ``pyarrow`` column: ``pa.Array.from_buffers(pa.large_binary(), m, [None, pa.py_buffer(offsets),
pa.py_buffer(data)])``, or ``pa.binary()`` with ``offsets.astype(np.int32)`` while ``data`` stays under
2 GiB (both write the same Parquet ``BYTE_ARRAY`` column).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs import kernels as K
from tsdb_lake.codecs.api import _MASK_INT, BlobsLike, _as_float64, _as_int64, _decode_many, _in_pieces
from tsdb_lake.codecs.ids import FLOAT_CODECS, CodecId

__all__ = [
    "decode_ints_many",
    "encode_floats_many",
    "encode_ints_many",
    "encode_timestamps_many",
]

#: Below this many values a batch is encoded on the calling thread (thread start-up would dominate).
PARALLEL_MIN_VALUES = 20_000
_ADAPTIVE = 0


@njit(cache=True)
def _chunk_words(codec: int, u: np.ndarray, s: int, e: int) -> tuple[np.ndarray, int]:
    """Encode chunk ``u[s:e]`` (uint64 words of the values): ``(words, end bit position)``."""
    x = u[s:e]
    if codec == K.C_TIMESTAMP or codec == K.C_INT64:
        return K.int_words(codec, x)
    if codec == _ADAPTIVE:
        return K.adaptive_words(x.view(np.float64))
    return K.float_words(codec, x.view(np.float64))


@njit(cache=True)
def _scratch_layout(codec: int, offsets: np.ndarray) -> np.ndarray:
    """Start of each chunk's scratch region (bytes), from the codec's size bound; ``m + 1`` entries."""
    m = offsets.shape[0] - 1
    starts = np.zeros(m + 1, np.int64)
    for i in range(m):
        n = int(offsets[i + 1] - offsets[i])
        starts[i + 1] = starts[i] + (K.blob_max_bits(codec, n) + 7) // 8 + 1
    return starts


@njit(cache=True, nogil=True)
def encode_range(
    codec: int,
    u: np.ndarray,
    offsets: np.ndarray,
    scratch: np.ndarray,
    starts: np.ndarray,
    lens: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """Encode chunks ``lo..hi-1`` into their scratch regions ``scratch[starts[i]:]``, lengths into ``lens``.

    Releases the GIL, so disjoint chunk ranges can run on several threads at once.
    """
    for i in range(lo, hi):
        words, pos = _chunk_words(codec, u, int(offsets[i]), int(offsets[i + 1]))
        nb = (pos + 7) >> 3
        src = words.view(np.uint8)
        base = starts[i]
        for j in range(nb):
            scratch[base + j] = src[j]
        lens[i] = nb


@njit(cache=True)
def compact(scratch: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the scratch regions into ``(data, int64 offsets)``."""
    m = lens.shape[0]
    out_off = np.zeros(m + 1, np.int64)
    for i in range(m):
        out_off[i + 1] = out_off[i] + lens[i]
    data = np.empty(out_off[m], np.uint8)
    for i in range(m):
        data[out_off[i] : out_off[i + 1]] = scratch[starts[i] : starts[i] + lens[i]]
    return data, out_off


def _offsets(offsets: np.ndarray, n: int) -> np.ndarray:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.shape[0] < 1 or off.dtype.kind not in "iu":
        raise ValueError("offsets must be a non-empty one-dimensional integer array")
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] < 0 or off[-1] > n or bool(np.any(off[1:] < off[:-1])):
        raise ValueError(f"offsets must be non-decreasing within [0, {n}]")
    return off


def _run(codec: int, u: np.ndarray, offsets: np.ndarray, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    off = _offsets(offsets, u.shape[0])
    m = off.shape[0] - 1
    starts = _scratch_layout(codec, off)
    scratch = np.empty(int(starts[-1]), np.uint8)
    lens = np.zeros(m, np.int64)
    span = int(off[-1] - off[0])
    # in parallel: chunk ranges claimed by the caller and pool threads
    if parallel and m > 1 and span >= PARALLEL_MIN_VALUES:
        _in_pieces(off - off[0], lambda lo, hi: encode_range(codec, u, off, scratch, starts, lens, lo, hi))
    else:
        encode_range(codec, u, off, scratch, starts, lens, 0, m)
    return compact(scratch, starts, lens)  # type: ignore[no-any-return]


def encode_timestamps_many(
    values: np.ndarray, offsets: np.ndarray, *, parallel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """TIMESTAMP blobs of every chunk ``values[offsets[i]:offsets[i+1]]``: ``(uint8 data, int64 offsets)``."""
    x = _as_int64(values, "timestamps")
    return _run(int(CodecId.TIMESTAMP), x.view(np.uint64), offsets, parallel)


def encode_ints_many(
    values: np.ndarray, offsets: np.ndarray, *, parallel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """INT64 blobs of every chunk ``values[offsets[i]:offsets[i+1]]``: ``(uint8 data, int64 offsets)``."""
    x = _as_int64(values, "values")
    return _run(int(CodecId.INT64), x.view(np.uint64), offsets, parallel)


def encode_floats_many(
    values: np.ndarray, offsets: np.ndarray, codec: CodecId | None = None, *, parallel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Float blobs of every chunk (adaptive per chunk when ``codec`` is None): ``(uint8 data, int64 offsets)``."""
    v = _as_float64(values)
    if codec is None:
        cid = _ADAPTIVE
    else:
        c = CodecId(codec)
        if c not in FLOAT_CODECS:
            raise ValueError(f"{c.name} is not a float codec")
        cid = int(c)
    return _run(cid, v.view(np.uint64), offsets, parallel)


def decode_ints_many(blobs: BlobsLike, *, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode many INT64 blobs in one call: ``(concatenated int64 values, per-chunk counts)``."""
    out, counts = _decode_many(blobs, _MASK_INT, parallel)
    return out.view(np.int64), counts
