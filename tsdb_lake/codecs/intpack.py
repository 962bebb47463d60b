"""Integer bit packing: PFOR blocks and the int64 stream (frame-of-reference, delta, delta-of-delta).

PFOR blocks (``BLOCK`` = 128 unsigned values each, the last one shorter) pack every value in ``w`` bits and
patch the few that need more as exceptions (position + high bits), so one outlier does not widen a block.
An all-zero block costs a single bit. The int64 stream transforms signed integers (in uint64 two's
complement, all arithmetic wrapping) into small unsigned values first. Layouts: ``catalog/CODECS.md``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.bits import (
    ALL_ONES,
    E_BAD_FIELD,
    E_TRUNCATED,
    OK,
    bitlen,
    get,
    get_varint,
    put,
    put_varint,
    unzigzag,
    varint_bits,
    zigzag,
)

__all__ = [
    "BLOCK",
    "MODE_DELTA",
    "MODE_DOD",
    "MODE_FOR",
    "ints_decode",
    "ints_encode",
    "ints_max_bits",
    "ints_plan",
    "ints_write",
    "kth_smallest",
    "kth_smallest_ws",
    "pfor_add_zigzag",
    "pfor_read",
    "pfor_stream_cost",
    "pfor_write",
]

U64 = np.uint64
BLOCK = 128
MODE_FOR = 0
MODE_DELTA = 1
MODE_DOD = 2


_COUNT_SPAN = 1024  # kth_smallest counts values when their range is at most this wide


@njit(cache=True)
def kth_smallest(x: np.ndarray, k: int) -> np.int64:
    """The ``k``-th smallest (0-based) of int64 values ``x`` (``0 <= k < len(x)``), leaving ``x`` unchanged.

    Counts values when their range is narrow (the usual case for deltas), else falls back to ``np.partition``.
    """
    return kth_smallest_ws(x, k, np.empty(_COUNT_SPAN, np.int64))


@njit(cache=True)
def kth_smallest_ws(x: np.ndarray, k: int, cnt: np.ndarray) -> np.int64:
    """:func:`kth_smallest` with a caller's work array ``cnt`` of at least ``_COUNT_SPAN`` int64 entries."""
    lo = x[0]
    hi = x[0]
    for i in range(1, x.shape[0]):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    if U64(hi) - U64(lo) < U64(_COUNT_SPAN):
        span = int(hi - lo) + 1
        for j in range(span):
            cnt[j] = 0
        for i in range(x.shape[0]):
            cnt[x[i] - lo] += 1
        acc = 0
        for j in range(span):
            acc += cnt[j]
            if acc > k:
                return lo + j
    return np.partition(x, k)[k]


@njit(cache=True, inline="always")
def _block_choice(u: np.ndarray, s: int, n: int) -> tuple[int, int, int]:
    """Cheapest layout of block ``u[s:s+n]``: ``(cost in bits, width w or -1 for all-zero, max bit length)``.

    Ties go to the larger ``w``. Counts of values wider than ``w`` come from vectorised passes that each count four widths at once, ``w`` descending; the scan
    stops once even an ideal smaller ``w`` (``22 + above · (7 + maxlen)`` bits) cannot beat the best.
    """
    acc = U64(0)
    for i in range(s, s + n):
        acc |= u[i]
    if acc == U64(0):
        return 1, -1, 0
    maxlen = bitlen(acc)
    best = 16 + n * maxlen
    bw = maxlen
    top = maxlen - 1
    while top >= 0:
        s0 = U64(top)
        s1 = U64(max(top - 1, 0))
        s2 = U64(max(top - 2, 0))
        s3 = U64(max(top - 3, 0))
        a0 = 0  # values longer than top, top - 1, top - 2, top - 3
        a1 = 0
        a2 = 0
        a3 = 0
        for i in range(s, s + n):
            x = u[i]
            a0 += 1 if (x >> s0) != U64(0) else 0
            a1 += 1 if (x >> s1) != U64(0) else 0
            a2 += 1 if (x >> s2) != U64(0) else 0
            a3 += 1 if (x >> s3) != U64(0) else 0
        for j in range(4):
            w = top - j
            if w < 0:
                return best, bw, maxlen
            above = a0 if j == 0 else (a1 if j == 1 else (a2 if j == 2 else a3))
            cost = 22 + n * w + above * (7 + maxlen - w)
            if cost < best:
                best = cost
                bw = w
            if 22 + above * (7 + maxlen) >= best:
                return best, bw, maxlen
        top -= 4
    return best, bw, maxlen


@njit(cache=True)
def pfor_stream_cost(u: np.ndarray) -> int:
    """Bits :func:`pfor_write` would use for all of ``u``."""
    total = 0
    m = u.shape[0]
    for s in range(0, m, BLOCK):
        c, _, _ = _block_choice(u, s, min(BLOCK, m - s))
        total += c
    return total


@njit(cache=True)
def _pack(words: np.ndarray, pos: int, u: np.ndarray, s: int, n: int, w: int) -> int:
    """Append the low ``w`` (1..64) bits of ``u[s:s+n]`` at ``pos``, keeping the current word in a register.

    Same bits as ``n`` calls of :func:`put`; the words at and after ``pos`` must be zero beyond ``pos``.
    """
    mask = ALL_ONES >> U64(64 - w)
    wi = pos >> 6
    off = pos & 63
    acc = words[wi]
    for i in range(s, s + n):
        v = u[i] & mask
        acc |= v << U64(off)
        off += w
        if off >= 64:
            words[wi] = acc
            wi += 1
            off -= 64
            acc = v >> U64(w - off) if off > 0 else U64(0)
    words[wi] = acc
    return pos + n * w


@njit(cache=True)
def pfor_write(words: np.ndarray, pos: int, u: np.ndarray) -> int:
    """Append ``u`` (uint64) as PFOR blocks; return the new bit position."""
    m = u.shape[0]
    for s in range(0, m, BLOCK):
        n = min(BLOCK, m - s)
        _, w, maxlen = _block_choice(u, s, n)
        if w < 0:
            pos = put(words, pos, U64(1), 1)
            continue
        nexc = 0
        for i in range(s, s + n):
            if bitlen(u[i]) > w:
                nexc += 1
        pos = put(words, pos, U64(0), 1)
        pos = put(words, pos, U64(w), 7)
        pos = put(words, pos, U64(nexc), 8)
        ew = maxlen - w
        if nexc > 0:
            pos = put(words, pos, U64(ew - 1), 6)
        if w > 0:
            pos = _pack(words, pos, u, s, n, w)
        if nexc > 0:
            for i in range(s, s + n):
                if bitlen(u[i]) > w:
                    pos = put(words, pos, U64(i - s), 7)
                    pos = put(words, pos, u[i] >> U64(w), ew)
    return pos


@njit(cache=True)
def _unpack(words: np.ndarray, pos: int, n: int, w: int, out: np.ndarray, o: int) -> None:
    """Unpack ``n`` fields of ``w`` (1..64) bits from ``pos`` into ``out[o:o+n]`` (bounds checked by caller).

    Streams through the words keeping the current one in a register; may load one word past the data,
    which the reader's padding covers.
    """
    mask = ALL_ONES >> U64(64 - w)
    wi = pos >> 6
    off = pos & 63
    cur = words[wi]
    for i in range(n):
        v = cur >> U64(off)
        off += w
        if off >= 64:
            wi += 1
            cur = words[wi]
            off -= 64
            if off > 0:
                v |= cur << U64(w - off)
        out[o + i] = v & mask


@njit(cache=True)
def _block_header(words: np.ndarray, pos: int, total: int, n: int) -> tuple[int, int, int, int, int]:
    """Read a non-zero block header after its zero flag: ``(pos, w, nexc, ew, status)``, validating it."""
    if pos + 15 > total:
        return pos, 0, 0, 0, E_TRUNCATED
    w = int(np.int64(get(words, pos, 7)))
    nexc = int(np.int64(get(words, pos + 7, 8)))
    pos += 15
    if w > 64 or nexc > n:
        return pos, 0, 0, 0, E_BAD_FIELD
    ew = 0
    if nexc > 0:
        if pos + 6 > total:
            return pos, 0, 0, 0, E_TRUNCATED
        ew = int(np.int64(get(words, pos, 6))) + 1
        pos += 6
        if w + ew > 64:
            return pos, 0, 0, 0, E_BAD_FIELD
    if pos + n * w + nexc * (7 + ew) > total:
        return pos, 0, 0, 0, E_TRUNCATED
    return pos, w, nexc, ew, OK


@njit(cache=True)
def pfor_read(words: np.ndarray, pos: int, total: int, m: int, out: np.ndarray, o: int) -> tuple[int, int]:
    """Decode ``m`` PFOR-packed values into ``out[o:o+m]``: ``(new pos, status)``."""
    for s in range(0, m, BLOCK):
        n = min(BLOCK, m - s)
        if pos + 1 > total:
            return pos, E_TRUNCATED
        z = get(words, pos, 1)
        pos += 1
        if z == U64(1):
            for i in range(n):
                out[o + s + i] = U64(0)
            continue
        pos, w, nexc, ew, st = _block_header(words, pos, total, n)
        if st != OK:
            return pos, st
        if w == 0:
            for i in range(n):
                out[o + s + i] = U64(0)
        else:
            _unpack(words, pos, n, w, out, o + s)
            pos += n * w
        for _ in range(nexc):
            p = int(np.int64(get(words, pos, 7)))
            h = get(words, pos + 7, ew)
            pos += 7 + ew
            if p >= n:
                return pos, E_BAD_FIELD
            out[o + s + p] |= h << U64(w)
    return pos, OK


@njit(cache=True)
def pfor_add_zigzag(
    words: np.ndarray, pos: int, total: int, m: int, out: np.ndarray, o: int
) -> tuple[int, int]:
    """Decode ``m`` PFOR values and add their un-zigzagged value to ``out[o+i]`` (wrapping); zero blocks skip."""
    tmp = np.empty(BLOCK, np.uint64)
    for s in range(0, m, BLOCK):
        n = min(BLOCK, m - s)
        if pos + 1 > total:
            return pos, E_TRUNCATED
        z = get(words, pos, 1)
        pos += 1
        if z == U64(1):
            continue
        pos, w, nexc, ew, st = _block_header(words, pos, total, n)
        if st != OK:
            return pos, st
        if w == 0:
            for i in range(n):
                tmp[i] = U64(0)
        else:
            _unpack(words, pos, n, w, tmp, 0)
            pos += n * w
        for _ in range(nexc):
            p = int(np.int64(get(words, pos, 7)))
            h = get(words, pos + 7, ew)
            pos += 7 + ew
            if p >= n:
                return pos, E_BAD_FIELD
            tmp[p] |= h << U64(w)
        for i in range(n):
            out[o + s + i] += unzigzag(tmp[i])
    return pos, OK


@njit(cache=True)
def ints_max_bits(n: int) -> int:
    """Upper bound of the bits :func:`ints_encode` writes for ``n`` values."""
    return 64 * n + 22 * (n // BLOCK + 1) + 256


@njit(cache=True)
def _zero_blocks(m: int) -> int:
    """Bits of ``PFOR(m)`` when every block is all zero (the least any PFOR stream of ``m`` values costs)."""
    return (m + BLOCK - 1) // BLOCK


@njit(cache=True)
def ints_plan(x: np.ndarray, allow_for: bool) -> tuple[int, int, np.ndarray, np.uint64]:
    """The mode :func:`ints_encode` picks for ``x`` (``n >= 1``): ``(mode, exact bits, PFOR values, parameter)``.

    Exact sizes decide (ties: DOD, DELTA, FOR); a mode is skipped only when a lower bound of its size
    (header plus all-zero blocks) already cannot beat the best so far, so the choice is that of a full search.
    """
    n = x.shape[0]
    best_mode = -1
    best_cost = 1 << 62
    param = U64(0)
    # one work buffer: the DOD, DELTA and FOR values side by side (the winner's is returned as a view)
    work = np.empty(3 * n + _COUNT_SPAN, np.uint64)
    u_best = work[:0]
    # delta-of-delta first, so it wins ties (regular timestamps)
    if n >= 2:
        d0 = x[1] - x[0]
        u = work[: n - 2]
        for i in range(n - 2):  # no loop-carried state and non-negative indices: this loop vectorises
            u[i] = zigzag((x[i + 2] - x[i + 1]) - (x[i + 1] - x[i]))
        cost = 8 + 64 + varint_bits(zigzag(d0)) + pfor_stream_cost(u)
        if cost < best_cost:
            best_cost, best_mode, u_best, param = cost, MODE_DOD, u, d0
    # delta around the (lower) median delta; its size is at least header + varint + all-zero blocks
    if best_cost > 8 + 64 + 8 + _zero_blocks(n - 1):
        u = work[n : 2 * n - 1]
        base = U64(0)
        if n >= 2:
            for i in range(n - 1):
                u[i] = x[i + 1] - x[i]
            base = U64(kth_smallest_ws(u.view(np.int64), (n - 1) // 2, work[3 * n :].view(np.int64)))
        for i in range(n - 1):
            u[i] = zigzag(u[i] - base)
        cost = 8 + 64 + varint_bits(zigzag(base)) + pfor_stream_cost(u)
        if cost < best_cost:
            best_cost, best_mode, u_best, param = cost, MODE_DELTA, u, base
    if allow_for and best_cost > 8 + 64 + _zero_blocks(n):
        mn = np.int64(x[0])
        for i in range(n):
            mn = min(mn, np.int64(x[i]))
        umn = U64(mn)
        u = work[2 * n : 3 * n]
        for i in range(n):
            u[i] = x[i] - umn
        cost = 8 + 64 + pfor_stream_cost(u)
        if cost < best_cost:
            best_cost, best_mode, u_best, param = cost, MODE_FOR, u, umn
    return best_mode, best_cost, u_best, param


@njit(cache=True)
def ints_encode(words: np.ndarray, pos: int, x: np.ndarray, allow_for: bool) -> int:
    """Append int64 values ``x`` (as uint64) as an int stream, choosing the smallest mode (:func:`ints_plan`)."""
    if x.shape[0] == 0:
        return pos
    best_mode, _, u_best, param = ints_plan(x, allow_for)
    return ints_write(words, pos, x, best_mode, u_best, param)


@njit(cache=True)
def ints_write(
    words: np.ndarray, pos: int, x: np.ndarray, best_mode: int, u_best: np.ndarray, param: np.uint64
) -> int:
    """Append the int stream of ``x`` for a plan of :func:`ints_plan`; return the new position."""
    pos = put(words, pos, U64(best_mode), 8)
    if best_mode == MODE_FOR:
        pos = put(words, pos, param, 64)
    else:
        pos = put(words, pos, x[0], 64)
        pos = put_varint(words, pos, zigzag(param))
    return pfor_write(words, pos, u_best)


@njit(cache=True)
def ints_decode(words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, o: int) -> tuple[int, int]:
    """Decode an int stream of ``n`` values into ``out[o:o+n]`` (uint64 two's complement): ``(pos, status)``."""
    if n == 0:
        return pos, OK
    if pos + 72 > total:
        return pos, E_TRUNCATED
    mode = int(np.int64(get(words, pos, 8)))
    first = get(words, pos + 8, 64)
    pos += 72
    if mode == MODE_FOR:
        pos, st = pfor_read(words, pos, total, n, out, o)
        if st != OK:
            return pos, st
        for i in range(o, o + n):
            out[i] += first
        return pos, OK
    if mode != MODE_DELTA and mode != MODE_DOD:
        return pos, E_BAD_FIELD
    if mode == MODE_DOD and n < 2:
        return pos, E_BAD_FIELD
    zp, pos, st = get_varint(words, pos, total)
    if st != OK:
        return pos, st
    param = unzigzag(zp)
    out[o] = first
    if mode == MODE_DELTA:
        pos, st = pfor_read(words, pos, total, n - 1, out, o + 1)
        if st != OK:
            return pos, st
        acc = first
        for i in range(o + 1, o + n):
            acc += param + unzigzag(out[i])
            out[i] = acc
        return pos, OK
    acc = first + param
    out[o + 1] = acc
    pos, st = pfor_read(words, pos, total, n - 2, out, o + 2)
    if st != OK:
        return pos, st
    d = param
    for i in range(o + 2, o + n):
        d += unzigzag(out[i])
        acc += d
        out[i] = acc
    return pos, OK
