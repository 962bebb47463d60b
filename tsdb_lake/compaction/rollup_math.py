"""Rollup math: bucket state from raw points and coarser buckets by merging finer ones (numba kernels).

The *bucket state* of a (series, bucket) is the row layout of :mod:`tsdb_lake.format.rollup`. Two pure
functions build it: :func:`points_to_rollup` (raw points → buckets) and :func:`merge_rollup` (buckets →
coarser buckets, never re-reading raw). Rows are cut into runs of equal (series, bucket) and each field is
aggregated by one numba pass per run; quantile state comes from :mod:`tsdb_lake.compaction.sketches`.
Counter increase is defined so that merging is exact:

* a bucket's ``increase`` sums the reset-aware deltas between consecutive non-null values *inside* the
  bucket (the bucket's first value contributes nothing);
* the delta from the previous bucket's ``last`` to this bucket's ``first`` (a *boundary delta*) is not part
  of either bucket; whoever merges buckets adds the boundary deltas between consecutive non-empty buckets
  of a series (``delta(prev, cur) = cur - prev``, or ``cur`` when ``cur < prev`` — a reset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from tsdb_lake.catalog import MetricSchema
from tsdb_lake.compaction.sketches import (
    SKETCH_K,
    merge_state_columns,
    no_state_columns,
    state_columns,
    state_from_points,
)
from tsdb_lake.format.rollup import FieldInfo, col, empty_rollup_frame, rollup_polars_schema
from tsdb_lake.model import TIME_COLUMN, FieldKind
from tsdb_lake.points import SERIES_ID

__all__ = [
    "boundary_deltas",
    "field_infos",
    "merge_rollup",
    "points_to_rollup",
    "sort_by_series_time",
    "state_rollup",
]


# ---------------------------------------------------------------------------------------------- pure math


def field_infos(schema: MetricSchema, fields: Sequence[str] | None = None) -> dict[str, FieldInfo]:
    """:class:`FieldInfo` of the schema's fields (all, or ``fields``)."""
    names = list(schema.fields) if fields is None else list(fields)
    return {f: FieldInfo(schema.fields[f].dtype, schema.fields[f].kind == FieldKind.COUNTER) for f in names}


def _reset_delta(prev: pl.Expr, cur: pl.Expr) -> pl.Expr:
    """``cur - prev``, or ``cur`` when it dropped (a counter reset); null if either is null, NaN propagates."""
    delta = cur.cast(pl.Float64) - prev.cast(pl.Float64)
    return pl.when(delta < 0).then(cur.cast(pl.Float64)).otherwise(delta)


def _prev_in_group(value: pl.Expr, keys: Sequence[str]) -> pl.Expr:
    """The previous non-null ``value`` in frame order within the same ``keys`` (null if none).

    The frame must be sorted so that each key group is contiguous.
    """
    valid = value.is_not_null()
    prev_val = pl.when(valid).then(value).forward_fill().shift(1)
    same = pl.lit(True)
    for k in keys:
        same = same & (pl.when(valid).then(pl.col(k)).forward_fill().shift(1) == pl.col(k))
    return pl.when(same).then(prev_val)


def boundary_deltas(frame: pl.DataFrame, fields: Sequence[str], keys: Sequence[str]) -> pl.DataFrame:
    """Add ``_cross__f``: the boundary delta from the previous non-empty bucket of the same ``keys``.

    ``frame`` holds bucket rows sorted by (series, time); null where there is no previous bucket.
    """
    return frame.with_columns(
        [
            _reset_delta(_prev_in_group(pl.col(col(f, "last")), keys), pl.col(col(f, "first"))).alias(
                f"_cross__{f}"
            )
            for f in fields
        ]
    )


@njit(cache=True, nogil=True)
def _agg_points(
    v: np.ndarray, valid: np.ndarray, t: np.ndarray, off: np.ndarray, counter: bool
) -> tuple[np.ndarray, ...]:
    """Per segment ``[off[i], off[i+1])`` of points: count, sum, min, max, first, last (+ times), sumsq, increase.

    ``valid`` marks non-null values; the mask arrays (``has``, ``has_min``) say where min / max / first /
    last are defined (count > 0).
    """
    m = off.shape[0] - 1
    count = np.zeros(m, np.int64)
    total = np.zeros(m, v.dtype)
    vmin = np.zeros(m, v.dtype)
    vmax = np.zeros(m, v.dtype)
    first = np.zeros(m, v.dtype)
    last = np.zeros(m, v.dtype)
    first_t = np.zeros(m, np.int64)
    last_t = np.zeros(m, np.int64)
    sumsq = np.zeros(m)
    inc = np.zeros(m)
    for i in range(m):
        n = 0
        acc = total[i]
        sq = 0.0
        ic = 0.0
        lo = v[0]
        hi = v[0]
        seen_num = False
        any_nan = False
        prev = 0.0
        for j in range(off[i], off[i + 1]):
            if not valid[j]:
                continue
            x = v[j]
            xf = float(x)
            if n == 0:
                first[i] = x
                first_t[i] = t[j]
            elif counter:
                d = xf - prev
                ic += xf if d < 0 else d
            last[i] = x
            last_t[i] = t[j]
            prev = xf
            n += 1
            acc += x
            sq += xf * xf
            if xf != xf:
                any_nan = True
            elif not seen_num:
                lo = x
                hi = x
                seen_num = True
            else:
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
        count[i] = n
        total[i] = acc
        sumsq[i] = sq
        inc[i] = ic
        if seen_num:
            vmin[i] = lo
            vmax[i] = hi
        elif any_nan:
            vmin[i] = np.nan
            vmax[i] = np.nan
    return count, total, vmin, vmax, first, first_t, last, last_t, sumsq, inc


@njit(cache=True, nogil=True)
def _agg_rows(
    count: np.ndarray,
    total: np.ndarray,
    vmin: np.ndarray,
    vmax: np.ndarray,
    first: np.ndarray,
    first_t: np.ndarray,
    last: np.ndarray,
    last_t: np.ndarray,
    sumsq: np.ndarray,
    inc: np.ndarray,
    has_min: np.ndarray,
    has_first: np.ndarray,
    off: np.ndarray,
    counter: bool,
) -> tuple[np.ndarray, ...]:
    """Merge bucket rows per segment: sums add, min / max ignore NaN, first / last by row order, increase adds
    the in-row increases and the boundary deltas between consecutive rows that hold values."""
    m = off.shape[0] - 1
    o_count = np.zeros(m, np.int64)
    o_total = np.zeros(m, total.dtype)
    o_min = np.zeros(m, vmin.dtype)
    o_max = np.zeros(m, vmax.dtype)
    o_hmin = np.zeros(m, np.bool_)
    o_first = np.zeros(m, first.dtype)
    o_last = np.zeros(m, last.dtype)
    o_ft = np.zeros(m, np.int64)
    o_lt = np.zeros(m, np.int64)
    o_hfirst = np.zeros(m, np.bool_)
    o_sq = np.zeros(m)
    o_inc = np.zeros(m)
    for i in range(m):
        seen_num = False
        any_min = False
        have_prev = False
        prev = 0.0
        for j in range(off[i], off[i + 1]):
            o_count[i] += count[j]
            o_total[i] += total[j]
            o_sq[i] += sumsq[j]
            if counter:
                o_inc[i] += inc[j]
            if has_min[j]:
                any_min = True
                lo = vmin[j]
                hi = vmax[j]
                if float(lo) == float(lo):
                    if not seen_num:
                        o_min[i] = lo
                        o_max[i] = hi
                        seen_num = True
                    else:
                        if lo < o_min[i]:
                            o_min[i] = lo
                        if hi > o_max[i]:
                            o_max[i] = hi
            if has_first[j]:
                if not o_hfirst[i]:
                    o_first[i] = first[j]
                    o_ft[i] = first_t[j]
                    o_hfirst[i] = True
                elif counter and have_prev:
                    d = float(first[j]) - prev
                    o_inc[i] += float(first[j]) if d < 0 else d
                o_last[i] = last[j]
                o_lt[i] = last_t[j]
                prev = float(last[j])
                have_prev = True
        if any_min:
            o_hmin[i] = True
            if not seen_num:
                o_min[i] = np.nan
                o_max[i] = np.nan
    return o_count, o_total, o_min, o_max, o_first, o_ft, o_last, o_lt, o_sq, o_inc, o_hmin, o_hfirst


def _np(s: pl.Series, dtype: Any, fill: Any = 0) -> np.ndarray:
    return np.ascontiguousarray(s.fill_null(fill).to_numpy(), dtype=dtype)


def _masked(name: str, arr: np.ndarray, valid: np.ndarray) -> pl.Series:
    return pl.Series(name, pa.array(arr, mask=~valid))


def _segments(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Offsets of runs of equal ``keys`` (all the same length, at least one row)."""
    n = keys[0].shape[0]
    change = np.zeros(n, bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.append(np.flatnonzero(change), n).astype(np.int64)


def sort_by_series_time(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (series, time), stably; returned as is when it already is (no copy)."""
    sid = frame.get_column(SERIES_ID).to_numpy()
    t = frame.get_column(TIME_COLUMN).to_numpy()
    ok = (sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (t[1:] >= t[:-1]))
    return frame if bool(ok.all()) else frame.sort([SERIES_ID, TIME_COLUMN], maintain_order=True)


def _head(
    frame: pl.DataFrame, labels: Sequence[str], starts: np.ndarray, buckets: np.ndarray
) -> list[pl.Series]:
    idx = pl.Series(starts)
    return [
        frame.get_column(SERIES_ID).gather(idx),
        *[frame.get_column(label).gather(idx) for label in labels],
        pl.Series(TIME_COLUMN, buckets[starts]),
    ]


def _field_series(
    f: str, info: FieldInfo, res: tuple[np.ndarray, ...], has: np.ndarray, has_min: np.ndarray
) -> list[pl.Series]:
    count, total, vmin, vmax, first, first_t, last, last_t, sumsq, inc = res[:10]
    out = [
        pl.Series(col(f, "count"), count),
        pl.Series(col(f, "sum"), total),
        _masked(col(f, "min"), vmin, has_min),
        _masked(col(f, "max"), vmax, has_min),
        _masked(col(f, "first"), first, has),
        _masked(col(f, "first_time"), first_t, has),
        _masked(col(f, "last"), last, has),
        _masked(col(f, "last_time"), last_t, has),
        pl.Series(col(f, "sumsq"), sumsq),
    ]
    if info.counter:
        out.append(pl.Series(col(f, "increase"), inc))
    return out


def points_to_rollup(
    points: pl.DataFrame,
    labels: Sequence[str],
    fields: Mapping[str, FieldInfo],
    bucket_ns: int,
    *,
    sketches: bool = True,
    k: int = SKETCH_K,
    quantile_state: bool = True,
) -> pl.DataFrame:
    """Bucket rows of a point frame (the 1m tier from raw points); sorted by (series, time) if it is not.

    ``sketches=False`` keeps exact histograms in every bucket whatever their size; ``quantile_state=False``
    leaves the ``values`` / ``weights`` / ``sketch`` columns null (a tier without quantile state).
    """
    if points.height == 0:
        return empty_rollup_frame(labels, fields)
    points = sort_by_series_time(points)
    t = _np(points.get_column(TIME_COLUMN), np.int64)
    buckets = t // bucket_ns * bucket_ns
    off = _segments([points.get_column(SERIES_ID).to_numpy(), buckets])
    cols = _head(points, labels, off[:-1], buckets)
    for f, info in fields.items():
        s = points.get_column(f)
        is_int = info.dtype == "int64"
        valid = s.is_not_null().to_numpy()
        v = _np(s, np.int64 if is_int else np.float64)
        res = _agg_points(v, valid, t, off, info.counter)
        has = res[0] > 0
        cols += _field_series(f, info, res, has, has)
        names = (col(f, "values"), col(f, "weights"), col(f, "sketch"))
        if not quantile_state:
            cols += no_state_columns(names, off.shape[0] - 1)
            continue
        hist = state_from_points(v.astype(np.float64) if is_int else v, valid, off)
        cols += state_columns(hist, names, allow_sketch=sketches, k=k)
    return _conform(pl.DataFrame(cols), labels, fields)


def state_rollup(
    points: pl.DataFrame,
    fields: Mapping[str, FieldInfo],
    bucket_ns: int,
    *,
    sketches: bool = True,
    k: int = SKETCH_K,
) -> pl.DataFrame:
    """Only the quantile state of the buckets of a point frame: ``_series_id``, ``time`` and per field
    ``values`` / ``weights`` / ``sketch`` — the rows :func:`points_to_rollup` would give, in the same order."""
    schema: dict[str, pl.DataType] = {SERIES_ID: pl.UInt64(), TIME_COLUMN: pl.Int64()}
    for f in fields:
        schema |= {col(f, p): pl.Binary() for p in ("values", "weights", "sketch")}
    if points.height == 0:
        return pl.DataFrame(schema=schema)
    points = sort_by_series_time(points)
    t = _np(points.get_column(TIME_COLUMN), np.int64)
    buckets = t // bucket_ns * bucket_ns
    off = _segments([points.get_column(SERIES_ID).to_numpy(), buckets])
    cols = [
        points.get_column(SERIES_ID).gather(pl.Series(off[:-1])),
        pl.Series(TIME_COLUMN, buckets[off[:-1]]),
    ]
    for f, info in fields.items():
        s = points.get_column(f)
        valid = s.is_not_null().to_numpy()
        v = _np(s, np.float64)
        if info.dtype == "int64":
            v = _np(s, np.int64).astype(np.float64)
        hist = state_from_points(v, valid, off)
        names = (col(f, "values"), col(f, "weights"), col(f, "sketch"))
        cols += state_columns(hist, names, allow_sketch=sketches, k=k)
    return pl.DataFrame(cols).select([pl.col(c).cast(t) for c, t in schema.items()])


def merge_rollup(
    rows: pl.DataFrame,
    labels: Sequence[str],
    fields: Mapping[str, FieldInfo],
    bucket_ns: int,
    *,
    sketches: bool = True,
    k: int = SKETCH_K,
    quantile_state: bool = True,
) -> pl.DataFrame:
    """Merge bucket rows (any finer width dividing ``bucket_ns``) into ``bucket_ns`` buckets (1h from 1m).

    ``quantile_state=False`` skips the quantile state (null columns; a caller that builds it elsewhere).
    """
    if rows.height == 0:
        return empty_rollup_frame(labels, fields)
    rows = sort_by_series_time(rows)
    t = _np(rows.get_column(TIME_COLUMN), np.int64)
    buckets = t // bucket_ns * bucket_ns
    off = _segments([rows.get_column(SERIES_ID).to_numpy(), buckets])
    cols = _head(rows, labels, off[:-1], buckets)
    for f, info in fields.items():
        dt = np.int64 if info.dtype == "int64" else np.float64
        c = lambda part, f=f: rows.get_column(col(f, part))  # noqa: E731
        has_min = c("min").is_not_null().to_numpy()
        has_first = c("first").is_not_null().to_numpy()
        inc = _np(c("increase"), np.float64) if info.counter else np.zeros(rows.height)
        res = _agg_rows(
            _np(c("count"), np.int64),
            _np(c("sum"), dt),
            _np(c("min"), dt),
            _np(c("max"), dt),
            _np(c("first"), dt),
            _np(c("first_time"), np.int64),
            _np(c("last"), dt),
            _np(c("last_time"), np.int64),
            _np(c("sumsq"), np.float64),
            inc,
            has_min,
            has_first,
            off,
            info.counter,
        )
        cols += _field_series(f, info, res, res[11], res[10])
        if not quantile_state:
            cols += no_state_columns(
                (col(f, "values"), col(f, "weights"), col(f, "sketch")), off.shape[0] - 1
            )
            continue
        cols += merge_state_columns(c("values"), c("weights"), c("sketch"), off, allow_sketch=sketches, k=k)
    return _conform(pl.DataFrame(cols), labels, fields)


def _conform(frame: pl.DataFrame, labels: Sequence[str], fields: Mapping[str, FieldInfo]) -> pl.DataFrame:
    schema = rollup_polars_schema(labels, fields)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
