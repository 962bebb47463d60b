"""Numba kernels of the raw-file write side: chunk bounds, null compaction, validity bitmaps, codec tallies.

Each kernel makes one pass over a column (values plus ``m + 1`` chunk offsets, chunk ``i`` is
``values[offsets[i]:offsets[i+1]]``) where the numpy version needed several.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["chunk_starts", "codec_tally", "compact_valid", "validity_bitmaps"]


@njit(cache=True)
def chunk_starts(series: np.ndarray, max_points: int) -> np.ndarray:
    """Start offsets of chunks: a new chunk at each series change and every ``max_points`` within a series."""
    n = series.shape[0]
    out = np.empty(n, np.int64)
    m = 0
    run = 0
    for i in range(n):
        if i == 0 or series[i] != series[i - 1] or run == max_points:
            out[m] = i
            m += 1
            run = 0
        run += 1
    return out[:m].copy()


@njit(cache=True)
def compact_valid(
    values: np.ndarray, valid: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(the valid values in order, their chunk offsets)`` for a column with a null mask (``valid`` False)."""
    n = values.shape[0]
    m = offsets.shape[0] - 1
    out = np.empty(n, values.dtype)
    voff = np.zeros(m + 1, np.int64)
    k = 0
    for i in range(m):
        for j in range(offsets[i], offsets[i + 1]):
            if valid[j]:
                out[k] = values[j]
                k += 1
        voff[i + 1] = k
    return out[:k], voff


@njit(cache=True)
def validity_bitmaps(
    valid: np.ndarray, offsets: np.ndarray, partial: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LSB-first validity bitmaps of the chunks where ``partial`` holds, as ``(uint8 data, int64 offsets)``
    over all chunks (an empty blob where ``partial`` is False)."""
    m = offsets.shape[0] - 1
    boff = np.zeros(m + 1, np.int64)
    for i in range(m):
        nbytes = (offsets[i + 1] - offsets[i] + 7) // 8 if partial[i] else 0
        boff[i + 1] = boff[i] + nbytes
    data = np.zeros(boff[m], np.uint8)
    for i in range(m):
        if not partial[i]:
            continue
        base = boff[i] * 8
        s = offsets[i]
        for j in range(s, offsets[i + 1]):
            if valid[j]:
                bit = base + j - s
                data[bit >> 3] |= np.uint8(1 << (bit & 7))
    return data, boff


@njit(cache=True)
def codec_tally(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """How many non-empty blobs (where ``valid`` holds) start with each byte value (256 counts)."""
    totals = np.zeros(256, np.int64)
    for i in range(offsets.shape[0] - 1):
        if valid[i] and offsets[i + 1] > offsets[i]:
            totals[data[offsets[i]]] += 1
    return totals
