"""Gorilla XOR compression of float64 values, exactly as in the VLDB 2015 paper (section 4.1.2).

The first value is stored as 64 raw bits. Every later value is XORed with its predecessor:
``'0'`` if the XOR is zero; ``'10'`` + meaningful bits if they fit the previous window (at least as many
leading and trailing zeros); otherwise ``'11'`` + 5 bits leading zeros (capped at 31) + 6 bits meaningful
length (64 written as 0) + the meaningful bits, which opens a new window. Bit order: ``catalog/CODECS.md``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.bits import ALL_ONES, E_BAD_FIELD, E_TRUNCATED, OK, clz, ctz, get, put

__all__ = ["gorilla_bits", "gorilla_decode", "gorilla_encode", "gorilla_max_bits"]

U64 = np.uint64


@njit(cache=True)
def gorilla_max_bits(n: int) -> int:
    """Upper bound of the bits :func:`gorilla_encode` writes for ``n`` values."""
    return 64 + 77 * n


@njit(cache=True)
def gorilla_bits(bits: np.ndarray, limit: int) -> int:
    """Exact bits :func:`gorilla_encode` would write for ``bits``, or a value >= ``limit`` once it reaches it.

    A write-free pass for the adaptive choice: it stops as soon as Gorilla can no longer beat ``limit``.
    """
    n = bits.shape[0]
    if n == 0:
        return 0
    prev = bits[0]
    total = 64
    lead = -1
    trail = 0
    for i in range(1, n):
        cur = bits[i]
        x = cur ^ prev
        prev = cur
        if x == U64(0):
            total += 1
            continue
        lz = clz(x)
        tz = ctz(x)
        if lz > 31:
            lz = 31
        if lead >= 0 and lz >= lead and tz >= trail:
            total += 66 - lead - trail
        else:
            total += 77 - lz - tz
            lead = lz
            trail = tz
        if total >= limit:
            return total
    return total


@njit(cache=True)
def gorilla_encode(words: np.ndarray, pos: int, bits: np.ndarray) -> int:
    """Append the Gorilla stream of ``bits`` (float64 bit patterns as uint64); return the new position."""
    n = bits.shape[0]
    if n == 0:
        return pos
    prev = bits[0]
    pos = put(words, pos, prev, 64)
    lead = -1  # no window yet
    trail = 0
    for i in range(1, n):
        cur = bits[i]
        x = cur ^ prev
        prev = cur
        if x == U64(0):
            pos = put(words, pos, U64(0), 1)
            continue
        lz = clz(x)
        tz = ctz(x)
        if lz > 31:
            lz = 31
        if lead >= 0 and lz >= lead and tz >= trail:
            pos = put(words, pos, U64(1), 2)  # bits '1','0'
            pos = put(words, pos, x >> U64(trail), 64 - lead - trail)
        else:
            sig = 64 - lz - tz
            pos = put(words, pos, U64(3), 2)  # bits '1','1'
            pos = put(words, pos, U64(lz), 5)
            pos = put(words, pos, U64(sig & 63), 6)
            pos = put(words, pos, x >> U64(tz), sig)
            lead = lz
            trail = tz
    return pos


@njit(cache=True)
def gorilla_decode(
    words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, o: int
) -> tuple[int, int]:
    """Decode ``n`` Gorilla values into ``out[o:o+n]`` (uint64 bit patterns): ``(new pos, status)``."""
    if n == 0:
        return pos, OK
    if pos + 64 > total:
        return pos, E_TRUNCATED
    v = get(words, pos, 64)
    pos += 64
    out[o] = v
    trail = -1
    sig = 0
    smask = U64(0)
    for i in range(o + 1, o + n):
        if pos >= total:
            return pos, E_TRUNCATED
        wi = pos >> 6
        off = pos & 63
        peek = words[wi] >> U64(off)
        if off > 0:
            peek |= words[wi + 1] << U64(64 - off)
        if (peek & U64(1)) == U64(0):
            pos += 1
        elif (peek & U64(2)) == U64(0):
            if trail < 0:
                return pos, E_BAD_FIELD
            m = (peek >> U64(2)) & smask if sig <= 62 else get(words, pos + 2, sig)
            v ^= m << U64(trail)
            pos += 2 + sig
        else:
            lz = int(np.int64((peek >> U64(2)) & U64(31)))
            sig = int(np.int64((peek >> U64(7)) & U64(63)))
            if sig == 0:
                sig = 64
            if lz + sig > 64:
                return pos, E_BAD_FIELD
            trail = 64 - lz - sig
            smask = ALL_ONES >> U64(64 - sig)
            m = (peek >> U64(13)) & smask if sig <= 51 else get(words, pos + 13, sig)
            v ^= m << U64(trail)
            pos += 13 + sig
        out[i] = v
    if pos > total:
        return pos, E_TRUNCATED
    return pos, OK
