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
    MAX_TOKENS,
    ans_max_bits,
    ans_plan,
    ans_read,
    ans_write,
    entropy_bits,
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
from tsdb_lake.codecs.intpack import _COUNT_SPAN, BLOCK, kth_smallest_ws, pfor_add_zigzag, pfor_write

__all__ = [
    "alp_ans_decode",
    "alp_ans_encode",
    "alp_ans_encode_ints",
    "alp_ans_max_bits",
    "alp_ans_plan",
    "alp_ans_plan_bits",
    "alp_ans_write",
]

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
def _base(d: np.ndarray, s: np.ndarray, cnt: np.ndarray) -> np.int64:
    """Lower median of up to 64 evenly spaced deltas of ``d`` (the DELTA base ``b``); ``s`` (64) and ``cnt``
    (``kth_smallest_ws``) are int64 work arrays."""
    m = d.shape[0] - 1
    k = min(m, _SAMPLE)
    if k <= 0:
        return np.int64(0)
    q, r = m // k, m % k  # i = (j * m) // k, stepped without a division per sample
    i = 0
    rem = 0
    for j in range(k):
        s[j] = np.int64(U64(d[i + 1]) - U64(d[i]))
        i += q
        rem += r
        if rem >= k:
            rem -= k
            i += 1
    return kth_smallest_ws(s[:k], (k - 1) // 2, cnt)


@njit(cache=True, inline="always")
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
    return alp_ans_write(words, pos, d, corr, e, f, alp_ans_plan(d, corr))


#: What :func:`alp_ans_plan` returns (see there).
AnsPlan = tuple[bool, np.ndarray, np.ndarray, int, int, np.uint64, int, np.int64, bool, int, np.ndarray, bool]
_T = MAX_TOKENS
_WORK = 6 * _T + _SAMPLE + _COUNT_SPAN  # 2 + 2 partial histograms, the two sums, base sample, counting


@njit(cache=True)
def alp_ans_plan(d: np.ndarray, corr: np.ndarray) -> AnsPlan:
    """Everything :func:`alp_ans_write` needs for ALP integers ``d`` and corrections ``corr`` (``n >= 1``).

    Returns ``(use FOR, tokens, histogram, K, carry, anchor, carry of b, b, has corrections, extra bits,
    table group codes, symmetric table)``. DELTA or FOR is picked by the estimate of the reference encoder;
    only the winner's tokens are kept (FOR's are recomputed when it wins) and only its table is planned.
    """
    n = d.shape[0]
    has_corr = False
    for i in range(n):
        if corr[i] != U64(0):
            has_corr = True
            break
    du = d.view(np.uint64)
    work = np.empty(_WORK, np.int64)
    for j in range(2 * _T):  # DELTA's partial histograms
        work[j] = 0
    for j in range(5 * _T, 6 * _T):  # FOR's histogram
        work[j] = 0
    b = _base(d, work[6 * _T : 6 * _T + _SAMPLE], work[6 * _T + _SAMPLE :])
    ub = U64(b)
    toks = np.empty(n, np.uint8)
    mn = d[0]
    mx = d[0]
    for i in range(1, n):  # vectorises
        mn = min(mn, d[i])
        mx = max(mx, d[i])
    umn = U64(mn)
    # DELTA u_i = zigzag(d_{i+1} - d_i - b) (anchor d_0): tokens kept, two partial histograms (they break
    # the store chains); FOR u_i = d_i - min(d) (anchor min(d)): histogram only
    kd = 0
    xd = 0
    kf = 0
    xf = 0
    hf = work[5 * _T : 6 * _T]
    if U64(mx) - umn < U64(_COUNT_SPAN):  # FOR from value counts: one token per distinct value
        cnt = work[6 * _T + _SAMPLE :]
        span = int(mx - mn) + 1
        for v in range(span):
            cnt[v] = 0
        for i in range(n):
            cnt[du[i] - umn] += 1
        for v in range(span):
            c = cnt[v]
            if c > 0:
                t2, _, nb2 = token_of(U64(v))
                hf[t2] += c
                xf += nb2 * c
                kf = t2 + 1  # tokens grow with the value
        for i in range(n - 1):
            t, _, nb = token_of(zigzag(du[i + 1] - du[i] - ub))
            toks[i] = t
            work[(i & 1) * _T + t] += 1
            xd += nb
            kd = max(kd, t + 1)
    else:
        for j in range(2 * _T, 4 * _T):  # FOR's partial histograms
            work[j] = 0
        for i in range(n - 1):
            t, _, nb = token_of(zigzag(du[i + 1] - du[i] - ub))
            toks[i] = t
            work[(i & 1) * _T + t] += 1
            xd += nb
            kd = max(kd, t + 1)
            t2, _, nb2 = token_of(du[i] - umn)
            work[(2 + (i & 1)) * _T + t2] += 1
            xf += nb2
            kf = max(kf, t2 + 1)
        t2, _, nb2 = token_of(du[n - 1] - umn)
        work[2 * _T + t2] += 1
        xf += nb2
        kf = max(kf, t2 + 1)
        for t in range(kf):
            hf[t] = work[2 * _T + t] + work[3 * _T + t]
    hd = work[4 * _T : 5 * _T]
    for t in range(kd):
        hd[t] = work[t] + work[_T + t]
    ad, cd = _anchor_bits(zigzag(du[0]), n - 1)
    bd, cb = _anchor_bits(zigzag(ub), n - 1)
    cost_d = bd + xd + ad + entropy_bits(hd, kd)
    af, cf = _anchor_bits(zigzag(umn), n)
    cost_f = xf + af + entropy_bits(hf, kf)
    use_for = cost_f < cost_d  # the estimates pick the mode; only its table is planned
    if use_for:
        for i in range(n):
            t, _, _ = token_of(du[i] - umn)
            toks[i] = t
        m, hist, k, carry, anchor, carry_b, extra = n, hf, kf, cf, umn, -1, xf
    else:
        m, hist, k, carry, anchor, carry_b, extra = n - 1, hd, kd, cd, du[0], cb, xd
    if m > 0:
        g, sym, _ = ans_plan(hist, k)
    else:
        g, sym = np.empty(0, np.int64), False
    return use_for, toks[:m], hist, k, carry, anchor, carry_b, b, has_corr, extra, g, sym


@njit(cache=True)
def alp_ans_plan_bits(
    n: int,
    plan: AnsPlan,
) -> int:
    """Upper bound of the bits :func:`alp_ans_write` writes for a plan of :func:`alp_ans_plan` of ``n`` values."""
    toks = plan[1]
    bits = 8 + ans_max_bits(toks.shape[0]) + 160 + plan[9]
    if plan[8]:
        bits += 64 * n + 22 * (n // BLOCK + 1) + 64
    return bits


@njit(cache=True)
def alp_ans_write(
    words: np.ndarray,
    pos: int,
    d: np.ndarray,
    corr: np.ndarray,
    e: int,
    f: int,
    plan: AnsPlan,
) -> int:
    """Append the ``ALP_ANS`` body of a plan of :func:`alp_ans_plan` (the words after ``pos`` must be zero)."""
    use_for, toks, _, k, carry, anchor, carry_b, b, has_corr, _, g, sym = plan
    m = toks.shape[0]
    xfield = e if f == 0 else MAX_EXP + f
    pos = put(words, pos, U64(xfield), 6)
    pos = put(words, pos, U64(1 if has_corr else 0), 1)
    pos = put(words, pos, U64(MODE_FOR if use_for else MODE_DELTA), 1)
    if m > 0:
        pos = ans_write(words, pos, toks, k, g, sym, carry, carry_b)
    if carry < 0:
        pos = put_varint(words, pos, zigzag(anchor))
    if not use_for and carry_b < 0:
        pos = put_varint(words, pos, zigzag(U64(b)))
    if k > DIRECT:  # else no token has extra bits; they go out through a register, as in ``ans_write``
        du = d.view(np.uint64)
        ub = U64(b)
        wi = pos >> 6
        off = pos & 63
        acc = words[wi]
        for i in range(m):
            t = int(toks[i])
            if t < DIRECT:
                continue
            nb = 3 + ((t - DIRECT) >> 1)  # token_value_base(t)[1]
            u = du[i] - anchor if use_for else zigzag(du[i + 1] - du[i] - ub)
            v = u & ((U64(1) << U64(nb)) - U64(1))
            acc |= v << U64(off)
            off += nb
            if off >= 64:
                words[wi] = acc
                wi += 1
                off -= 64
                acc = v >> U64(nb - off) if off > 0 else U64(0)
        words[wi] = acc
        pos = (wi << 6) + off
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
