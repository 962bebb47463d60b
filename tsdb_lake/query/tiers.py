"""Tier routing: answer bucketed queries from rollup tiers where they hold the data, raw elsewhere.

For ``resolution="auto"`` each part of ``[start, end)`` is answered by the *coarsest* built rollup tier whose
bucket divides ``every`` (fewest rows; every aggregate but quantiles is exact from any tier; quantiles only
from tiers that keep quantile state, ``compaction.rollup.quantile_tiers``), falling back to
finer tiers and finally raw where a tier is not built (watermark), being rebuilt (dirty), expired
(retention), would miss unflushed writes, or cannot cover a partial bucket at the range edges. Typically
that stitches raw for recent data, then 1m, 1h and 1d for older data. ``resolution="1h"`` (etc.) uses one
tier for the whole range or raises :class:`InvalidQueryError`.

Every part is turned into bucket state (rollup rows; raw parts are bucketed on the fly) and the states are
merged into output buckets with :func:`aggregate_rollup`, which follows ``query/aggregate.py``: avg = sum /
count, stddev from count, sum and sum of squares, first / last by time, increase from in-bucket increases
plus boundary deltas, quantiles exact from value lists or approximate (flagged) from merged KLL sketches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tsdb_lake.catalog import MetricSchema, Snapshot, TierSpec
from tsdb_lake.compaction.rollup import (
    boundary_deltas,
    field_infos,
    points_to_rollup,
    quantile_tiers,
    rollup_tiers,
)
from tsdb_lake.compaction.sketches import quantiles
from tsdb_lake.errors import InvalidQueryError, TsdbLakeError
from tsdb_lake.format.rollup import FieldInfo, col, empty_rollup_frame, read_rollup
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.query.aggregate import BUCKET, AggSpec, finish_buckets
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.matchers import Matcher
from tsdb_lake.query.reader import plan_files, read_points
from tsdb_lake.query.timeutil import now_ns
from tsdb_lake.storage import layout
from tsdb_lake.storage.base import Storage

__all__ = ["Part", "aggregate_rollup", "parts_needed", "plan_parts", "run_tiered"]

RAW = "raw"
_OUT = "_out"
_ROWS = "_rows"


@dataclass(frozen=True)
class Part:
    """``[start, end)`` answered by ``tier`` (``"raw"`` or a rollup tier name)."""

    tier: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        """The explain form."""
        return {"tier": self.tier, "start": self.start, "end": self.end}


def parts_needed(aggs: Sequence[AggSpec]) -> list[str]:
    """The rollup columns (per field) the aggregates read."""
    need = {"count"}
    for a in aggs:
        kind = a.kind
        if kind in ("avg", "sum"):
            need |= {"sum"}
        elif kind in ("min", "max"):
            need.add(kind)
        elif kind in ("first", "last"):
            need |= {kind, f"{kind}_time"}
        elif kind == "stddev":
            need |= {"sum", "sumsq", "min", "max"}
        elif kind == "quantile":
            need |= {"values", "weights", "sketch"}
        elif kind in ("increase", "rate"):
            need |= {"increase", "first", "last", "first_time", "last_time"}
    return sorted(need)


# ------------------------------------------------------------------------------------------- planning


def _ceil(t: int, step: int) -> int:
    return -((-t) // step) * step


def _subtract(ranges: list[tuple[int, int]], cut: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out = ranges
    for cs, ce in cut:
        nxt = []
        for s, e in out:
            if ce <= s or cs >= e:
                nxt.append((s, e))
                continue
            if s < cs:
                nxt.append((s, cs))
            if ce < e:
                nxt.append((ce, e))
        out = nxt
    return out


def tier_coverage(
    snapshot: Snapshot, tenant: str, metric: str, spec: TierSpec, now: int, start: int, end: int
) -> list[tuple[int, int]]:
    """Bucket-aligned sub-ranges of ``[start, end)`` the tier can answer (built, clean, retained)."""
    mark = snapshot.watermark(tenant, metric, spec.name)
    if mark is None:
        return []
    b = spec.bucket_ns
    lo, hi = _ceil(start, b), min(end // b * b, mark // b * b)
    ttl = snapshot.retention_for(tenant, metric, spec.name)
    if ttl is not None:
        cutoff = now - ttl
        with contextlib.suppress(TsdbLakeError):  # cutoff outside the partitionable range: nothing expired
            lo = max(lo, layout.partition_bounds(layout.partition_of(spec.name, cutoff))[0])
    if lo >= hi:
        return []
    dirty = [(s // b * b, _ceil(e, b)) for s, e in snapshot.dirty(tenant, metric, spec.name)]
    return _subtract([(lo, hi)], dirty)


def plan_parts(
    snapshot: Snapshot,
    tenant: str,
    metric: str,
    start: int,
    end: int,
    every: int,
    resolution: str | None,
    *,
    buffered_min: int | None = None,
    now: int | None = None,
    quantiles: bool = False,
) -> list[Part]:
    """Which tier answers which part of ``[start, end)``, sorted by time; raises for an impossible tier.

    ``quantiles``: the query asks for quantiles, so only tiers that keep quantile state (see
    ``compaction.rollup.quantile_tiers``) may answer; raw answers the rest.
    """
    now = now_ns() if now is None else now
    tiers = rollup_tiers(snapshot, tenant, metric)
    usable_end = end if buffered_min is None else min(end, buffered_min)
    if resolution not in (None, "auto"):
        spec = next((t for t in tiers if t.name == resolution), None)
        if spec is None:
            names = [t.name for t in tiers]
            raise InvalidQueryError(
                f"resolution {resolution!r} is not a rollup tier of {tenant}/{metric}; use 'auto', 'raw' or one of {names}"
            )
        if quantiles and spec.name not in quantile_tiers(tiers):
            raise InvalidQueryError(
                f"tier {resolution!r} keeps no quantile state (its buckets hold too few values to pay for it); "
                "use resolution='auto', 'raw' or a coarser tier for quantiles"
            )
        if every % spec.bucket_ns:
            raise InvalidQueryError(
                f"resolution {resolution!r} ({spec.bucket_ns} ns buckets) cannot answer every={every} ns: "
                "the bucket must divide every"
            )
        cover = tier_coverage(snapshot, tenant, metric, spec, now, start, usable_end)
        if cover != [(start, end)]:
            mark = snapshot.watermark(tenant, metric, spec.name)
            raise InvalidQueryError(
                f"tier {resolution!r} cannot answer [{start}, {end}): it needs the range aligned to its "
                f"buckets, built (watermark {mark}), not being rebuilt, retained and without unflushed writes; "
                f"it covers {cover}. Use resolution='auto' to stitch tiers"
            )
        return [Part(spec.name, start, end)]
    todo = [(start, end)]
    parts: list[Part] = []
    usable = quantile_tiers(tiers) if quantiles else {t.name for t in tiers}
    candidates = [t for t in tiers if every % t.bucket_ns == 0 and t.name in usable]
    for spec in sorted(candidates, key=lambda t: -t.bucket_ns):
        new_todo = []
        for s, e in todo:
            cover = tier_coverage(snapshot, tenant, metric, spec, now, s, min(e, usable_end))
            parts += [Part(spec.name, cs, ce) for cs, ce in cover]
            new_todo += _subtract([(s, e)], cover)
        todo = new_todo
    parts += [Part(RAW, s, e) for s, e in todo if s < e]
    return sorted(parts, key=lambda p: p.start)


# ------------------------------------------------------------------------------------------- reading


def _label_filter(frame: pl.DataFrame, matchers: Sequence[Matcher]) -> pl.DataFrame:
    if not matchers or frame.height == 0:
        return frame
    return frame.filter(
        pl.all_horizontal(
            [m.expr() if m.label in frame.columns else pl.lit(m.matches(None)) for m in matchers]
        )
    )


def _read_part(
    storage: Storage,
    snapshot: Snapshot,
    tenant: str,
    metric: str,
    schema: MetricSchema,
    part: Part,
    matchers: Sequence[Matcher],
    fields: dict[str, FieldInfo],
    want: Sequence[str],
    every: int,
    buffered: Iterable[pa.Table],
    explain: Explain,
) -> pl.DataFrame:
    labels = list(schema.labels)
    if part.tier == RAW:
        points = read_points(
            storage,
            snapshot,
            tenant,
            metric,
            schema,
            part.start,
            part.end,
            matchers,
            list(fields),
            buffered,
            explain,
        )
        rows = points_to_rollup(points, labels, fields, every, sketches=False)
        # A bucket's start may precede the part (the bucket straddles a tier boundary): order it at the part.
        return rows.with_columns(
            pl.max_horizontal(pl.col(TIME_COLUMN), pl.lit(part.start)).alias(TIME_COLUMN)
        )
    files = plan_files(snapshot, tenant, metric, part.tier, part.start, part.end, matchers, explain)
    explain.files_read += len(files)
    frames = []
    for f in files:
        rows = read_rollup(
            storage, f.path, labels=labels, fields=fields, parts=want, start=part.start, end=part.end
        )
        explain.chunks_read += rows.height
        explain.bytes_read += int(rows.estimated_size())
        frames.append(_label_filter(rows, matchers))
    if not frames:
        return empty_rollup_frame(labels, fields).select(frames_columns(labels, fields, want))
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def frames_columns(labels: Sequence[str], fields: dict[str, FieldInfo], want: Sequence[str]) -> list[str]:
    """The columns :func:`_read_part` returns for ``want`` parts."""
    cols = [SERIES_ID, *labels, TIME_COLUMN]
    for f, info in fields.items():
        cols += [col(f, p) for p in want if p != "increase" or info.counter]
    return cols


# ------------------------------------------------------------------------------------------- aggregation


def _agg_exprs(fields: Sequence[str], spec: AggSpec, every: int) -> list[pl.Expr]:
    out = []
    kind = spec.kind
    for f in fields:
        name = f"{f}_{spec.name}"
        c = lambda part, f=f: pl.col(col(f, part))  # noqa: E731
        n = c("count").sum()
        if kind == "count":
            out.append(n.cast(pl.Int64).alias(name))
        elif kind == "sum":
            out.append(c("sum").sum().alias(name))
        elif kind == "avg":
            out.append(pl.when(n > 0).then(c("sum").sum().cast(pl.Float64) / n).alias(name))
        elif kind in ("min", "max"):
            e = c(kind)
            non_nan = e.filter(~e.cast(pl.Float64).is_nan())
            picked = non_nan.min() if kind == "min" else non_nan.max()
            out.append(pl.coalesce(picked, e.min() if kind == "min" else e.max()).alias(name))
        elif kind == "first":
            out.append(c("first").drop_nulls().first().alias(name))
        elif kind == "last":
            out.append(c("last").drop_nulls().last().alias(name))
        elif kind == "stddev":
            s = c("sum").sum().cast(pl.Float64)
            q = c("sumsq").sum()
            var = (q - s * s / n) / (n - 1)
            lo, hi = c("min").min(), c("max").max()
            out.append(
                pl.when(n < 2)
                .then(None)
                .when(q.is_nan() | s.is_nan())
                .then(float("nan"))
                .when(lo == hi)
                .then(0.0)
                .otherwise(pl.max_horizontal(var, pl.lit(0.0)).sqrt())
                .alias(name)
            )
        elif kind in ("increase", "rate"):
            inc = c("increase").sum() + pl.col(f"_cross__{f}").sum()
            out.append((inc if kind == "increase" else inc / (every / 1e9)).cast(pl.Float64).alias(name))
        elif kind == "quantile":
            out.append(pl.lit(None, pl.Float64).alias(name))  # filled by _quantiles
    return out


def _quantiles(
    frame: pl.DataFrame,
    result: pl.DataFrame,
    fields: dict[str, FieldInfo],
    aggs: Sequence[AggSpec],
) -> tuple[pl.DataFrame, bool]:
    """Fill the quantile columns of ``result`` (one row per contiguous group of ``frame``); True if approximate."""
    specs = [a for a in aggs if a.kind == "quantile"]
    if not specs:
        return result, False
    group_off = np.zeros(result.height + 1, np.int64)
    np.cumsum(result.get_column(_ROWS).to_numpy(), out=group_off[1:])
    approximate = False
    updates = []
    for f in fields:
        counts = result.get_column(f"_n__{f}").fill_null(0).to_numpy().astype(np.int64)
        qs = [float(a.quantile) for a in specs if a.quantile is not None]
        values, approx = quantiles(
            frame.get_column(col(f, "values")),
            frame.get_column(col(f, "weights")),
            frame.get_column(col(f, "sketch")),
            counts,
            group_off,
            qs,
        )
        approximate = approximate or bool(approx.any())
        empty = counts <= 0
        for j, a in enumerate(specs):
            updates.append(_masked_f64(f"{f}_{a.name}", values[:, j], ~empty))
    return result.with_columns(updates), approximate


def _masked_f64(name: str, arr: np.ndarray, valid: np.ndarray) -> pl.Series:
    return pl.Series(name, pa.array(arr, mask=~valid))


def aggregate_rollup(
    rows: pl.DataFrame,
    *,
    every: int,
    aggs: Sequence[AggSpec],
    fields: dict[str, FieldInfo],
    group_labels: Sequence[str],
    per_series: bool,
    start: int,
    end: int,
    fill: str = "none",
) -> tuple[pl.DataFrame, bool]:
    """Merge bucket rows (sorted or not) into ``every`` buckets; same output as ``aggregate.aggregate``.

    Returns the frame and whether any value is approximate (a quantile from KLL sketches).
    """
    frame = rows.sort([SERIES_ID, TIME_COLUMN]).with_columns(
        (pl.col(TIME_COLUMN) // every * every).alias(_OUT)
    )
    if any(a.kind in ("increase", "rate") for a in aggs):
        frame = boundary_deltas(frame, [f for f, i in fields.items() if i.counter], [SERIES_ID])
    exprs = [e for f in fields for a in aggs for e in _agg_exprs([f], a, every)]
    has_q = any(a.kind == "quantile" for a in aggs)
    if has_q:  # groups must be contiguous runs of the frame, in the result's order
        exprs += [pl.len().alias(_ROWS), *[pl.col(col(f, "count")).sum().alias(f"_n__{f}") for f in fields]]
        if not per_series:
            frame = frame.sort([*group_labels, _OUT, SERIES_ID, TIME_COLUMN], nulls_last=False)
    if per_series:
        extra = [pl.col(c).first() for c in group_labels]
        result = frame.group_by([SERIES_ID, _OUT], maintain_order=True).agg(extra + exprs)
    else:
        result = frame.group_by([*group_labels, _OUT], maintain_order=True).agg(exprs)
    result, approximate = _quantiles(frame, result, fields, aggs)
    result = result.drop([c for c in result.columns if c.startswith("_n__") or c == _ROWS])
    result = result.rename({_OUT: BUCKET})
    return finish_buckets(result, group_labels, per_series, every, start, end, fill), approximate


# ------------------------------------------------------------------------------------------- entry point


def run_tiered(
    storage: Storage,
    snapshot: Snapshot,
    schema: MetricSchema,
    request: Any,
    buffered: Iterable[pa.Table],
    explain: Explain,
) -> pl.DataFrame | None:
    """Answer a bucketed request through the tiers; None when raw alone answers it (auto, nothing built).

    ``request`` is a ``query.engine.QueryRequest`` with ``every`` set; ``explain`` receives the parts
    (``tiers``), the ``approximate`` flag and the file counters.
    """
    tables = list(buffered)
    buffered_min = None
    for tbl in tables:
        if tbl.num_rows and TIME_COLUMN in tbl.column_names:
            lo = pa.compute.min(tbl.column(TIME_COLUMN)).as_py()
            if lo is not None:
                lo = int(lo.value) if hasattr(lo, "value") else int(lo)
                buffered_min = lo if buffered_min is None else min(buffered_min, lo)
    resolution = getattr(request, "resolution", None)
    parts = plan_parts(
        snapshot,
        request.tenant,
        request.metric,
        request.start,
        request.end,
        request.every,
        resolution,
        buffered_min=buffered_min,
        quantiles=any(a.kind == "quantile" for a in request.aggs),
    )
    if all(p.tier == RAW for p in parts):
        return None
    fields = field_infos(schema, request.fields)
    want = parts_needed(request.aggs)
    frames = []
    for part in parts:
        frame = _read_part(
            storage,
            snapshot,
            request.tenant,
            request.metric,
            schema,
            part,
            request.matchers,
            fields,
            want,
            request.every,
            tables if part.tier == RAW else [],
            explain,
        )
        frames.append(frame.select(frames_columns(list(schema.labels), fields, want)))
    explain.tiers = [p.to_dict() for p in parts]
    rows = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    per_series = request.by is None
    group = list(schema.labels) if per_series else list(request.by or ())
    frame, approximate = aggregate_rollup(
        rows,
        every=request.every,
        aggs=request.aggs,
        fields=fields,
        group_labels=group,
        per_series=per_series,
        start=request.start,
        end=request.end,
        fill=request.fill,
    )
    explain.approximate = explain.approximate or approximate
    return frame
