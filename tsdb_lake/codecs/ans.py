"""Entropy coding of small unsigned integers: hybrid tokens, a 4-bit log-scale table and a bitwise rANS coder.

Each value ``u`` becomes a token (``u`` itself below 16; above, its bit length and next-highest bit) plus raw
extra bits. Token frequencies (summing to 1024) come from one 4-bit code per token (or per ± pair of
zigzagged tokens), each a weight ``≈ 4096 · 2^(-code/2)``, normalised by integer arithmetic. The tokens are
coded with range ANS over two interleaved states in [2^12, 2^13) renormalised bit-wise (all bits of a step
read at once), so a chunk pays a few bits of table and two 12-bit final states (which can carry two small
values) instead of a fixed bit width per value. Layout: ``catalog/CODECS.md`` (§9).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.bits import E_BAD_FIELD, E_TRUNCATED, OK, bitlen, get, put

__all__ = [
    "ABSENT",
    "ANS_PREC",
    "ANS_STATE_BITS",
    "DIRECT",
    "MAX_TOKENS",
    "WEIGHTS",
    "ans_max_bits",
    "ans_plan",
    "ans_read",
    "ans_write",
    "entropy_bits",
    "normalize",
    "token_hist",
    "token_of",
    "token_value_base",
]

U64 = np.uint64
ANS_PREC = 10  # frequencies sum to 2^10
ANS_TOTAL = 1 << ANS_PREC
ANS_STATE_BITS = 12  # coder state x in [2^12, 2^13)
ANS_L = 1 << ANS_STATE_BITS
DIRECT = 16  # tokens below this are the value itself
MAX_TOKENS = 136  # 16 direct tokens + 2 per bit length 5..64
ABSENT = 15  # table code of a token that never occurs
#: ``WEIGHTS[c] = round(4096 * 2^(-c/2))``: the relative weight of table code ``c`` (0..14).
WEIGHTS = np.array([4096, 2896, 2048, 1448, 1024, 724, 512, 362, 256, 181, 128, 91, 64, 45, 32], np.int64)
#: ``_LOG2[f] = log2(f)`` for the frequencies 1..2^ANS_PREC (cost estimates only).
_LOG2 = np.log2(np.maximum(np.arange(ANS_TOTAL + 1, dtype=np.float64), 1.0))
_RATIO = 1 << (ANS_STATE_BITS + 1 - ANS_PREC)  # before coding a token of frequency f, x is in [f·R/2, f·R)


@njit(cache=True, inline="always")
def token_of(u: np.uint64) -> tuple[int, np.uint64, int]:
    """``(token, extra bits, number of extra bits)`` of the unsigned value ``u``."""
    if u < U64(DIRECT):
        return int(np.int64(u)), U64(0), 0
    h = bitlen(u) - 1
    t = DIRECT + 2 * (h - 4) + int(np.int64((u >> U64(h - 1)) & U64(1)))
    return t, u & ((U64(1) << U64(h - 1)) - U64(1)), h - 1


@njit(cache=True, inline="always")
def token_value_base(t: int) -> tuple[np.uint64, int]:
    """``(smallest value of token t, number of extra bits)`` for a hybrid token ``t >= DIRECT``."""
    j = t - DIRECT
    h = 4 + (j >> 1)
    return U64(2 + (j & 1)) << U64(h - 1), h - 1


@njit(cache=True)
def token_hist(u: np.ndarray, toks: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Tokens of ``u`` into ``toks``: ``(histogram over MAX_TOKENS, K = largest token + 1, extra bits)``."""
    hist = np.zeros(MAX_TOKENS, np.int64)
    k = 0
    extra = 0
    for i in range(u.shape[0]):
        t, _, nb = token_of(u[i])
        toks[i] = t
        hist[t] += 1
        extra += nb
        if t >= k:
            k = t + 1
    return hist, k, extra


@njit(cache=True)
def normalize(codes: np.ndarray, k: int, freq: np.ndarray, cum: np.ndarray) -> bool:
    """Frequencies (sum 1024) and cumulative starts of tokens ``0..k-1`` from their codes; False if none present.

    ``f_t = 1 + WEIGHTS[c_t] · (1024 − P) // S`` for each present token (``P`` present, ``S`` their weight
    sum); the remainder goes to the first present token with the smallest code.
    """
    s = 0
    p = 0
    best = -1
    for t in range(k):
        c = codes[t]
        if c < ABSENT:
            s += WEIGHTS[c]
            p += 1
            if best < 0 or c < codes[best]:
                best = t
    if p == 0:
        return False
    budget = ANS_TOTAL - p
    tot = 0
    for t in range(k):
        c = codes[t]
        f = 0
        if c < ABSENT:
            f = 1 + (WEIGHTS[c] * budget) // s
        freq[t] = f
        tot += f
    freq[best] += ANS_TOTAL - tot
    acc = 0
    for t in range(k):
        cum[t] = acc
        acc += freq[t]
    cum[k] = acc
    return True


@njit(cache=True)
def _expand(g: np.ndarray, k: int, sym: bool, codes: np.ndarray) -> None:
    """Per-token codes from per-group codes (groups are tokens, or 0, {1, 2}, {3, 4}, … when ``sym``)."""
    for t in range(k):
        codes[t] = g[(t + 1) >> 1] if sym else g[t]


@njit(cache=True)
def _cost(
    hist: np.ndarray, g: np.ndarray, k: int, sym: bool, codes: np.ndarray, freq: np.ndarray, cum: np.ndarray
) -> float:
    """Estimated coded bits of the tokens ``hist`` under group codes ``g`` (infinite if a used token is absent)."""
    _expand(g, k, sym, codes)
    if not normalize(codes, k, freq, cum):
        return np.inf
    bits = 0.0
    for t in range(k):
        if hist[t] > 0:
            if freq[t] == 0:
                return np.inf
            bits += hist[t] * (ANS_PREC - _LOG2[freq[t]])
    return bits


@njit(cache=True)
def _table_bits(k: int, sym: bool) -> int:
    groups = 1 + k // 2 if sym else k
    return (4 if k <= 15 else 11) + 1 + 4 * groups


@njit(cache=True)
def _plan_one(hist: np.ndarray, k: int, sym: bool, g: np.ndarray, work: np.ndarray) -> float:
    """Group codes for ``hist`` into ``g`` (each ``round(-2 log2(p / p_max))``); their estimated bits.

    ``g`` holds ``k`` entries (the first ``1 + k // 2`` are used when ``sym``); ``work`` is ``4 k + 1`` int64.
    """
    ng = 1 + k // 2 if sym else k
    avg = work[:ng].view(np.float64)
    for j in range(ng):
        avg[j] = 0.0
    for t in range(k):
        gi = (t + 1) >> 1 if sym else t
        size = 1.0 if (not sym or t == 0 or (t + 1 >= k and t % 2 == 1)) else 2.0
        avg[gi] += hist[t] / size
    top = avg.max()
    for j in range(ng):
        g[j] = ABSENT
        if avg[j] > 0:
            c = int(np.round(-2.0 * np.log2(avg[j] / top)))
            g[j] = min(max(c, 0), ABSENT - 1)
    best = _cost(hist, g, k, sym, work[k : 2 * k], work[2 * k : 3 * k], work[3 * k :])
    return best + _table_bits(k, sym)


@njit(cache=True)
def _log2_counts(n: int) -> np.ndarray:
    """``log2(c)`` of the counts ``c < n`` (0 for 0), by the very call :func:`entropy_bits` makes otherwise."""
    out = np.zeros(n, np.float64)
    for c in range(1, n):
        out[c] = np.log2(c)
    return out


_LOG2_COUNT_N = 4096
#: ``np.log2`` of counts below ``_LOG2_COUNT_N`` as numba computes it (so looked-up estimates are bit-identical).
_LOG2_COUNTS = _log2_counts(_LOG2_COUNT_N)


@njit(cache=True, inline="always")
def _log2_count(c: int) -> float:
    return _LOG2_COUNTS[c] if c < _LOG2_COUNT_N else np.log2(c)


@njit(cache=True)
def entropy_bits(hist: np.ndarray, k: int) -> float:
    """Quick size estimate of coding ``hist``: empirical entropy plus 4 bits per used token (the table)."""
    m = 0
    used = 0
    for t in range(k):
        m += hist[t]
        used += 1 if hist[t] > 0 else 0
    bits = 4.0 * used
    if m == 0:
        return bits
    lm = _log2_count(m)
    for t in range(k):
        h = hist[t]
        if h > 0:
            bits += h * (lm - _log2_count(h))
    return bits


@njit(cache=True)
def ans_plan(hist: np.ndarray, k: int) -> tuple[np.ndarray, bool, float]:
    """The cheaper table for token histogram ``hist`` (largest token ``k - 1``): ``(group codes, sym, est. bits)``.

    The estimate covers the table and the coded tokens (not the 14-bit state nor extra bits).
    """
    buf = np.empty(6 * k + 1, np.int64)  # one allocation: both candidates' codes and the work arrays
    g0 = buf[:k]
    c0 = _plan_one(hist, k, False, g0, buf[2 * k :])
    if k > 2:
        g1 = buf[k : 2 * k]
        c1 = _plan_one(hist, k, True, g1, buf[2 * k :])
        if c1 < c0:
            return g1[: 1 + k // 2], True, c1
    return g0, False, c0


@njit(cache=True)
def ans_max_bits(m: int) -> int:
    """Upper bound of the bits :func:`ans_write` writes for ``m`` tokens."""
    return 11 + 1 + 4 * MAX_TOKENS + 2 + 2 * ANS_STATE_BITS + ANS_PREC * m


@njit(cache=True, inline="always")
def _enc_step(x: int, t: int, i: int, tab: np.ndarray, fields: np.ndarray) -> int:
    """Code token ``t`` (position ``i``) into state ``x``; its renormalisation bits go to ``fields[i]``.

    ``tab[t]`` holds ``(nb0, bound << nb0, reciprocal of f, cum, 1024 - f)``: ``x >> nb0 >= bound`` is tested
    as ``x >= bound << nb0`` and ``(q << 10) + cum + x - q f`` is computed as ``x + cum + q (1024 - f)``.
    """
    nb = tab[t, 0]
    if x >= tab[t, 1]:
        nb += 1
    fields[i] = ((x & ((1 << nb) - 1)) << 4) | nb  # the bits above a 4-bit length (nb <= 10)
    x >>= nb
    q = (x * tab[t, 2]) >> 32
    return x + tab[t, 3] + q * tab[t, 4]


@njit(cache=True)
def ans_write(
    words: np.ndarray, pos: int, toks: np.ndarray, k: int, g: np.ndarray, sym: bool, carry0: int, carry1: int
) -> int:
    """Append the table, the two carry flags, the two final states and the renormalisation bits of ``toks``.

    ``carry0`` / ``carry1`` (``0 <= carry < 2^12``, or -1 for none) are the initial state offsets of coder
    states 0 and 1 (tokens alternate between them), which the decoder recovers from its final states.
    """
    m = toks.shape[0]
    if k <= 15:
        pos = put(words, pos, U64(k - 1), 4)
    else:
        pos = put(words, pos, U64(15), 4)
        pos = put(words, pos, U64(k - 16), 7)
    pos = put(words, pos, U64(1 if sym else 0), 1)
    ng = 1 + k // 2 if sym else k
    for j in range(ng):
        pos = put(words, pos, U64(g[j]), 4)
    # one allocation: codes, frequencies, cumulative starts, the per-token step table, the fields
    work = np.empty(8 * k + 1 + m, np.int64)
    codes = work[:k]
    _expand(g, k, sym, codes)
    freq = work[k : 2 * k]
    cum = work[2 * k : 3 * k + 1]
    normalize(codes, k, freq, cum)
    pos = put(words, pos, U64(1 if carry0 >= 0 else 0), 1)
    pos = put(words, pos, U64(1 if carry1 >= 0 else 0), 1)
    x0 = ANS_L + (carry0 if carry0 >= 0 else 0)
    x1 = ANS_L + (carry1 if carry1 >= 0 else 0)
    # per token: base shift, the renormalisation bound and a reciprocal (x < 2^13, so x * rcp >> 32 = x // f)
    tab = work[3 * k + 1 : 8 * k + 1].reshape((k, 5))
    for t in range(k):
        f = max(freq[t], 1)
        bound = _RATIO * f
        nb0 = ANS_STATE_BITS + 1 - bitlen(U64(bound - 1))
        tab[t, 0] = nb0
        tab[t, 1] = bound << nb0
        tab[t, 2] = ((1 << 32) + f - 1) // f
        tab[t, 3] = cum[t]
        tab[t, 4] = ANS_TOTAL - f
    # the fields are collected backwards, then appended in token order; tokens go in pairs (odd index:
    # state 1, even: state 0) so that the two independent state chains overlap
    fields = work[8 * k + 1 :]
    i = m - 1
    if (m & 1) == 1:
        x0 = _enc_step(x0, toks[i], i, tab, fields)
        i -= 1
    while i >= 1:
        x1 = _enc_step(x1, toks[i], i, tab, fields)
        x0 = _enc_step(x0, toks[i - 1], i - 1, tab, fields)
        i -= 2
    pos = put(words, pos, U64(x0 - ANS_L), ANS_STATE_BITS)
    pos = put(words, pos, U64(x1 - ANS_L), ANS_STATE_BITS)
    # the fields (at most 10 bits each), keeping the current word in a register
    wi = pos >> 6
    off = pos & 63
    acc = words[wi]
    for i in range(m):
        fv = fields[i]
        nb = fv & 15
        v = U64(fv >> 4)
        acc |= v << U64(off)
        off += nb
        if off >= 64:
            words[wi] = acc
            wi += 1
            off -= 64
            acc = v >> U64(nb - off) if off > 0 else U64(0)
    words[wi] = acc
    return (wi << 6) + off


@njit(cache=True, inline="always")
def _step(slots: np.ndarray, x: np.int64, buf: np.uint64) -> tuple[np.int64, np.uint64, int, np.int64]:
    """One decoding step of state ``x``: ``(new state, remaining bit buffer, bits consumed, token)``."""
    r = x & (ANS_TOTAL - 1)
    ent = np.int64(slots[r])
    x = (ent & 0x7FF) * (x >> ANS_PREC) + r - ((ent >> 11) & 0x3FF)
    nb = ANS_STATE_BITS + 1 - bitlen(U64(x))
    x = (x << nb) | np.int64(buf & ((U64(1) << U64(nb)) - U64(1)))
    return x, buf >> U64(nb), nb, ent >> 21


@njit(cache=True)
def ans_read(words: np.ndarray, pos: int, total: int, m: int, toks: np.ndarray) -> tuple[int, int, int, int]:
    """Decode ``m`` tokens into ``toks`` (uint8): ``(pos, carry0, carry1, status)`` (carries -1 when absent).

    Validates the table and the final states.
    """
    if pos + 5 > total:
        return pos, -1, -1, E_TRUNCATED
    k = int(np.int64(get(words, pos, 4))) + 1
    pos += 4
    if k == 16:
        if pos + 7 > total:
            return pos, -1, -1, E_TRUNCATED
        k = 16 + int(np.int64(get(words, pos, 7)))
        pos += 7
        if k > MAX_TOKENS:
            return pos, -1, -1, E_BAD_FIELD
    if pos + 1 > total:
        return pos, -1, -1, E_TRUNCATED
    sym = get(words, pos, 1) == U64(1)
    pos += 1
    ng = 1 + k // 2 if sym else k
    if pos + 4 * ng + 2 + 2 * ANS_STATE_BITS > total:
        return pos, -1, -1, E_TRUNCATED
    work = np.empty(3 * k + 1, np.int64)  # one allocation: codes, frequencies, cumulative starts
    codes = work[:k]
    freq = work[k : 2 * k]
    cum = work[2 * k :]
    for t in range(k):
        codes[t] = np.int64(get(words, pos + 4 * ((t + 1) >> 1 if sym else t), 4))
    pos += 4 * ng
    if not normalize(codes, k, freq, cum):
        return pos, -1, -1, E_BAD_FIELD
    has0 = get(words, pos, 1) == U64(1)
    has1 = get(words, pos + 1, 1) == U64(1)
    x0 = ANS_L + np.int64(get(words, pos + 2, ANS_STATE_BITS))
    x1 = ANS_L + np.int64(get(words, pos + 2 + ANS_STATE_BITS, ANS_STATE_BITS))
    pos += 2 + 2 * ANS_STATE_BITS
    # one entry per slot, the same for all slots of a token: frequency (bits 0-10), cum (11-20), token (21-28)
    slots = np.empty(ANS_TOTAL, np.uint32)
    for t in range(k):
        slots[cum[t] : cum[t + 1]] = np.uint32(freq[t] | (cum[t] << 11) | (t << 21))  # slice fills vectorise
    # bit buffer: ``buf`` holds stream bits pos .. pos+avail-1 (avail >= 2 * 10 before each pair of tokens)
    buf = get(words, pos, 64)
    avail = 64
    nxt = pos + 64  # stream position of the first bit not yet in buf
    for i in range(0, m - 1, 2):
        x0, buf, nb0, t0 = _step(slots, x0, buf)
        x1, buf, nb1, t1 = _step(slots, x1, buf)
        toks[i] = t0
        toks[i + 1] = t1
        avail -= nb0 + nb1
        if avail < 2 * ANS_PREC:
            if nxt - avail > total:
                return nxt - avail, -1, -1, E_TRUNCATED
            buf |= get(words, nxt, 64 - avail) << U64(avail)
            nxt += 64 - avail
            avail = 64
    if m & 1:
        x0, buf, nb0, t0 = _step(slots, x0, buf)
        toks[m - 1] = t0
        avail -= nb0
    pos = nxt - avail
    if pos > total:
        return pos, -1, -1, E_TRUNCATED
    c0 = int(x0 - ANS_L)
    c1 = int(x1 - ANS_L)
    if not has0:
        if c0 != 0:
            return pos, -1, -1, E_BAD_FIELD
        c0 = -1
    if not has1:
        if c1 != 0:
            return pos, -1, -1, E_BAD_FIELD
        c1 = -1
    return pos, c0, c1, OK
