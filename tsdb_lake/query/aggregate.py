"""Time-bucketed aggregation of point frames (``every`` / ``agg`` / ``by`` / ``fill``).

Semantics (documented for users and matched by the oracle tests):
- buckets are aligned to the epoch, ``[b, b + every)``, like ``time_bucket``;
- ``count`` counts non-null values (NaN included); ``min`` / ``max`` ignore NaN unless every value is NaN;
  ``sum`` / ``avg`` / ``stddev`` follow IEEE arithmetic (a NaN makes them NaN); ``stddev`` is the sample
  standard deviation; ``pNN`` is the exact quantile with linear interpolation (DuckDB ``quantile_cont``);
- ``first`` / ``last`` are the values at the earliest / latest timestamp of the bucket;
- ``increase`` sums per-series positive deltas, treating a drop as a counter reset (Prometheus style),
  attributing each delta to the bucket of its later point; ``rate`` is ``increase`` per second of ``every``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID

__all__ = [
    "AGGREGATES",
    "DECOMPOSABLE",
    "FILLS",
    "AggSpec",
    "aggregate",
    "finish_buckets",
    "parse_aggs",
    "partial_names",
    "reduce_segments",
    "reduced_partials",
]

AGGREGATES = ("avg", "mean", "min", "max", "sum", "count", "first", "last", "stddev", "increase", "rate")
FILLS = ("none", "null", "previous", "linear")
BUCKET = "time"
_QUANTILE_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


@dataclass(frozen=True)
class AggSpec:
    """One aggregate: its name as the user wrote it and, for quantiles, the fraction in [0, 1]."""

    name: str
    quantile: float | None = None

    @property
    def kind(self) -> str:
        """The aggregate family: a name from :data:`AGGREGATES` or ``"quantile"``."""
        if self.quantile is not None:
            return "quantile"
        return "avg" if self.name == "mean" else self.name


def parse_aggs(agg: str | Sequence[str] | None) -> list[AggSpec]:
    """Parse ``agg`` (a name or list of names: avg, min, max, ..., p50, p99, p99.9, median)."""
    names = ["avg"] if agg is None else [agg] if isinstance(agg, str) else list(agg)
    if not names:
        raise InvalidQueryError("agg must name at least one aggregate")
    out = []
    for name in names:
        lowered = str(name).strip().lower()
        if lowered == "median":
            out.append(AggSpec("median", 0.5))
        elif m := _QUANTILE_RE.match(lowered):
            out.append(AggSpec(lowered, float(m.group(1)) / 100.0))
        elif lowered in AGGREGATES:
            out.append(AggSpec(lowered))
        else:
            raise InvalidQueryError(
                f"unknown aggregate {name!r}; use one of {', '.join(AGGREGATES)}, median or pNN (e.g. p99)"
            )
    return out


def _increase_column(field: str) -> str:
    return f"_inc__{field}"


def _with_increases(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    exprs = []
    for f in fields:
        # the previous non-null value of the series: a point without the counter does not break the chain
        prev = pl.col(f).shift(1).forward_fill().over(SERIES_ID)
        delta = pl.col(f) - prev
        exprs.append(
            pl.when(prev.is_null())
            .then(0.0)
            .when(delta < 0)
            .then(pl.col(f))
            .otherwise(delta)
            .cast(pl.Float64)
            .alias(_increase_column(f))
        )
    return frame.with_columns(exprs)


def _agg_expr(field: str, spec: AggSpec, every: int) -> pl.Expr:
    col = pl.col(field)
    out = f"{field}_{spec.name}"
    kind = spec.kind
    if kind == "avg":
        return col.cast(pl.Float64).mean().alias(out)
    if kind in ("min", "max"):
        # polars' min / max skip NaN unless every value is NaN (unlike nan_min / nan_max): our semantics.
        return (col.min() if kind == "min" else col.max()).alias(out)
    if kind == "sum":
        return col.sum().alias(out)
    if kind == "count":
        return col.count().cast(pl.Int64).alias(out)
    if kind == "first":
        return col.drop_nulls().first().alias(out)
    if kind == "last":
        return col.drop_nulls().last().alias(out)
    if kind == "stddev":
        return col.cast(pl.Float64).std(ddof=1).alias(out)
    if kind == "quantile":
        assert spec.quantile is not None
        return col.cast(pl.Float64).quantile(spec.quantile, interpolation="linear").alias(out)
    inc = pl.col(_increase_column(field)).sum()
    if kind == "increase":
        return inc.alias(out)
    return (inc / (every / 1e9)).alias(out)


def aggregate(
    frame: pl.DataFrame,
    *,
    every: int,
    aggs: Sequence[AggSpec],
    fields: Sequence[str],
    group_labels: Sequence[str],
    per_series: bool,
    start: int,
    end: int,
    fill: str = "none",
    stats: pl.DataFrame | None = None,
    series: pl.DataFrame | None = None,
    partials: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Bucket a point frame (sorted by series, time) into ``every``-ns buckets grouped by ``group_labels``.

    ``per_series`` groups by series id as well (the default when the user gives no ``by``). Output columns:
    the group labels, ``time`` (bucket start, int64 ns) and ``<field>_<agg>`` per field and aggregate.
    ``stats`` (only with count / min / max aggregates) are chunk statistics answered without decoding, one row
    per chunk (``reader.read_for_query``): their partial aggregates combine with the points' exactly.
    With ``series`` (one row per series id: ``_series_id`` and ``group_labels``) and only
    :data:`DECOMPOSABLE` aggregates, the frame needs no label columns: it is reduced per (series, bucket)
    first and labels are attached per series; ``partials`` (same keys and :func:`partial_names` columns,
    e.g. whole chunks reduced while decoding) join them.
    """
    if fill not in FILLS:
        raise InvalidQueryError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)}")
    if any(s.kind in ("increase", "rate") for s in aggs):
        frame = _with_increases(frame, fields)
    if series is not None and all(s.kind in DECOMPOSABLE for s in aggs):
        result = _aggregate_by_series(
            frame,
            series,
            every=every,
            aggs=aggs,
            fields=fields,
            group_labels=group_labels,
            per_series=per_series,
            stats=stats,
            partials=partials,
        )
    else:
        result = _aggregate_points(frame, every, aggs, fields, group_labels, per_series, stats)
    return finish_buckets(
        result.rename({"_bucket": BUCKET}), group_labels, per_series, every, start, end, fill
    )


def finish_buckets(
    result: pl.DataFrame,
    group_labels: Sequence[str],
    per_series: bool,
    every: int,
    start: int,
    end: int,
    fill: str,
) -> pl.DataFrame:
    """Fill empty buckets, sort by (labels, series, bucket) and order the columns of a bucketed result."""
    keys = [*([SERIES_ID] if per_series else []), *group_labels]
    if fill != "none":
        result = _fill(result, keys, every, start, end, fill)
    sort_keys = [*group_labels, *([SERIES_ID] if per_series else []), BUCKET]
    result = result.sort(sort_keys, nulls_last=False)
    ordered = [*group_labels, BUCKET, *[c for c in result.columns if c not in (*keys, BUCKET)]]
    if per_series:
        ordered = [SERIES_ID, *ordered]
    return result.select(ordered)


def _aggregate_points(
    frame: pl.DataFrame,
    every: int,
    aggs: Sequence[AggSpec],
    fields: Sequence[str],
    group_labels: Sequence[str],
    per_series: bool,
    stats: pl.DataFrame | None,
) -> pl.DataFrame:
    """Any aggregates with polars over a point frame carrying the group labels; keyed by ``_bucket``."""
    bucketed = frame.with_columns((pl.col(TIME_COLUMN) // every * every).alias("_bucket"))
    exprs = [_agg_expr(f, s, every) for f in fields for s in aggs]
    # Group order does not matter (the result is sorted on unique keys below); rows keep their order
    # within a group, which first / last rely on.
    partial_keys = [SERIES_ID, "_bucket"] if per_series else [*group_labels, "_bucket"]
    result = bucketed.group_by(partial_keys).agg(exprs)
    if stats is not None and stats.height:
        result = _combine_stats(result, stats, partial_keys, aggs, fields)
    if per_series and group_labels:
        # Labels are a function of the series id: attach them once per series, not once per bucket.
        names = frame.select([SERIES_ID, *group_labels])
        if stats is not None and stats.height:
            names = pl.concat([names, stats.select([pl.col(c).cast(t) for c, t in names.schema.items()])])
        result = result.join(names.unique(SERIES_ID, keep="first"), on=SERIES_ID, how="left")
    return result


#: Aggregates that combine from per-(series, bucket) partials (count, sum, min, max).
DECOMPOSABLE = frozenset({"count", "sum", "avg", "min", "max"})


def partial_names(f: str) -> tuple[str, str, str, str, str]:
    """Partial-aggregate column names of field ``f``: count, sum, float sum (for avg), min, max."""
    return f"_c__{f}", f"_s__{f}", f"_sf__{f}", f"_lo__{f}", f"_hi__{f}"


def _segment_partials(
    frame: pl.DataFrame, every: int, aggs: Sequence[AggSpec], fields: Sequence[str]
) -> pl.DataFrame:
    """Per (series, bucket) partial count / sum / min / max of ``fields`` in one pass of numpy reductions.

    Rows are grouped where (series, bucket) is constant, so the frame is first ordered by them if needed.
    """
    sid = frame.get_column(SERIES_ID).to_numpy()
    bucket = frame.get_column(TIME_COLUMN).to_numpy() // every * every
    order = None
    if len(sid) > 1:
        ok = (sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (bucket[1:] >= bucket[:-1]))
        if not bool(ok.all()):
            order = np.lexsort((bucket, sid))
            sid, bucket = sid[order], bucket[order]
    if len(sid):
        starts = np.flatnonzero(np.concatenate(([True], (sid[1:] != sid[:-1]) | (bucket[1:] != bucket[:-1]))))
    else:
        starts = np.zeros(0, np.int64)
    columns = {f: frame.get_column(f) for f in fields}
    return reduce_segments(columns, starts, sid[starts], bucket[starts], aggs, order=order)


def reduce_segments(
    columns: Mapping[str, pl.Series],
    starts: np.ndarray,
    series_ids: np.ndarray,
    buckets: np.ndarray,
    aggs: Sequence[AggSpec],
    *,
    order: np.ndarray | None = None,
) -> pl.DataFrame:
    """Partials (see :func:`partial_names`) of contiguous row segments beginning at ``starts`` (non-empty,
    ascending), one row per segment keyed ``_series_id`` / ``_bucket``; ``order`` permutes rows first.

    Nulls are skipped; min / max skip NaN unless a segment holds only NaN (``fmin`` / ``fmax``); sums follow
    IEEE (a NaN makes them NaN) — the semantics of the polars path.
    """
    kinds = {s.kind for s in aggs}
    cols: dict[str, Any] = {
        SERIES_ID: pl.Series(SERIES_ID, series_ids, pl.UInt64),
        "_bucket": pl.Series("_bucket", buckets, pl.Int64),
    }
    for f, series in columns.items():
        c_name, s_name, sf_name, lo_name, hi_name = partial_names(f)
        is_int = series.dtype.is_integer()
        nulls = series.null_count() > 0
        valid = None if not nulls else ~series.is_null().to_numpy()
        values = series.to_numpy() if not nulls else series.fill_null(0).to_numpy()
        if order is not None:
            values = values[order]
            valid = None if valid is None else valid[order]
        n = len(values)
        seg_len = np.diff(np.append(starts, n)) if n else np.zeros(0, np.int64)
        count = (
            seg_len if valid is None else np.add.reduceat(valid.astype(np.int64), starts) if n else seg_len
        )
        cols[c_name] = pl.Series(c_name, count, pl.Int64)
        if not n:
            dtype = pl.Int64 if is_int else pl.Float64
            for kind, name in (("sum", s_name), ("min", lo_name), ("max", hi_name), ("avg", sf_name)):
                if kind in kinds:
                    cols[name] = pl.Series(name, [], pl.Float64 if kind == "avg" else dtype)
            continue
        none = count == 0
        if "sum" in kinds:
            cols[s_name] = pl.Series(
                s_name, np.add.reduceat(values, starts), pl.Int64 if is_int else pl.Float64
            )
        if "avg" in kinds:
            as_float = values.astype(np.float64, copy=False)
            cols[sf_name] = pl.Series(sf_name, np.add.reduceat(as_float, starts), pl.Float64)
        for kind, name in (("min", lo_name), ("max", hi_name)):
            if kind not in kinds:
                continue
            if is_int:
                fill = np.iinfo(np.int64).max if kind == "min" else np.iinfo(np.int64).min
                v = values if valid is None else np.where(valid, values, fill)
                red = (np.minimum if kind == "min" else np.maximum).reduceat(v, starts)
            else:
                v = values if valid is None else np.where(valid, values, np.nan)
                red = (np.fmin if kind == "min" else np.fmax).reduceat(v, starts)
            cols[name] = pl.Series(name, pa.array(red, mask=none)) if none.any() else pl.Series(name, red)
    return pl.DataFrame(cols)


def reduced_partials(
    reduced: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], aggs: Sequence[AggSpec]
) -> dict[str, pl.Series]:
    """Partial columns (see :func:`partial_names`) of float fields from per-segment ``(count, sum, min, max)``
    (e.g. ``format.raw.reduce_float_fields``); min / max are null where the count is 0."""
    kinds = {s.kind for s in aggs}
    cols: dict[str, pl.Series] = {}
    for f, (count, total, lo, hi) in reduced.items():
        c_name, s_name, sf_name, lo_name, hi_name = partial_names(f)
        cols[c_name] = pl.Series(c_name, count, pl.Int64)
        if "sum" in kinds:
            cols[s_name] = pl.Series(s_name, total, pl.Float64)
        if "avg" in kinds:
            cols[sf_name] = pl.Series(sf_name, total, pl.Float64)
        none = count == 0
        for kind, name, red in (("min", lo_name, lo), ("max", hi_name, hi)):
            if kind in kinds:
                cols[name] = pl.Series(name, pa.array(red, mask=none)) if none.any() else pl.Series(name, red)
    return cols


def _combine_partials(
    parts: pl.DataFrame, keys: Sequence[str], aggs: Sequence[AggSpec], fields: Sequence[str]
) -> pl.DataFrame:
    """Partials of the same ``keys`` merged: counts and sums add up, min / max of the parts (NaN rule kept)."""
    kinds = {s.kind for s in aggs}
    exprs: list[pl.Expr] = []
    for f in fields:
        c_name, s_name, sf_name, lo_name, hi_name = partial_names(f)
        exprs.append(pl.col(c_name).sum())
        if "sum" in kinds:
            exprs.append(pl.col(s_name).sum())
        if "avg" in kinds:
            exprs.append(pl.col(sf_name).sum())
        if "min" in kinds:
            exprs.append(pl.col(lo_name).min())
        if "max" in kinds:
            exprs.append(pl.col(hi_name).max())
    return parts.group_by(list(keys)).agg(exprs)


def _finish_partials(parts: pl.DataFrame, aggs: Sequence[AggSpec], fields: Sequence[str]) -> list[pl.Expr]:
    out: list[pl.Expr] = []
    for f in fields:
        c_name, s_name, sf_name, lo_name, hi_name = partial_names(f)
        for spec in aggs:
            name = f"{f}_{spec.name}"
            kind = spec.kind
            if kind == "count":
                out.append(pl.col(c_name).cast(pl.Int64).alias(name))
            elif kind == "sum":
                out.append(pl.col(s_name).alias(name))
            elif kind == "avg":
                out.append(
                    pl.when(pl.col(c_name) > 0)
                    .then(pl.col(sf_name) / pl.col(c_name))
                    .otherwise(None)
                    .alias(name)
                )
            elif kind == "min":
                out.append(pl.col(lo_name).alias(name))
            else:
                out.append(pl.col(hi_name).alias(name))
    return out


def _stats_partials(stats: pl.DataFrame, aggs: Sequence[AggSpec], fields: Sequence[str]) -> pl.DataFrame:
    """Chunk statistics (count / min / max only) as partials keyed by series and bucket."""
    from tsdb_lake.format.raw import max_col, min_col, n_col

    kinds = {s.kind for s in aggs}
    exprs: list[pl.Expr] = [pl.col(SERIES_ID), pl.col("_bucket")]
    for f in fields:
        c_name, _, _, lo_name, hi_name = partial_names(f)
        exprs.append(pl.col(n_col(f)).cast(pl.Int64).alias(c_name))
        if "min" in kinds:
            exprs.append(pl.col(min_col(f)).alias(lo_name))
        if "max" in kinds:
            exprs.append(pl.col(max_col(f)).alias(hi_name))
    return stats.select(exprs)


def _aggregate_by_series(
    frame: pl.DataFrame,
    series: pl.DataFrame,
    *,
    every: int,
    aggs: Sequence[AggSpec],
    fields: Sequence[str],
    group_labels: Sequence[str],
    per_series: bool,
    stats: pl.DataFrame | None,
    partials: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Decomposable aggregates: partials per (series, bucket) from the points (and chunk statistics or
    ready partials), then labels attached once per series and partials combined per (labels, bucket) when
    not per series."""
    parts = _segment_partials(frame, every, aggs, fields)
    more = [] if partials is None or not partials.height else [partials]
    if stats is not None and stats.height:
        more.append(_stats_partials(stats, aggs, fields))
    if more:
        parts = pl.concat(
            [parts, *[m.select([pl.col(c).cast(t) for c, t in parts.schema.items()]) for m in more]]
        )
        parts = _combine_partials(parts, [SERIES_ID, "_bucket"], aggs, fields)
    names = series.select([SERIES_ID, *group_labels])
    if per_series:
        result = parts.join(names, on=SERIES_ID, how="left") if group_labels else parts
    else:
        joined = parts.join(names, on=SERIES_ID, how="left").drop(SERIES_ID)
        result = _combine_partials(joined, [*group_labels, "_bucket"], aggs, fields)
    keys = [*([SERIES_ID] if per_series else []), *group_labels]
    return result.select([*keys, "_bucket", *_finish_partials(result, aggs, fields)])


def _combine_stats(
    result: pl.DataFrame,
    stats: pl.DataFrame,
    keys: Sequence[str],
    aggs: Sequence[AggSpec],
    fields: Sequence[str],
) -> pl.DataFrame:
    """Merge per-chunk statistics into the points' partial aggregates grouped by ``keys``.

    count adds up; min / max take the min / max of the parts, which keep our NaN rule: a part is NaN only when
    all its values are NaN, and polars' min / max skip NaN unless every part is NaN (nulls are skipped).
    """
    from tsdb_lake.format.raw import max_col, min_col, n_col

    if any(s.kind not in ("count", "min", "max") for s in aggs):
        raise InvalidQueryError("chunk statistics answer only count, min and max")
    stat_exprs: list[pl.Expr] = []
    combine: list[pl.Expr] = []
    for f in fields:
        for spec in aggs:
            out = f"{f}_{spec.name}"
            if spec.kind == "count":
                stat_exprs.append(pl.col(n_col(f)).sum().cast(pl.Int64).alias(out))
                combine.append(pl.col(out).sum().cast(pl.Int64))
            elif spec.kind == "min":
                stat_exprs.append(pl.col(min_col(f)).min().alias(out))
                combine.append(pl.col(out).min())
            else:
                stat_exprs.append(pl.col(max_col(f)).max().alias(out))
                combine.append(pl.col(out).max())
    parts = stats.group_by(list(keys)).agg(stat_exprs)
    parts = parts.select([pl.col(c).cast(t) for c, t in result.schema.items()])
    return pl.concat([result, parts]).group_by(list(keys)).agg(combine)


def _fill(
    result: pl.DataFrame, keys: Sequence[str], every: int, start: int, end: int, fill: str
) -> pl.DataFrame:
    first = start // every * every
    buckets = pl.DataFrame({BUCKET: pl.int_range(first, end, every, dtype=pl.Int64, eager=True)})
    if keys:
        groups = result.select(keys).unique(maintain_order=True)
        grid = groups.join(buckets, how="cross")
    else:
        grid = buckets
    # Keep the labels of per-series rows on the grid: join on the keys, bring the rest along.
    filled = grid.join(result, on=[*keys, BUCKET], how="left", nulls_equal=True)
    value_cols = [c for c in result.columns if c not in (*keys, BUCKET)]
    if fill == "null":
        return filled
    over = list(keys) or None
    if fill == "previous":
        exprs = [
            pl.col(c).forward_fill().over(over) if over else pl.col(c).forward_fill() for c in value_cols
        ]
    else:
        exprs = [
            pl.col(c).cast(pl.Float64).interpolate().over(over)
            if over
            else pl.col(c).cast(pl.Float64).interpolate()
            for c in value_cols
        ]
    return filled.sort([*keys, BUCKET]).with_columns(exprs)
