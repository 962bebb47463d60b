"""Exact grouping of rows by their label values, straight over Arrow string buffers (numba, no copies to polars).

A sealed partition needs, per point, which series it belongs to. Rows are hashed over their label bytes into
an open-addressing table whose entries are compared byte for byte, so equal rows always share a group and
distinct rows never do (a hash collision only costs a comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

__all__ = ["group_rows"]

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_S31 = np.uint64(31)
_S8 = np.uint64(8)


@njit(cache=True, inline="always")
def _mix(h: np.uint64, w: np.uint64) -> np.uint64:
    h = (h ^ w) * _K2
    return h ^ (h >> _S31)


@njit(cache=True, inline="always")
def _load(words: np.ndarray, j: int, nbytes: int) -> np.uint64:
    """Bytes ``j .. j + nbytes - 1`` (1 <= nbytes <= 8) of the little-endian word buffer, zero-extended."""
    q = j >> 3
    r = np.uint64(j & 7)
    w = words[q] >> (_S8 * r)
    if r != 0:
        w |= words[q + 1] << (np.uint64(64) - _S8 * r)
    if nbytes < 8:
        w &= (np.uint64(1) << (_S8 * np.uint64(nbytes))) - np.uint64(1)
    return w


@njit(cache=True)
def _row_hash(words: np.ndarray, offs: np.ndarray, valid: np.ndarray, i: int) -> np.uint64:
    h = _K1
    for c in range(offs.shape[1]):
        if valid[i, c]:
            s = offs[i, c]
            e = offs[i + 1, c]
            h = _mix(h, np.uint64(e - s + 1))
            j = s
            while j < e:
                h = _mix(h, _load(words, j, min(8, e - j)))
                j += 8
        else:
            h = _mix(h, np.uint64(0))
    return h


@njit(cache=True, inline="always")
def _rows_equal(data: np.ndarray, offs: np.ndarray, valid: np.ndarray, a: int, b: int) -> bool:
    for c in range(offs.shape[1]):
        if valid[a, c] != valid[b, c]:
            return False
        if not valid[a, c]:
            continue
        sa, sb = offs[a, c], offs[b, c]
        n = offs[a + 1, c] - sa
        if offs[b + 1, c] - sb != n:
            return False
        for k in range(n):
            if data[sa + k] != data[sb + k]:
                return False
    return True


@njit(cache=True, nogil=True)
def _group(
    data: np.ndarray, words: np.ndarray, offs: np.ndarray, valid: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each row, first row of each group)``; groups are numbered in order of first appearance.

    ``data``: the concatenated string bytes; ``words``: the same bytes
    zero-padded by at least 8, viewed as uint64 (hashing reads whole words); offsets and validity row-major.
    """
    cap = 1024
    table = np.full(cap, -1, np.int64)
    groups = np.empty(n, np.int64)
    reps = np.empty(max(n, 1), np.int64)
    hashes = np.empty(max(n, 1), np.uint64)
    ng = 0
    for i in range(n):
        h = _row_hash(words, offs, valid, i)
        mask = np.uint64(cap - 1)
        slot = h & mask
        while True:
            g = table[slot]
            if g < 0:
                table[slot] = ng
                reps[ng] = i
                hashes[ng] = h
                groups[i] = ng
                ng += 1
                break
            if hashes[g] == h and _rows_equal(data, offs, valid, reps[g], i):
                groups[i] = g
                break
            slot = (slot + np.uint64(1)) & mask
        if 2 * ng > cap:  # grow: re-insert every group by its stored hash
            cap *= 4
            table = np.full(cap, -1, np.int64)
            mask = np.uint64(cap - 1)
            for g in range(ng):
                slot = hashes[g] & mask
                while table[slot] >= 0:
                    slot = (slot + np.uint64(1)) & mask
                table[slot] = g
    return groups, reps[:ng].copy()


def _string_parts(col: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(int64 offsets (n + 1), uint8 data, uint8 validity)`` of a string column."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    _, off_buf, data_buf = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = np.asarray(arr.is_valid(), dtype=np.uint8) if arr.null_count else np.ones(n, np.uint8)
    return offsets, data, valid


def group_rows(columns: Sequence[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ``n`` rows by the values of string ``columns`` (Arrow arrays, null = its own value).

    Returns ``(group id of each row, index of the first row of each group)``, groups numbered in order of
    first appearance. Exact: rows share a group if and only if all their values are equal.
    """
    if not columns:
        return np.zeros(n, np.int64), np.zeros(1 if n else 0, np.int64)
    offs = np.empty((n + 1, len(columns)), np.int64)  # row-major: a row's values sit together
    valid = np.empty((n, len(columns)), np.uint8)
    datas = []
    base = 0
    for c, col in enumerate(columns):
        o, d, v = _string_parts(col, n)
        offs[:, c] = o + (base - o[0])
        valid[:, c] = v
        datas.append(d[int(o[0]) : int(o[-1])])
        base += int(o[-1] - o[0])
    size = sum(len(d) for d in datas)
    padded = np.zeros((size + 16 + 7) // 8 * 8, np.uint8)
    if size:
        np.concatenate(datas, out=padded[:size])
    return _group(padded[:size], padded.view(np.uint64), offs, valid, n)  # type: ignore[no-any-return]
