"""``ALP_ANS``: ALP's decimal-scaled integers, entropy coded (delta or frame-of-reference residuals, rANS).

The integers ``d`` and corrections are those of ALP (:func:`~tsdb_lake.codecs.floatcodecs.alp_ints`). The
residuals (zigzagged deltas around a base, or offsets from the minimum) are tokens coded with the table and
rANS coder of :mod:`tsdb_lake.codecs.ans`; a first value or minimum, and the DELTA base, of at most 2^11 in
magnitude ride in the two coder states. Slow random walks (TSBS-like gauges) cost close to their entropy
instead of a whole bit width per value. Layout: ``catalog/CODECS.md`` (§9).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.ans import (
    ANS_STATE_BITS,
    DIRECT,
    ans_max_bits,
    ans_plan,
    ans_read,
    ans_write,
    entropy_bits,
    token_hist,
    token_of,
    token_value_base,
)
from tsdb_lake.codecs.bits import (
    E_BAD_FIELD,
    E_TRUNCATED,
    OK,
    get,
    get_varint,
    put,
    put_varint,
    unzigzag,
    varint_bits,
    zigzag,
)
from tsdb_lake.codecs.floatcodecs import F10, MAX_EXP, alp_ints
from tsdb_lake.codecs.intpack import BLOCK, kth_smallest, pfor_add_zigzag, pfor_write

__all__ = ["alp_ans_decode", "alp_ans_encode", "alp_ans_encode_ints", "alp_ans_max_bits"]

U64 = np.uint64
MODE_DELTA = 0
MODE_FOR = 1
_CARRY_LIMIT = 1 << ANS_STATE_BITS
_SAMPLE = 64


@njit(cache=True)
def alp_ans_max_bits(n: int) -> int:
    """Upper bound of the bits :func:`alp_ans_encode` writes for ``n`` values."""
    return 8 + 80 + ans_max_bits(n) + 80 + 63 * n + 64 * n + 22 * (n // BLOCK + 1) + 64


@njit(cache=True)
def _base(d: np.ndarray) -> np.int64:
    """Lower median of up to 64 evenly spaced deltas of ``d`` (the DELTA base ``b``)."""
    m = d.shape[0] - 1
    k = min(m, _SAMPLE)
    if k <= 0:
        return np.int64(0)
    s = np.empty(k, np.int64)
    for j in range(k):
        i = (j * m) // k
        s[j] = np.int64(U64(d[i + 1]) - U64(d[i]))
    return kth_smallest(s, (k - 1) // 2)


@njit(cache=True)
def _anchor_bits(za: np.uint64, m: int) -> tuple[int, int]:
    """``(bits, carry)``: a zigzagged anchor rides in the coder state when it fits (carry = value, else -1)."""
    if m > 0 and za < U64(_CARRY_LIMIT):
        return 0, int(np.int64(za))
    return varint_bits(za), -1


@njit(cache=True)
def alp_ans_encode(words: np.ndarray, pos: int, vals: np.ndarray, e: int, f: int) -> int:
    """Append an ``ALP_ANS`` body of ``vals`` for exponents ``(e, f)`` (one of them 0), the cheaper residual mode."""
    if vals.shape[0] == 0:
        return pos
    d, corr, _ = alp_ints(vals, e, f)
    return alp_ans_encode_ints(words, pos, d, corr, e, f)


@njit(cache=True)
def alp_ans_encode_ints(words: np.ndarray, pos: int, d: np.ndarray, corr: np.ndarray, e: int, f: int) -> int:
    """:func:`alp_ans_encode` from ALP's integers and corrections for ``(e, f)`` (``n >= 1`` values)."""
    n = d.shape[0]
    has_corr = False
    for i in range(n):
        if corr[i] != U64(0):
            has_corr = True
            break
    du = d.view(np.uint64)
    # DELTA: u_i = zigzag(d_{i+1} - d_i - b), anchor d_0
    b = _base(d)
    ud = np.empty(n - 1, np.uint64)
    for i in range(n - 1):
        ud[i] = zigzag(du[i + 1] - du[i] - U64(b))
    td = np.empty(n - 1, np.int64)
    hd, kd, xd = token_hist(ud, td)
    ad, cd = _anchor_bits(zigzag(du[0]), n - 1)
    bd, cb = _anchor_bits(zigzag(U64(b)), n - 1)
    cost_d = bd + xd + ad + entropy_bits(hd, kd)
    # FOR: u_i = d_i - min(d), anchor min(d)
    mn = d.min()
    uf = np.empty(n, np.uint64)
    for i in range(n):
        uf[i] = du[i] - U64(mn)
    tf = np.empty(n, np.int64)
    hf, kf, xf = token_hist(uf, tf)
    af, cf = _anchor_bits(zigzag(U64(mn)), n)
    cost_f = xf + af + entropy_bits(hf, kf)
    use_for = cost_f < cost_d  # the estimates pick the mode; only its table is planned
    xfield = e if f == 0 else MAX_EXP + f
    pos = put(words, pos, U64(xfield), 6)
    pos = put(words, pos, U64(1 if has_corr else 0), 1)
    pos = put(words, pos, U64(MODE_FOR if use_for else MODE_DELTA), 1)
    if use_for:
        u, toks, hist, k, carry, anchor, carry_b = uf, tf, hf, kf, cf, U64(mn), -1
    else:
        u, toks, hist, k, carry, anchor, carry_b = ud, td, hd, kd, cd, du[0], cb
    if u.shape[0] > 0:
        g, sym, _ = ans_plan(hist, k)
        pos = ans_write(words, pos, toks, k, g, sym, carry, carry_b)
    if carry < 0:
        pos = put_varint(words, pos, zigzag(anchor))
    if not use_for and carry_b < 0:
        pos = put_varint(words, pos, zigzag(U64(b)))
    if k > DIRECT:  # else no token has extra bits
        for i in range(u.shape[0]):
            _, ex, nb = token_of(u[i])
            if nb > 0:
                pos = put(words, pos, ex, nb)
    if has_corr:
        pos = pfor_write(words, pos, corr)
    return pos


@njit(cache=True)
def _residual(words: np.ndarray, pos: int, t: int) -> tuple[np.uint64, int]:
    """Value of token ``t`` and its extra bits at ``pos`` (bounds checked by the caller)."""
    if t < DIRECT:
        return U64(t), pos
    base, nb = token_value_base(t)
    return base | get(words, pos, nb), pos + nb


@njit(cache=True)
def alp_ans_decode(
    words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, outf: np.ndarray, o: int
) -> tuple[int, int]:
    """Decode an ``ALP_ANS`` body into ``out[o:o+n]`` (``outf`` is the float64 view of ``out``)."""
    if n == 0:
        return pos, OK
    if pos + 8 > total:
        return pos, E_TRUNCATED
    xfield = int(np.int64(get(words, pos, 6)))
    has_corr = get(words, pos + 6, 1) == U64(1)
    mode = int(np.int64(get(words, pos + 7, 1)))
    pos += 8
    if xfield > 2 * MAX_EXP:
        return pos, E_BAD_FIELD
    e = xfield if xfield <= MAX_EXP else 0
    f = xfield - MAX_EXP if xfield > MAX_EXP else 0
    m = n - 1 if mode == MODE_DELTA else n
    toks = np.empty(m, np.uint8)
    carry = -1
    carry_b = -1
    if m > 0:
        pos, carry, carry_b, st = ans_read(words, pos, total, m, toks)
        if st != OK:
            return pos, st
    if carry >= 0:
        a = unzigzag(U64(carry))
    else:
        za, pos, st = get_varint(words, pos, total)
        if st != OK:
            return pos, st
        a = unzigzag(za)
    b = U64(0)
    if mode == MODE_DELTA:
        if carry_b >= 0:
            b = unzigzag(U64(carry_b))
        else:
            zb, pos, st = get_varint(words, pos, total)
            if st != OK:
                return pos, st
            b = unzigzag(zb)
    elif carry_b >= 0:
        return pos, E_BAD_FIELD
    d = np.empty(n, np.uint64)  # the integers, apart from ``out`` so that the scaling loop vectorises
    if mode == MODE_DELTA and m > 0 and toks.max() < DIRECT:  # no extra bits: the common, fast case
        step = np.empty(DIRECT, np.uint64)
        for t in range(DIRECT):
            step[t] = b + unzigzag(U64(t))
        acc = a
        d[0] = acc
        for i in range(m):
            acc += step[toks[i]]
            d[1 + i] = acc
    elif mode == MODE_DELTA:
        acc = a
        d[0] = acc
        for i in range(m):
            u, pos = _residual(words, pos, int(toks[i]))
            if pos > total:
                return pos, E_TRUNCATED
            acc += b + unzigzag(u)
            d[1 + i] = acc
    else:
        for i in range(m):
            u, pos = _residual(words, pos, int(toks[i]))
            if pos > total:
                return pos, E_TRUNCATED
            d[i] = a + u
    if e == 0 and f == 0:
        for i in range(n):
            outf[o + i] = np.float64(np.int64(d[i]))
    else:
        mf = F10[f]
        de = F10[e]
        for i in range(n):
            outf[o + i] = np.float64(np.int64(d[i])) * mf / de
    if has_corr:
        return pfor_add_zigzag(words, pos, total, n, out, o)
    return pos, OK
