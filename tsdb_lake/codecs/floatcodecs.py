"""Float64 codec bodies besides Gorilla: raw, run-length, and decimal-scaled integers (ALP style).

ALP here: pick exponents ``e`` (divide) or ``f`` (multiply) so that ``v == float(d) * 10^f / 10^e`` for an
integer ``d`` (IEEE division is exact-rounded, so every float parsed from a decimal with at most ``e`` digits
after the point round-trips). ``d`` goes through the int stream; every value that does not round-trip gets a
correction: the zigzagged difference of its bit pattern from the decoded one, stored as PFOR blocks over all
positions (all-zero blocks cost one bit). Near-miss values (one ulp off) therefore cost a few bits, and
NaN payloads, -0.0, infinities and huge values are still exact. Layouts: ``catalog/CODECS.md``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.bits import (
    E_BAD_FIELD,
    E_COUNT,
    E_TRUNCATED,
    OK,
    bitlen,
    get,
    get_varint,
    put,
    put_varint,
    varint_bits,
    zigzag,
)
from tsdb_lake.codecs.intpack import (
    _COUNT_SPAN,
    BLOCK,
    ints_decode,
    ints_encode,
    ints_max_bits,
    kth_smallest_ws,
    pfor_add_zigzag,
    pfor_write,
)

__all__ = [
    "CLOSE_SHIFT",
    "MAX_EXP",
    "MAX_RUN",
    "TOP",
    "alp_candidates",
    "alp_decode",
    "alp_encode",
    "alp_encode_count",
    "alp_encode_ints",
    "alp_ints",
    "alp_max_bits",
    "raw_decode",
    "raw_encode",
    "rle_bits",
    "rle_decode",
    "rle_encode",
    "rle_runs",
]

U64 = np.uint64
MAX_EXP = 18
MAX_RUN = 8192
F10 = np.array([10.0**i for i in range(MAX_EXP + 1)], dtype=np.float64)
_MAGIC = 6755399441055744.0  # 2^52 + 2^51: adding and subtracting it rounds to nearest integer
_LIMIT = 2251799813685248.0  # 2^51
_SAMPLE = 64
TOP = 2  # at most this many ALP candidates are fully encoded per chunk
CLOSE_SHIFT = 3  # a runner-up within 1/8 (+ 8 bits) of the best estimate is encoded too


@njit(cache=True)
def raw_encode(words: np.ndarray, pos: int, bits: np.ndarray) -> int:
    """Append every value as 64 raw bits."""
    for i in range(bits.shape[0]):
        pos = put(words, pos, bits[i], 64)
    return pos


@njit(cache=True)
def raw_decode(words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, o: int) -> tuple[int, int]:
    """Read ``n`` raw 64-bit values into ``out[o:o+n]``."""
    if pos + 64 * n > total:
        return pos, E_TRUNCATED
    for i in range(n):
        out[o + i] = get(words, pos + 64 * i, 64)
    return pos + 64 * n, OK


@njit(cache=True)
def rle_runs(bits: np.ndarray) -> int:
    """Number of runs :func:`rle_encode` would write (runs of equal bit patterns, split at ``MAX_RUN``)."""
    n = bits.shape[0]
    if n <= MAX_RUN:  # no run can be split: one run plus one per change (a branch-free, vectorised count)
        changes = 0
        for i in range(n - 1):  # indices i, i + 1 (never negative), so the loop vectorises
            changes += 1 if bits[i + 1] != bits[i] else 0
        return changes + 1 if n > 0 else 0
    runs = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < MAX_RUN and bits[j] == bits[i]:
            j += 1
        runs += 1
        i = j
    return runs


@njit(cache=True)
def rle_bits(bits: np.ndarray) -> int:
    """Exact bits :func:`rle_encode` writes for ``bits`` (0 when empty)."""
    n = bits.shape[0]
    if n == 0:
        return 0
    runs = 0
    total = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < MAX_RUN and bits[j] == bits[i]:
            j += 1
        runs += 1
        total += 64 + varint_bits(U64(j - i))
        i = j
    return total + varint_bits(U64(runs))


@njit(cache=True)
def rle_encode(words: np.ndarray, pos: int, bits: np.ndarray) -> int:
    """Append ``varint runs`` then per run ``varint length`` + ``64-bit value``."""
    n = bits.shape[0]
    if n == 0:
        return pos
    pos = put_varint(words, pos, U64(rle_runs(bits)))
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < MAX_RUN and bits[j] == bits[i]:
            j += 1
        pos = put_varint(words, pos, U64(j - i))
        pos = put(words, pos, bits[i], 64)
        i = j
    return pos


@njit(cache=True)
def rle_decode(words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, o: int) -> tuple[int, int]:
    """Expand runs into ``out[o:o+n]``; the run lengths must add up to ``n`` exactly."""
    if n == 0:
        return pos, OK
    runs, pos, st = get_varint(words, pos, total)
    if st != OK:
        return pos, st
    if runs > U64(n) or runs == U64(0):
        return pos, E_BAD_FIELD
    i = 0
    for _ in range(int(np.int64(runs))):
        ln, pos, st = get_varint(words, pos, total)
        if st != OK:
            return pos, st
        if ln == U64(0) or ln > U64(n - i):
            return pos, E_COUNT
        if pos + 64 > total:
            return pos, E_TRUNCATED
        v = get(words, pos, 64)
        pos += 64
        for k in range(i, i + int(np.int64(ln))):
            out[o + k] = v
        i += int(np.int64(ln))
    if i != n:
        return pos, E_COUNT
    return pos, OK


@njit(cache=True)
def alp_max_bits(n: int) -> int:
    """Upper bound of the bits :func:`alp_encode` writes for ``n`` values."""
    return 16 + ints_max_bits(n) + 64 * n + 22 * (n // BLOCK + 1) + 64


@njit(cache=True, inline="always")
def _sample_cost(
    sample: np.ndarray, e: int, f: int, ds: np.ndarray, scratch: np.ndarray, cnt: np.ndarray
) -> tuple[int, int, int]:
    """Estimated bits of ``(e, f)`` on ``sample``: ``(cost, inexact in-range values, finite out-of-range values)``.

    Per value: bits of ``|d - median(d)|`` (what delta / frame-of-reference packing with patched outliers
    roughly pays) plus, when it does not round-trip, its correction bits; out-of-range values cost 72.
    ``ds`` (int64) and ``scratch`` (float64), as long as ``sample``, and ``cnt`` (``kth_smallest_ws``) are work
    arrays. Zeros are never counted
    inexact (−0.0 always needs its correction, whatever the exponents).
    """
    k = sample.shape[0]
    sbits = sample.view(np.uint64)
    decb = scratch.view(np.uint64)
    fe = F10[e]
    ff = F10[f]
    bad = 0
    # branch-free (vectorises): integers and decoded values of every sample; a factor 10^0 = 1.0 is skipped
    # (x * 1.0 and x / 1.0 are x; only a NaN's payload may change, and a NaN is out of range either way)
    if f == 0 and e == 0:
        for j in range(k):
            t = sample[j]
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            dj = np.int64((t + _MAGIC) - _MAGIC) if ok else np.int64(0)
            ds[j] = dj
            scratch[j] = np.float64(dj)
    elif f == 0:
        for j in range(k):
            t = sample[j] * fe
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            dj = np.int64((t + _MAGIC) - _MAGIC) if ok else np.int64(0)
            ds[j] = dj
            scratch[j] = np.float64(dj) / fe
    elif e == 0:
        for j in range(k):
            t = sample[j] / ff
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            dj = np.int64((t + _MAGIC) - _MAGIC) if ok else np.int64(0)
            ds[j] = dj
            scratch[j] = np.float64(dj) * ff
    else:
        for j in range(k):
            t = sample[j] * fe / ff
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            dj = np.int64((t + _MAGIC) - _MAGIC) if ok else np.int64(0)
            ds[j] = dj
            scratch[j] = np.float64(dj) * ff / fe
    cost = 0
    inexact = 0
    big = 0
    m = k
    if bad == 0:
        for j in range(k):
            if decb[j] != sbits[j]:
                cost += 8 + bitlen(zigzag(sbits[j] - decb[j]))
                if sample[j] != 0.0:
                    inexact += 1
    else:
        m = 0
        for j in range(k):
            v = sample[j]
            if not (abs(v * fe / ff) < _LIMIT):
                cost += 72
                if abs(v) < np.inf:
                    big += 1
                continue
            if decb[j] != sbits[j]:
                cost += 8 + bitlen(zigzag(sbits[j] - decb[j]))
                if v != 0.0:
                    inexact += 1
            ds[m] = ds[j]  # keep the in-range integers, in order
            m += 1
    if m > 0:
        med = kth_smallest_ws(ds[:m], m // 2, cnt)
        for j in range(m):
            cost += bitlen(zigzag(U64(ds[j] - med)))
    return cost, inexact, big


@njit(cache=True)
def alp_candidates(vals: np.ndarray) -> np.ndarray:
    """The one or two most promising ``(e, f)`` rows by an estimated size on an evenly spaced sample of ``vals``.

    A pruned version of scoring every exponent: ``e`` rises from 0 and stops at the first exponent where every
    sampled in-range value round-trips (a larger ``e`` only widens the integers); ``f`` rises from 1 while the
    estimate does not grow (and, while some finite values are still out of range, while it stays flat). The
    runner-up is returned too when its estimate is within ``CLOSE`` of the best, so both get encoded exactly.
    """
    n = vals.shape[0]
    k = min(n, _SAMPLE)
    work = np.empty(3 * k + _COUNT_SPAN, np.float64)  # one allocation: sample, integers, decoded, counts
    sample = work[:k]
    q, r = (n // k, n % k) if k > 0 else (0, 0)  # index (j * n) // k, stepped without a division per sample
    i = 0
    rem = 0
    for j in range(k):
        sample[j] = vals[i]
        i += q
        rem += r
        if rem >= k:
            rem -= k
            i += 1
    ds = work[k : 2 * k].view(np.int64)
    scratch = work[2 * k : 3 * k]
    cnt = work[3 * k :].view(np.int64)
    best_c: int = 1 << 62
    best_e = 0
    best_f = 0
    sec_c: int = 1 << 62
    sec_e = 0
    sec_f = 0
    cost0 = 0
    for e in range(MAX_EXP + 1):
        c, inexact, _ = _sample_cost(sample, e, 0, ds, scratch, cnt)
        if e == 0:
            cost0 = c
        if c < best_c:
            sec_c, sec_e, sec_f = best_c, best_e, best_f
            best_c, best_e, best_f = c, e, 0
        elif c < sec_c:
            sec_c, sec_e, sec_f = c, e, 0
        if inexact == 0:
            break
    prev = cost0
    for f in range(1, MAX_EXP + 1):
        c, _, big = _sample_cost(sample, 0, f, ds, scratch, cnt)
        if c < best_c:
            sec_c, sec_e, sec_f = best_c, best_e, best_f
            best_c, best_e, best_f = c, 0, f
        elif c < sec_c:
            sec_c, sec_e, sec_f = c, 0, f
        if c > prev or (c == prev and big == 0):
            break
        prev = c
    rows = 2 if sec_c <= best_c + (best_c >> CLOSE_SHIFT) + 8 else 1
    out = np.zeros((rows, 2), np.int64)
    out[0, 0] = best_e
    out[0, 1] = best_f
    if rows == 2:
        out[1, 0] = sec_e
        out[1, 1] = sec_f
    return out


@njit(cache=True)
def alp_encode(words: np.ndarray, pos: int, vals: np.ndarray, e: int, f: int) -> int:
    """Append ``e`` (8 bits), ``f`` (8 bits), the int stream of ``d`` and the correction PFOR stream."""
    return alp_encode_count(words, pos, vals, e, f)[0]


@njit(cache=True)
def alp_ints(vals: np.ndarray, e: int, f: int) -> tuple[np.ndarray, np.ndarray, int]:
    """ALP integers and corrections of ``vals`` for ``(e, f)``: ``(d, zigzag corrections, inexact count)``.

    The inexact count is how many non-zero, in-range values needed a correction.
    """
    n = vals.shape[0]
    bits = vals.view(np.uint64)
    fe = F10[e]
    ff = F10[f]
    d = np.empty(n, np.int64)
    dec = np.empty(n, np.float64)
    bad = 0
    # multiplying or dividing by 10^0 = 1.0 is exact (NaN stays NaN), so those steps are skipped
    if f == 0:
        for i in range(n):  # branch-free: vectorises
            t = vals[i] * fe
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            d[i] = np.int64((t + _MAGIC) - _MAGIC) if ok else 0
    elif e == 0:
        for i in range(n):
            t = vals[i] / ff
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            d[i] = np.int64((t + _MAGIC) - _MAGIC) if ok else 0
    else:
        for i in range(n):
            t = vals[i] * fe / ff
            ok = abs(t) < _LIMIT
            bad += 0 if ok else 1
            d[i] = np.int64((t + _MAGIC) - _MAGIC) if ok else 0
    inexact = 0
    corr = np.empty(n, np.uint64)
    decb = dec.view(np.uint64)
    if bad > 0:  # out-of-range values take the last in-range integer before them (else the first one)
        okm = np.empty(n, np.bool_)
        filler = np.int64(0)
        have = False
        for i in range(n):
            okm[i] = abs(vals[i] * fe / ff) < _LIMIT
            if okm[i] and not have:
                filler = d[i]
                have = True
        for i in range(n):
            if okm[i]:
                filler = d[i]
            else:
                d[i] = filler
        for i in range(n):
            dec[i] = np.float64(d[i]) * ff / fe
        for i in range(n):
            corr[i] = zigzag(bits[i] - decb[i])
            if corr[i] != U64(0) and okm[i] and vals[i] != 0.0:
                inexact += 1
        return d, corr, inexact
    if f == 0 and e == 0:  # x / 1.0 is x
        for i in range(n):
            dec[i] = np.float64(d[i])
    elif f == 0:
        for i in range(n):
            dec[i] = np.float64(d[i]) / fe
    elif e == 0:
        for i in range(n):
            dec[i] = np.float64(d[i]) * ff
    else:
        for i in range(n):
            dec[i] = np.float64(d[i]) * ff / fe
    for i in range(n):
        c = zigzag(bits[i] - decb[i])
        corr[i] = c
        inexact += 1 if (c != U64(0) and vals[i] != 0.0) else 0
    return d, corr, inexact


@njit(cache=True)
def alp_encode_count(words: np.ndarray, pos: int, vals: np.ndarray, e: int, f: int) -> tuple[int, int]:
    """:func:`alp_encode`, also returning how many non-zero, in-range values needed a correction."""
    n = vals.shape[0]
    if n == 0:
        return pos, 0
    pos = put(words, pos, U64(e), 8)
    pos = put(words, pos, U64(f), 8)
    d, corr, inexact = alp_ints(vals, e, f)
    return alp_encode_ints(words, pos, d, corr), inexact


@njit(cache=True)
def alp_encode_ints(words: np.ndarray, pos: int, d: np.ndarray, corr: np.ndarray) -> int:
    """Append the int stream of ``d`` and the correction PFOR stream (what follows ALP's exponents)."""
    pos = ints_encode(words, pos, d.view(np.uint64), True)
    return pfor_write(words, pos, corr)


@njit(cache=True)
def alp_decode(
    words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, outf: np.ndarray, o: int
) -> tuple[int, int]:
    """Decode an ALP body into ``out[o:o+n]`` (uint64 bit patterns; ``outf`` is the float64 view of ``out``)."""
    if n == 0:
        return pos, OK
    if pos + 16 > total:
        return pos, E_TRUNCATED
    e = int(np.int64(get(words, pos, 8)))
    f = int(np.int64(get(words, pos + 8, 8)))
    pos += 16
    if e > MAX_EXP or f > MAX_EXP:
        return pos, E_BAD_FIELD
    tmp = np.empty(n, np.uint64)
    pos, st = ints_decode(words, pos, total, n, tmp, 0)
    if st != OK:
        return pos, st
    mf = F10[f]
    de = F10[e]
    for i in range(n):  # separate arrays: this loop vectorises
        outf[o + i] = np.float64(np.int64(tmp[i])) * mf / de
    return pfor_add_zigzag(words, pos, total, n, out, o)
