"""Blob-level numba kernels: header, whole-blob encoders, and the single / batch decoders.

A blob is ``codec id (8 bits)``, ``count (LEB128 varint)``, then the codec body, zero-padded to a whole byte.
Batch decoders take the Arrow binary layout (one ``uint8`` buffer plus ``offsets``) and decode every chunk in
one call into one preallocated output: serially, or over a chunk range so that threads (``codecs.api``)
can split a batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.alpans import (
    alp_ans_decode,
    alp_ans_max_bits,
    alp_ans_plan,
    alp_ans_plan_bits,
    alp_ans_write,
)
from tsdb_lake.codecs.bits import (
    E_BAD_FIELD,
    E_CODEC,
    E_COUNT,
    E_TRAILING,
    E_TRUNCATED,
    OK,
    finish,
    get,
    load_words,
    new_words,
    put,
    put_varint,
    varint_bits,
)
from tsdb_lake.codecs.floatcodecs import (
    MAX_EXP,
    alp_candidates,
    alp_decode,
    alp_ints,
    alp_max_bits,
    raw_decode,
    raw_encode,
    rle_bits,
    rle_decode,
    rle_encode,
    rle_runs,
)
from tsdb_lake.codecs.gorilla import gorilla_bits, gorilla_decode, gorilla_encode, gorilla_max_bits
from tsdb_lake.codecs.ids import MAX_EXPANSION, MAX_SLACK
from tsdb_lake.codecs.intpack import (
    ints_decode,
    ints_encode,
    ints_max_bits,
    ints_plan,
    ints_write,
    pfor_stream_cost,
    pfor_write,
)

__all__ = [
    "C_ALP",
    "C_ALP_ANS",
    "C_GORILLA",
    "C_INT64",
    "C_RAW",
    "C_RLE",
    "C_TIMESTAMP",
    "MASK_ANY",
    "MASK_FLOAT",
    "adaptive_words",
    "blob_max_bits",
    "decode_blob",
    "decode_many_range",
    "decode_many_serial",
    "encode_adaptive",
    "encode_float_blob",
    "encode_int_blob",
    "float_words",
    "int_words",
    "reduce_many_range",
    "scan_counts",
]

U64 = np.uint64
C_TIMESTAMP = 1
C_INT64 = 2
C_GORILLA = 3
C_RAW = 4
C_RLE = 5
C_ALP = 6
C_ALP_ANS = 7
MASK_FLOAT = (1 << C_GORILLA) | (1 << C_RAW) | (1 << C_RLE) | (1 << C_ALP) | (1 << C_ALP_ANS)
MASK_ANY = MASK_FLOAT | (1 << C_TIMESTAMP) | (1 << C_INT64)
_HEADER_BITS = 8 + 80
ANS_MARGIN_SHIFT = 5  # ALP_ANS must beat the best other codec by more than best / 2^5


@njit(cache=True)
def _header(words: np.ndarray, codec: int, n: int) -> int:
    pos = put(words, 0, U64(codec), 8)
    return put_varint(words, pos, U64(n))


@njit(cache=True)
def int_words(codec: int, x: np.ndarray) -> tuple[np.ndarray, int]:
    """A TIMESTAMP or INT64 blob of ``x`` (uint64 view of int64 values) as ``(words, end bit position)``."""
    n = x.shape[0]
    words = new_words(_HEADER_BITS + ints_max_bits(n))
    pos = _header(words, codec, n)
    pos = ints_encode(words, pos, x, True)
    return words, pos


@njit(cache=True)
def encode_int_blob(codec: int, x: np.ndarray) -> np.ndarray:
    """A TIMESTAMP or INT64 blob of ``x`` (uint64 view of int64 values)."""
    words, pos = int_words(codec, x)
    return finish(words, pos)


@njit(cache=True)
def blob_max_bits(codec: int, n: int) -> int:
    """Upper bound of the bits of a blob of ``n`` values with ``codec`` (0 = adaptive: never above raw)."""
    if codec in (C_TIMESTAMP, C_INT64):
        return _HEADER_BITS + ints_max_bits(n)
    if codec == C_GORILLA:
        return _HEADER_BITS + gorilla_max_bits(n)
    if codec == C_RLE:
        return _HEADER_BITS + 88 + 144 * n
    if codec == C_ALP:
        return _HEADER_BITS + alp_max_bits(n)
    if codec == C_ALP_ANS:
        return _HEADER_BITS + alp_ans_max_bits(n)
    return _HEADER_BITS + 64 * n


@njit(cache=True)
def _alp_try(
    vals: np.ndarray, e: int, f: int
) -> tuple[int, np.ndarray, np.ndarray, int, int, np.ndarray, np.uint64]:
    """Exact ALP body bits of ``vals`` for ``(e, f)`` without writing it (``n >= 1``).

    Returns ``(bits, d, corrections, inexact count, int-stream mode, its PFOR values, its parameter)``.
    """
    d, corr, k = alp_ints(vals, e, f)
    mode, icost, u, param = ints_plan(d.view(np.uint64), True)
    return 16 + icost + pfor_stream_cost(corr), d, corr, k, mode, u, param


@njit(cache=True)
def _alp_plan(
    vals: np.ndarray,
) -> tuple[int, int, int, np.ndarray, np.ndarray, int, np.ndarray, np.uint64]:
    """The smallest ALP body among the candidates, plus one step towards more precision when needed (``n >= 1``).

    Returns ``(body bits, e, f, d, corrections, int-stream mode, PFOR values, parameter)`` of the winner
    (its integers feed ALP_ANS; :func:`_alp_write` writes it). The candidates come from a 64-value sample;
    when the best one leaves in-range values needing corrections that the sample did not show, the next more
    precise exponent pair (``e + 1``, or ``f - 1``) is tried too. Sizes are exact, so the first smallest wins.
    """
    cands = alp_candidates(vals)
    be = cands[0, 0]
    bf = cands[0, 1]
    best, bd, bc, inexact, bmode, bu, bparam = _alp_try(vals, be, bf)
    for r in range(1, cands.shape[0]):
        c, d, corr, k, mode, u, param = _alp_try(vals, cands[r, 0], cands[r, 1])
        if c < best:
            best, be, bf, inexact, bd, bc, bmode, bu, bparam = (
                c,
                cands[r, 0],
                cands[r, 1],
                k,
                d,
                corr,
                mode,
                u,
                param,
            )
    if inexact > 0 and (bf > 0 or be < MAX_EXP):
        ne = be + 1 if bf == 0 else 0
        nf = bf - 1 if bf > 0 else 0
        tried = False
        for r in range(cands.shape[0]):
            if cands[r, 0] == ne and cands[r, 1] == nf:
                tried = True
        if not tried:
            c, d, corr, _, mode, u, param = _alp_try(vals, ne, nf)
            if c < best:
                best, be, bf, bd, bc, bmode, bu, bparam = c, ne, nf, d, corr, mode, u, param
    return best, be, bf, bd, bc, bmode, bu, bparam


@njit(cache=True)
def _alp_write(
    e: int, f: int, d: np.ndarray, corr: np.ndarray, mode: int, u: np.ndarray, param: np.uint64
) -> tuple[np.ndarray, int]:
    """The ALP blob of a plan of :func:`_alp_plan` as ``(words, end bit position)``."""
    n = d.shape[0]
    w = new_words(_HEADER_BITS + alp_max_bits(n))
    p = _header(w, C_ALP, n)
    p = put(w, p, U64(e), 8)
    p = put(w, p, U64(f), 8)
    p = ints_write(w, p, d.view(np.uint64), mode, u, param)
    return w, pfor_write(w, p, corr)


@njit(cache=True)
def _alp_words(vals: np.ndarray) -> tuple[np.ndarray, int, int, int, np.ndarray, np.ndarray]:
    """The smallest ALP blob (:func:`_alp_plan`) as ``(words, end bit position, e, f, d, corrections)``."""
    n = vals.shape[0]
    if n == 0:
        w = new_words(_HEADER_BITS)
        return w, _header(w, C_ALP, 0), 0, 0, np.empty(0, np.int64), np.empty(0, np.uint64)
    _, e, f, d, corr, mode, u, param = _alp_plan(vals)
    words, pos = _alp_write(e, f, d, corr, mode, u, param)
    return words, pos, e, f, d, corr


@njit(cache=True)
def _alp_ans_words(d: np.ndarray, corr: np.ndarray, e: int, f: int) -> tuple[np.ndarray, int]:
    """An ALP_ANS blob of the ALP integers ``d`` and corrections ``corr`` of exponents ``(e, f)``."""
    n = d.shape[0]
    if n == 0:
        words = new_words(_HEADER_BITS)
        return words, _header(words, C_ALP_ANS, 0)
    plan = alp_ans_plan(d, corr)
    words = new_words(_HEADER_BITS + alp_ans_plan_bits(n, plan))  # a tight bound: less to zero
    pos = _header(words, C_ALP_ANS, n)
    return words, alp_ans_write(words, pos, d, corr, e, f, plan)


@njit(cache=True)
def float_words(codec: int, vals: np.ndarray) -> tuple[np.ndarray, int]:
    """A float blob of ``vals`` with the given codec as ``(words, end bit position)``.

    ALP encodes the one or two candidates :func:`alp_candidates` proposes and keeps the smaller; ALP_ANS
    uses the exponents of that ALP winner.
    """
    n = vals.shape[0]
    bits = vals.view(np.uint64)
    if codec == C_GORILLA:
        words = new_words(_HEADER_BITS + gorilla_max_bits(n))
        pos = gorilla_encode(words, _header(words, codec, n), bits)
    elif codec == C_RLE:
        words = new_words(_HEADER_BITS + 88 + 144 * rle_runs(bits))
        pos = rle_encode(words, _header(words, codec, n), bits)
    elif codec == C_ALP:
        words, pos, _, _, _, _ = _alp_words(vals)
    elif codec == C_ALP_ANS:
        _, _, e, f, d, corr = _alp_words(vals)
        words, pos = _alp_ans_words(d, corr, e, f)
    else:
        words = new_words(_HEADER_BITS + 64 * n)
        pos = raw_encode(words, _header(words, C_RAW, n), bits)
    return words, pos


@njit(cache=True)
def encode_float_blob(codec: int, vals: np.ndarray) -> np.ndarray:
    """A float blob of ``vals`` with the given codec."""
    words, pos = float_words(codec, vals)
    return finish(words, pos)


@njit(cache=True)
def _alp_floor(n: int) -> int:
    """Fewest body bits an ALP body of ``n`` values can take: exponents, int-stream header, all-zero blocks."""
    m = n - 2 if n > 2 else 0
    return 16 + 72 + (m + 127) // 128 + (n + 127) // 128


@njit(cache=True)
def adaptive_words(vals: np.ndarray) -> tuple[np.ndarray, int]:
    """The smallest of RLE, ALP, ALP_ANS, Gorilla and raw for ``vals`` as ``(words, end bit position)``.

    Ties: RAW, then RLE (if not larger), then Gorilla and ALP (each only if strictly smaller), then ALP_ANS
    only if more than 1/32 smaller than the best of RAW, RLE and ALP (its decoder is slower; a Gorilla that
    lost to ALP_ANS is not part of that comparison): the exact rule is ``catalog/CODECS.md`` §10.
    Sizes of RAW, RLE, ALP and Gorilla are computed exactly without writing (ALP is written only if it wins);
    ALP_ANS (with ALP's exponents) is encoded first; Gorilla's size pass stops as soon as it cannot win.
    """
    n = vals.shape[0]
    bits = vals.view(np.uint64)
    best = 64 * n
    pre = C_RAW
    if 72 * rle_runs(bits) < 64 * n:
        rb = rle_bits(bits)
        if rb <= best:
            best = rb
            pre = C_RLE
    if n == 0 or best <= _alp_floor(n):  # neither ALP nor ALP_ANS can win
        if gorilla_bits(bits, best) < best:
            return float_words(C_GORILLA, vals)
        return float_words(pre, vals)
    alp, e, f, d, corr, mode, u, param = _alp_plan(vals)  # exact size; written only if it wins
    ans_w, ans_pos = _alp_ans_words(d, corr, e, f)
    ans = ans_pos - 8 - varint_bits(U64(n))
    limit = min(best, min(alp, ans) + 1)
    if gorilla_bits(bits, limit) < limit:
        return float_words(C_GORILLA, vals)
    if alp < best:
        best = alp
        pre = C_ALP
    if ans < best - (best >> ANS_MARGIN_SHIFT):  # slower to decode: must save over 1/32 of the best
        return ans_w, ans_pos
    if pre == C_ALP:
        return _alp_write(e, f, d, corr, mode, u, param)
    return float_words(pre, vals)


@njit(cache=True)
def encode_adaptive(vals: np.ndarray) -> np.ndarray:
    """The smallest of RLE, ALP, ALP_ANS, Gorilla and raw for ``vals`` (see :func:`adaptive_words`)."""
    words, pos = adaptive_words(vals)
    return finish(words, pos)


@njit(cache=True)
def _parse_header(data: np.ndarray, start: int, end: int) -> tuple[int, int, int]:
    """``(codec, count, status)`` from the header bytes of ``data[start:end]``."""
    nb = end - start
    if nb < 2:
        return 0, 0, E_TRUNCATED
    codec = int(data[start])
    n = U64(0)
    for k in range(10):
        if 1 + k >= nb:
            return codec, 0, E_TRUNCATED
        b = U64(data[start + 1 + k])
        if k == 9 and b > U64(1):
            return codec, 0, E_BAD_FIELD
        n |= (b & U64(0x7F)) << U64(7 * k)
        if b < U64(0x80):
            if n > U64(MAX_EXPANSION * nb + MAX_SLACK):
                return codec, 0, E_COUNT
            return codec, int(np.int64(n)), OK
    return codec, 0, E_BAD_FIELD


@njit(cache=True)
def _decode_rest(
    codec: int, words: np.ndarray, pos: int, total: int, n: int, out: np.ndarray, o: int
) -> tuple[int, int]:
    """Gorilla, raw and RLE bodies (kept out of :func:`decode_blob` so its hot paths optimise well)."""
    if codec == C_GORILLA:
        return gorilla_decode(words, pos, total, n, out, o)
    if codec == C_RAW:
        return raw_decode(words, pos, total, n, out, o)
    if codec == C_RLE:
        return rle_decode(words, pos, total, n, out, o)
    return pos, E_CODEC


@njit(cache=True)
def decode_blob(
    data: np.ndarray, start: int, end: int, mask: int, out: np.ndarray, outf: np.ndarray, o: int
) -> int:
    """Decode blob ``data[start:end]`` into ``out[o:o+count]``; its codec must be in bit ``mask``; status."""
    codec, n, st = _parse_header(data, start, end)
    if st != OK:
        return st
    if codec < 1 or codec > 63 or ((mask >> codec) & 1) == 0:
        return E_CODEC
    if o + n > out.shape[0]:
        return E_COUNT
    words = load_words(data, start, end)
    total = 8 * (end - start)
    pos = 8
    while get(words, pos, 8) >= U64(0x80):
        pos += 8
    pos += 8
    if codec in (C_TIMESTAMP, C_INT64):
        pos, st = ints_decode(words, pos, total, n, out, o)
    elif codec == C_ALP:
        pos, st = alp_decode(words, pos, total, n, out, outf, o)
    elif codec == C_ALP_ANS:
        pos, st = alp_ans_decode(words, pos, total, n, out, outf, o)
    else:
        pos, st = _decode_rest(codec, words, pos, total, n, out, o)
    if st != OK:
        return st
    if pos > total:
        return E_TRUNCATED
    if ((pos + 7) >> 3) != end - start:
        return E_TRAILING
    if (pos & 7) != 0 and get(words, pos, 8 - (pos & 7)) != U64(0):
        return E_TRAILING
    return OK


@njit(cache=True)
def scan_counts(data: np.ndarray, offsets: np.ndarray, mask: int) -> tuple[np.ndarray, int, int]:
    """Value count of every chunk: ``(counts, status, index of the first bad chunk or -1)``."""
    m = offsets.shape[0] - 1
    counts = np.zeros(max(m, 0), np.int64)
    for i in range(m):
        s = int(offsets[i])
        e = int(offsets[i + 1])
        if s < 0 or e < s or e > data.shape[0]:
            return counts, E_BAD_FIELD, i
        codec, n, st = _parse_header(data, s, e)
        if st != OK:
            return counts, st, i
        if codec < 1 or codec > 63 or ((mask >> codec) & 1) == 0:
            return counts, E_CODEC, i
        counts[i] = n
    return counts, OK, -1


@njit(cache=True)
def decode_many_serial(
    data: np.ndarray, offsets: np.ndarray, starts: np.ndarray, mask: int, out: np.ndarray, outf: np.ndarray
) -> np.ndarray:
    """Decode every chunk ``data[offsets[i]:offsets[i+1]]`` into ``out[starts[i]:]``; per-chunk status."""
    m = offsets.shape[0] - 1
    status = np.zeros(m, np.int64)
    for i in range(m):
        status[i] = decode_blob(data, int(offsets[i]), int(offsets[i + 1]), mask, out, outf, int(starts[i]))
        if status[i] != OK:
            break
    return status


@njit(cache=True, nogil=True)
def decode_many_range(
    data: np.ndarray,
    offsets: np.ndarray,
    starts: np.ndarray,
    mask: int,
    out: np.ndarray,
    outf: np.ndarray,
    status: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """As :func:`decode_many_serial` for chunks ``lo..hi-1`` into ``status``; releases the GIL, so disjoint
    ranges can decode on several threads at once."""
    for i in range(lo, hi):
        st = decode_blob(data, int(offsets[i]), int(offsets[i + 1]), mask, out, outf, int(starts[i]))
        status[i] = st
        if st != OK:
            break


@njit(cache=True, nogil=True)
def reduce_many_range(
    data: np.ndarray,
    offsets: np.ndarray,
    counts: np.ndarray,
    mask: int,
    sums: np.ndarray,
    mins: np.ndarray,
    maxs: np.ndarray,
    status: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """Decode float chunks ``lo..hi-1`` one at a time into a scratch buffer and keep only each chunk's sum
    (IEEE: NaN propagates), minimum and maximum (NaN skipped unless every value is NaN; NaN for an empty
    chunk); per-chunk status. Releases the GIL."""
    cap = 0
    for i in range(lo, hi):
        cap = max(cap, int(counts[i]))
    scratch = np.empty(cap, np.uint64)
    v = scratch.view(np.float64)
    acc = np.zeros(8, np.float64)
    for i in range(lo, hi):
        st = decode_blob(data, int(offsets[i]), int(offsets[i + 1]), mask, scratch, v, 0)
        status[i] = st
        if st != OK:
            break
        n = int(counts[i])
        acc[:] = 0.0
        mn = np.inf
        mx = -np.inf
        nans = 0
        n8 = n - n % 8
        for j in range(0, n8, 8):
            for k in range(8):
                x = v[j + k]
                acc[k] += x
                if x < mn:
                    mn = x
                if x > mx:
                    mx = x
                if x != x:
                    nans += 1
        s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for j in range(n8, n):
            x = v[j]
            s += x
            if x < mn:
                mn = x
            if x > mx:
                mx = x
            if x != x:
                nans += 1
        if nans == n:
            mn = np.nan
            mx = np.nan
        sums[i] = s
        mins[i] = mn
        maxs[i] = mx
