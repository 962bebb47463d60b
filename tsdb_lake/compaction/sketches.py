"""Quantile state of rollup buckets: exact weighted histograms (project codecs) or KLL sketches.

A bucket's quantile state summarises its non-NaN values (the NaN count is ``count - n``) as either

* an **exact histogram**: the distinct values sorted ascending, ``values`` = ``codecs.encode_floats(distinct)``,
  and their multiplicities, ``weights`` = ``codecs.encode_ints(counts)`` — or null when every value occurs once.
  Lossless; sorted distinct values compress far below raw on real metrics (RLE / ALP / Gorilla of a sorted
  sequence), and low-cardinality data (integers, percentages) collapses to its histogram;
* a serialised Apache DataSketches ``kll_doubles_sketch`` with the tier's ``k`` (:data:`SKETCH_K`).

A bucket keeps the histogram while it is no larger than ``8 * k`` bytes (a KLL sketch past ``k`` items
retains at least ``k`` doubles) and no input is a sketch; a tier with ``sketches=False`` always keeps it.
Quantiles follow ``query/aggregate.py``: ``quantile_cont`` (linear interpolation) with NaN after every number.
Hot loops are numba kernels over flat arrays with segment offsets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
from datasketches import kll_doubles_sketch
from numba import njit

from tsdb_lake.codecs import (
    CodecId,
    decode_floats,
    decode_floats_many,
    decode_ints,
    decode_ints_many,
    encode_floats_many,
    encode_ints_many,
)
from tsdb_lake.errors import CorruptBlockError

__all__ = [
    "SKETCH_K",
    "HistState",
    "build_sketch",
    "decode_state",
    "exact_limit_bytes",
    "hist_normalise",
    "merge_state_columns",
    "no_state_columns",
    "quantile_from_sketch",
    "quantiles",
    "rank_error",
    "register_duckdb_udfs",
    "seg_max_sum",
    "sketch_n",
    "state_columns",
    "state_from_points",
]

#: KLL ``k`` of every sketch the lake writes (recorded in each rollup file's footer as ``tsdb_lake.sketch_k``).
SKETCH_K = 200
#: Rows with at most this many values list them all (repeats included) rather than distinct values + weights.
EXPAND_MAX = 32

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def rank_error(k: int = SKETCH_K) -> float:
    """KLL's stated normalised rank error of single quantile queries (99% confidence) for ``k``."""
    return float(kll_doubles_sketch.get_normalized_rank_error(k, False))


def exact_limit_bytes(k: int = SKETCH_K) -> int:
    """Largest encoded histogram a sketching tier keeps exactly (a compacted KLL sketch holds >= k doubles)."""
    return 8 * k


def build_sketch(
    values: F64 | None,
    sketches: Sequence[bytes] = (),
    k: int = SKETCH_K,
    weights: I64 | None = None,
) -> kll_doubles_sketch:
    """A sketch of ``values`` (repeated ``weights`` times; NaN ignored) merged with the serialised ``sketches``."""
    sk = kll_doubles_sketch(k)
    if values is not None and len(values):
        vals = np.asarray(values, np.float64)
        if weights is not None:
            vals = np.repeat(vals, np.asarray(weights, np.int64))
        sk.update(np.array(vals, dtype=np.float64))
    for blob in sketches:
        sk.merge(kll_doubles_sketch.deserialize(bytes(blob)))
    return sk


def sketch_n(blob: bytes) -> int:
    """How many (non-NaN) values a serialised sketch summarises."""
    return int(kll_doubles_sketch.deserialize(bytes(blob)).n)


def quantile_from_sketch(sk: kll_doubles_sketch, q: float, count: int) -> float:
    """Approximate ``quantile_cont(q)`` of a bucket of ``count`` values whose non-NaN part is ``sk``.

    NaN sorts after every number (as in polars): if the interpolation needs a NaN position the answer is NaN.
    """
    m = int(sk.n)
    if count <= 0:
        return math.nan
    pos = q * (count - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if hi >= m or lo >= m:
        return math.nan
    if m == 1:
        return float(sk.get_min_value())
    rank = min(1.0, max(0.0, pos / (m - 1)))
    if rank <= 0.0:
        return float(sk.get_min_value())
    if rank >= 1.0:
        return float(sk.get_max_value())
    return float(sk.get_quantile(rank, True))


# ------------------------------------------------------------------------------------------ numba kernels


@njit(cache=True, nogil=True)
def _insertion_sort(v: F64, w: I64, n: int) -> None:
    """Sort ``v[:n]`` ascending in place, carrying ``w`` along."""
    for j in range(1, n):
        x = v[j]
        y = w[j]
        k = j - 1
        while k >= 0 and v[k] > x:
            v[k + 1] = v[k]
            w[k + 1] = w[k]
            k -= 1
        v[k + 1] = x
        w[k + 1] = y


@njit(cache=True, nogil=True)
def _hist_kernel(
    vals: F64,
    ubits: npt.NDArray[np.uint64],
    weights: I64,
    keep: npt.NDArray[np.bool_],
    offsets: I64,
    unit: bool,
) -> tuple[F64, I64, I64]:
    """Distinct values (ascending) and summed weights of each segment's entries where ``keep``.

    ``ubits`` are the bit patterns of ``vals`` (``-0.0`` normalised to ``0.0``, NaN not kept). Values are
    counted in a small open-addressing hash table, then only the distinct ones are sorted; a segment whose
    first 64 entries hold more than 48 distinct values is sorted whole instead (``unit``: all weights 1).
    """
    m = offsets.shape[0] - 1
    out_v = np.empty(vals.shape[0], np.float64)
    out_w = np.empty(vals.shape[0], np.int64)
    out_off = np.zeros(m + 1, np.int64)
    longest = 1
    for i in range(m):
        longest = max(longest, offsets[i + 1] - offsets[i])
    cap = 16
    while cap < 2 * longest:
        cap *= 2
    slots = np.full(cap, -1, np.int64)
    dv = np.empty(longest, np.float64)
    dw = np.empty(longest, np.int64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    pos = 0
    for i in range(m):
        s, e = offsets[i], offsets[i + 1]
        nd = 0
        if e > s:
            bits = 4
            while (1 << bits) < 2 * (e - s):
                bits += 1
            mask = (1 << bits) - 1
            shift = np.uint64(64 - bits)
            seen = 0
            whole_sort = False
            for j in range(s, e):
                if not keep[j]:
                    continue
                x = vals[j]
                seen += 1
                h = np.int64((ubits[j] * mult) >> shift)
                while True:
                    si = slots[h]
                    if si < 0:
                        slots[h] = nd
                        dv[nd] = x
                        dw[nd] = weights[j]
                        nd += 1
                        break
                    if dv[si] == x:
                        dw[si] += weights[j]
                        break
                    h = (h + 1) & mask
                if seen == 64 and nd > 48:
                    whole_sort = True
                    break
            for j in range(1 << bits):
                slots[j] = -1
            if whole_sort:
                nd = 0
                for j in range(s, e):
                    if keep[j]:
                        dv[nd] = vals[j]
                        dw[nd] = weights[j]
                        nd += 1
                k = 0
                if unit:
                    srt = np.sort(dv[:nd])
                    for j in range(nd):
                        if k > 0 and srt[j] == out_v[pos + k - 1]:
                            out_w[pos + k - 1] += 1
                        else:
                            out_v[pos + k] = srt[j]
                            out_w[pos + k] = 1
                            k += 1
                else:
                    order = np.argsort(dv[:nd])
                    for j in range(nd):
                        x = dv[order[j]]
                        if k > 0 and x == out_v[pos + k - 1]:
                            out_w[pos + k - 1] += dw[order[j]]
                        else:
                            out_v[pos + k] = x
                            out_w[pos + k] = dw[order[j]]
                            k += 1
                nd = k
            elif nd <= 64:
                _insertion_sort(dv, dw, nd)
                out_v[pos : pos + nd] = dv[:nd]
                out_w[pos : pos + nd] = dw[:nd]
            else:
                order = np.argsort(dv[:nd])
                for j in range(nd):
                    out_v[pos + j] = dv[order[j]]
                    out_w[pos + j] = dw[order[j]]
        pos += nd
        out_off[i + 1] = pos
    return out_v[:pos], out_w[:pos], out_off


def hist_normalise(vals: F64, weights: I64, offsets: I64) -> tuple[F64, I64, I64, I64]:
    """Sort and deduplicate each segment ``vals[offsets[i]:offsets[i+1]]`` summing ``weights``.

    Returns ``(distinct values, weights, segment offsets, max weight per segment)``; NaN must be absent.
    """
    v = np.ascontiguousarray(vals, dtype=np.float64) + 0.0  # -0.0 == 0.0: one bit pattern
    keep = np.ones(v.shape[0], np.bool_)
    w = np.ascontiguousarray(weights, dtype=np.int64)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    hv, hw, hoff = _hist_kernel(v, v.view(np.uint64), w, keep, off, False)
    max_w, _ = seg_max_sum(hw, hoff)
    return hv, hw, hoff, max_w


@njit(cache=True)
def _quantile_kernel(
    vals: F64, weights: I64, row_off: I64, group_off: I64, counts: I64, qs: F64
) -> npt.NDArray[np.float64]:
    """Exact ``quantile_cont`` per group of contiguous rows; NaN where the position falls on a NaN / no data."""
    g = group_off.shape[0] - 1
    out = np.full((g, qs.shape[0]), np.nan)
    for i in range(g):
        s, e = row_off[group_off[i]], row_off[group_off[i + 1]]
        n = counts[i]
        if n <= 0 or e <= s:
            continue
        seg = vals[s:e]
        order = np.argsort(seg)
        m = 0
        for j in range(e - s):
            m += weights[s + j]
        for qi in range(qs.shape[0]):
            p = qs[qi] * (n - 1)
            lo = math.floor(p)
            hi = math.ceil(p)
            if hi >= m:
                continue
            # value at sorted (expanded) index lo and hi
            acc = 0
            v_lo = np.nan
            v_hi = np.nan
            for j in range(e - s):
                w = weights[s + order[j]]
                if v_lo != v_lo and lo < acc + w:
                    v_lo = seg[order[j]]
                if hi < acc + w:
                    v_hi = seg[order[j]]
                    break
                acc += w
            if lo == hi:
                out[i, qi] = v_lo
            else:
                out[i, qi] = v_lo + (p - lo) * (v_hi - v_lo)
    return out


@njit(cache=True, nogil=True)
def seg_max_sum(w: I64, off: I64) -> tuple[I64, I64]:
    """Per-segment max and sum of ``w`` (0 for empty segments)."""
    m = off.shape[0] - 1
    mx = np.zeros(m, np.int64)
    sm = np.zeros(m, np.int64)
    for i in range(m):
        for j in range(off[i], off[i + 1]):
            sm[i] += w[j]
            if w[j] > mx[i]:
                mx[i] = w[j]
    return mx, sm


@njit(cache=True)
def _interleave(
    da: np.ndarray, oa: I64, db: np.ndarray, ob: I64, is_b: npt.NDArray[np.bool_]
) -> tuple[np.ndarray, I64]:
    """Merge two blob batches into row order: row ``i`` comes from batch b when ``is_b[i]``."""
    m = is_b.shape[0]
    out_off = np.zeros(m + 1, np.int64)
    ia = 0
    ib = 0
    for i in range(m):
        if is_b[i]:
            out_off[i + 1] = out_off[i] + ob[ib + 1] - ob[ib]
            ib += 1
        else:
            out_off[i + 1] = out_off[i] + oa[ia + 1] - oa[ia]
            ia += 1
    out = np.empty(out_off[m], np.uint8)
    ia = 0
    ib = 0
    for i in range(m):
        if is_b[i]:
            out[out_off[i] : out_off[i + 1]] = db[ob[ib] : ob[ib + 1]]
            ib += 1
        else:
            out[out_off[i] : out_off[i + 1]] = da[oa[ia] : oa[ia + 1]]
            ia += 1
    return out, out_off


def _encode_values(vals: F64, off: I64, lens: I64) -> tuple[np.ndarray, I64]:
    """Float blobs per row: Gorilla for rows of at most :data:`EXPAND_MAX` values, the adaptive codec above.

    The adaptive codec's exponent search costs ~6 µs per blob whatever its size; on rows of a few values
    Gorilla is within a few bytes of it (measured in ``catalog/ROLLUPS.md``) at a tenth of the time.
    """
    big = lens > EXPAND_MAX
    if not big.any():
        return encode_floats_many(vals, off, CodecId.GORILLA)  # type: ignore[no-any-return]
    if big.all():
        return encode_floats_many(vals, off)  # type: ignore[no-any-return]
    per_val = np.repeat(big, lens)
    parts = []
    for sel, codec in ((~big, CodecId.GORILLA), (big, None)):
        sub_off = np.zeros(int(sel.sum()) + 1, np.int64)
        np.cumsum(lens[sel], out=sub_off[1:])
        mask = per_val if codec is None else ~per_val
        parts.append(encode_floats_many(np.ascontiguousarray(vals[mask]), sub_off, codec))
    return _interleave(parts[0][0], parts[0][1], parts[1][0], parts[1][1], big)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------ columns


def _binary(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    m = offsets.shape[0] - 1
    validity = None
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.large_binary(), m, [validity, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(data)]
    )


def _blob_series(name: str, arr: pa.Array) -> pl.Series:
    return pl.Series(name, arr.cast(pa.large_binary()), pl.Binary)  # type: ignore[arg-type]


class HistState:
    """Histograms of ``m`` rows as flat arrays: row ``i`` is ``vals[off[i]:off[i+1]]`` with ``weights``."""

    __slots__ = ("off", "vals", "weights")

    def __init__(self, vals: F64, weights: I64, off: I64) -> None:
        self.vals, self.weights, self.off = vals, weights, off

    def columns(
        self, values_name: str, weights_name: str, keep: np.ndarray | None = None
    ) -> tuple[pl.Series, pl.Series]:
        """The ``values`` / ``weights`` blob columns (rows where ``keep`` is False are null).

        Small or duplicate-free rows list every value (repeats included) with null ``weights``; others list
        distinct values with their multiplicities — whichever is typically smaller.
        """
        m = self.off.shape[0] - 1
        keep_arr = np.ones(m, bool) if keep is None else np.asarray(keep, bool)
        max_w, tot_w = seg_max_sum(self.weights, self.off)
        distinct = np.diff(self.off)
        use_w = keep_arr & (max_w > 1) & (tot_w > EXPAND_MAX)
        seg_id = np.repeat(np.arange(m), distinct)
        per_val_w = use_w[seg_id]
        rep = np.where(per_val_w, 1, self.weights) * keep_arr[seg_id]
        vals = np.repeat(self.vals, rep)
        lens = np.where(use_w, distinct, tot_w) * keep_arr
        off = np.zeros(m + 1, np.int64)
        np.cumsum(lens, out=off[1:])
        vdata, voff = _encode_values(vals, off, lens)
        w_sub = np.ascontiguousarray(self.weights[per_val_w])
        w_off = np.zeros(int(use_w.sum()) + 1, np.int64)
        np.cumsum(distinct[use_w], out=w_off[1:])
        wdata, wblob_off = encode_ints_many(w_sub, w_off)
        wlens = np.zeros(m, np.int64)
        wlens[use_w] = np.diff(wblob_off)
        wfull = np.zeros(m + 1, np.int64)
        np.cumsum(wlens, out=wfull[1:])
        return (
            _blob_series(values_name, _binary(vdata, voff, keep_arr)),
            _blob_series(weights_name, _binary(wdata, wfull, use_w)),
        )

    def sizes(self, values: pl.Series, weights: pl.Series) -> npt.NDArray[np.int64]:
        """Encoded bytes per row of the two blob columns."""
        return (  # type: ignore[no-any-return]
            values.bin.size().fill_null(0).to_numpy() + weights.bin.size().fill_null(0).to_numpy()
        )


def state_from_points(vals: F64, valid: np.ndarray, seg_off: I64) -> HistState:
    """Histograms of point segments ``vals[seg_off[i]:seg_off[i+1]]`` over entries ``valid`` and not NaN."""
    v = np.ascontiguousarray(vals, dtype=np.float64) + 0.0  # -0.0 == 0.0: one bit pattern
    keep = np.asarray(valid, np.bool_) & ~np.isnan(v)
    ones = np.ones(v.shape[0], np.int64)
    hv, hw, hoff = _hist_kernel(
        v, v.view(np.uint64), ones, keep, np.ascontiguousarray(seg_off, np.int64), True
    )
    return HistState(hv, hw, hoff)


def decode_state(values: pl.Series, weights: pl.Series) -> HistState:
    """Decode the histogram blobs of rows (null ``values`` rows — sketches — hold nothing)."""
    n = values.len()
    has = values.is_not_null().to_numpy()
    lens = np.zeros(n, np.int64)
    vals = np.zeros(0, np.float64)
    if has.any():
        arr = values.filter(pl.Series(has)).to_arrow().cast(pa.large_binary())
        vals, counts = decode_floats_many(arr)
        lens[has] = counts
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    w = np.ones(vals.shape[0], np.int64)
    has_w = weights.is_not_null().to_numpy() & has
    if has_w.any():
        arr = weights.filter(pl.Series(has_w)).to_arrow().cast(pa.large_binary())
        wv, wc = decode_ints_many(arr)
        if not np.array_equal(wc, lens[has_w]):
            raise CorruptBlockError("rollup weights do not match their values")
        w[np.repeat(has_w, lens)] = wv
    return HistState(np.ascontiguousarray(vals, dtype=np.float64), w, off)


def no_state_columns(names: tuple[str, str, str], m: int) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Null ``(values, weights, sketch)`` columns of ``m`` rows: a tier that keeps no quantile state."""
    null = (
        pl.Series("", [None], pl.Binary).extend_constant(None, m - 1) if m else pl.Series("", [], pl.Binary)
    )
    return null.alias(names[0]), null.alias(names[1]), null.alias(names[2])


def state_columns(
    hist: HistState,
    names: tuple[str, str, str],
    *,
    allow_sketch: bool,
    k: int = SKETCH_K,
    sketch_parts: Sequence[Sequence[bytes]] | None = None,
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """The ``(values, weights, sketch)`` columns of groups whose histograms are ``hist``.

    A group becomes a KLL sketch of ``k`` when ``sketch_parts[i]`` (sketches among its inputs) is non-empty,
    or when ``allow_sketch`` holds, it has more than ``k`` values and its histogram encodes larger than
    :func:`exact_limit_bytes`; otherwise it stays an exact histogram.
    """
    g = hist.off.shape[0] - 1
    v_name, w_name, s_name = names
    vcol, wcol = hist.columns(v_name, w_name)
    need = np.zeros(g, bool)
    if sketch_parts is not None:
        need |= np.fromiter((len(p) > 0 for p in sketch_parts), bool, g)
    if allow_sketch:
        _, total_w = seg_max_sum(hist.weights, hist.off)
        need |= (hist.sizes(vcol, wcol) > exact_limit_bytes(k)) & (total_w > k)
    if not need.any():
        return vcol, wcol, pl.Series(s_name, [None] * g, pl.Binary)
    blobs: list[bytes | None] = [None] * g
    for i in np.flatnonzero(need).tolist():
        a, b = hist.off[i], hist.off[i + 1]
        parts = sketch_parts[i] if sketch_parts is not None else ()
        blobs[i] = build_sketch(hist.vals[a:b], parts, k, hist.weights[a:b]).serialize()
    vcol, wcol = hist.columns(v_name, w_name, ~need)
    return vcol, wcol, pl.Series(s_name, blobs, pl.Binary)


def merge_state_columns(
    values: pl.Series,
    weights: pl.Series,
    sketches: pl.Series,
    group_off: I64,
    *,
    allow_sketch: bool,
    k: int = SKETCH_K,
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Merge the quantile state of rows (contiguous groups ``group_off``) into one state per group."""
    rows = decode_state(values, weights)
    hv, hw, hoff, _ = hist_normalise(rows.vals, rows.weights, rows.off[group_off])
    g = group_off.shape[0] - 1
    parts: list[list[bytes]] | None = None
    has_sk = sketches.is_not_null().to_numpy()
    if has_sk.any():
        parts = [[] for _ in range(g)]
        row_group = np.repeat(np.arange(g), np.diff(group_off))
        sk_list = sketches.to_list()
        for r in np.flatnonzero(has_sk).tolist():
            parts[row_group[r]].append(sk_list[r])
    names = (values.name, weights.name, sketches.name)
    return state_columns(HistState(hv, hw, hoff), names, allow_sketch=allow_sketch, k=k, sketch_parts=parts)


def quantiles(
    values: pl.Series,
    weights: pl.Series,
    sketches: pl.Series | None,
    counts: I64,
    group_off: I64,
    qs: Sequence[float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``quantile_cont`` of each group of contiguous rows for every ``q``: ``(g × len(qs) array, approximate)``.

    ``counts`` are the groups' value counts (NaN included). Exact from histograms; groups holding a sketch are
    merged into one KLL sketch (flagged in the second result).
    """
    rows = decode_state(values, weights)
    q_arr = np.asarray(qs, np.float64)
    out = _quantile_kernel(rows.vals, rows.weights, rows.off, group_off, counts.astype(np.int64), q_arr)
    g = group_off.shape[0] - 1
    approx = np.zeros(g, bool)
    if sketches is not None and sketches.null_count() < sketches.len():
        has_sk = sketches.is_not_null().to_numpy()
        row_group = np.repeat(np.arange(g), np.diff(group_off))
        approx[row_group[has_sk]] = True
        sk_list = sketches.to_list()
        for i in np.flatnonzero(approx).tolist():
            r0, r1 = group_off[i], group_off[i + 1]
            a, b = rows.off[r0], rows.off[r1]
            sk = build_sketch(
                rows.vals[a:b], [x for x in sk_list[r0:r1] if x is not None], SKETCH_K, rows.weights[a:b]
            )
            for qi, q in enumerate(qs):
                out[i, qi] = quantile_from_sketch(sk, q, int(counts[i])) if counts[i] else math.nan
    return out, approx


# ------------------------------------------------------------------------------------------ DuckDB


def register_duckdb_udfs(con: object) -> None:
    """Register ``rollup_quantile(sketches BLOB[], values BLOB[], weights BLOB[], q DOUBLE) -> DOUBLE``.

    Pass a field's ``f__sketch``, ``f__values`` and ``f__weights`` columns of the rows to combine, aggregated
    with ``list()``: ``rollup_quantile(list(u__sketch), list(u__values), list(u__weights), 0.99)``. Exact
    (interpolated) when no row holds a sketch, otherwise KLL-approximate. NaN values are ignored.
    """
    import duckdb

    def rollup_quantile(
        sketches: list[bytes | None] | None,
        values: list[bytes | None] | None,
        weights: list[bytes | None] | None,
        q: float,
    ) -> float | None:
        blobs = [b for b in (sketches or []) if b is not None]
        vs = list(values or [])
        ws = list(weights or []) + [None] * max(0, len(vs) - len(weights or []))
        parts_v, parts_w = [], []
        for v, w in zip(vs, ws, strict=False):
            if v is None:
                continue
            dv = decode_floats(bytes(v))
            parts_v.append(dv)
            parts_w.append(decode_ints(bytes(w)) if w is not None else np.ones(dv.shape[0], np.int64))
        flat = np.concatenate(parts_v) if parts_v else np.zeros(0)
        wts = np.concatenate(parts_w) if parts_w else np.zeros(0, np.int64)
        m = int(wts.sum())
        if not blobs:
            if m == 0:
                return None
            out = _quantile_kernel(
                flat,
                wts,
                np.array([0, flat.shape[0]], np.int64),
                np.array([0, 1], np.int64),
                np.array([m], np.int64),
                np.array([q], np.float64),
            )
            return float(out[0, 0])
        sk = build_sketch(flat, blobs, SKETCH_K, wts)
        return None if sk.is_empty() else quantile_from_sketch(sk, q, int(sk.n))

    assert isinstance(con, duckdb.DuckDBPyConnection)
    blob_list = duckdb.list_type(duckdb.sqltype("BLOB"))
    con.create_function(  # type: ignore[call-overload]
        "rollup_quantile",
        rollup_quantile,
        [blob_list, blob_list, blob_list, "DOUBLE"],
        "DOUBLE",
        null_handling="special",
    )
