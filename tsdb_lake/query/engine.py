"""``lake.query``: validate the request, read points (files + memtable), aggregate, shape the output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from tsdb_lake.catalog import MetricSchema, Snapshot
from tsdb_lake.errors import InvalidQueryError, NotFoundError
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.query.aggregate import DECOMPOSABLE, aggregate, parse_aggs
from tsdb_lake.query.explain import Explain
from tsdb_lake.query.matchers import Matcher, WhereLike, parse_where
from tsdb_lake.query.predicates import FieldPredicate, FilterLike, parse_filter
from tsdb_lake.query.reader import STATS_AGGS, read_for_query
from tsdb_lake.query.timeutil import TimeLike, parse_duration, to_ns
from tsdb_lake.storage.base import Storage

__all__ = ["Output", "QueryRequest", "QueryResult", "run_query"]

Output = Literal["polars", "pandas", "arrow"]
_MIN_NS = -(2**63) + 1
_MAX_NS = 2**63 - 1


@dataclass(frozen=True)
class QueryRequest:
    """A validated query: the metric, the half-open range ``[start, end)`` in ns and what to compute."""

    metric: str
    tenant: str
    start: int
    end: int
    matchers: tuple[Matcher, ...]
    fields: tuple[str, ...]
    every: int | None = None
    aggs: tuple[Any, ...] = ()
    by: tuple[str, ...] | None = None
    fill: str = "none"
    resolution: str = "auto"
    filters: tuple[FieldPredicate, ...] = ()


@dataclass
class QueryResult:
    """A query's frame (time as int64 ns) plus the explain counters."""

    frame: pl.DataFrame
    explain: Explain = field(default_factory=Explain)


def build_request(
    schema: MetricSchema,
    metric: str,
    tenant: str,
    start: TimeLike,
    end: TimeLike,
    *,
    where: WhereLike = None,
    fields: Sequence[str] | str | None = None,
    every: Any = None,
    agg: str | Sequence[str] | None = None,
    by: Sequence[str] | str | None = None,
    fill: str | None = None,
    resolution: str | None = None,
    filter: FilterLike = None,
) -> QueryRequest:
    """Validate user arguments against the metric's schema; typed errors name what is wrong."""
    start_ns = _MIN_NS if start is None else to_ns(start, name="start")
    end_ns = _MAX_NS if end is None else to_ns(end, name="end")
    if start_ns >= end_ns:
        raise InvalidQueryError(f"start ({start}) must be before end ({end}); the range is [start, end)")
    wanted = (
        [fields] if isinstance(fields, str) else list(fields) if fields is not None else list(schema.fields)
    )
    unknown = [f for f in wanted if f not in schema.fields]
    if unknown:
        raise InvalidQueryError(
            f"unknown field(s) {unknown} of metric {metric!r}; known fields: {sorted(schema.fields)}"
        )
    matchers = tuple(parse_where(where))
    filters = tuple(parse_filter(filter))
    bad_filter = [p.field for p in filters if p.field not in schema.fields]
    if bad_filter:
        raise InvalidQueryError(
            f"cannot filter on {bad_filter}: not fields of {metric!r}; known fields: {sorted(schema.fields)}"
            + (" (labels are matched with where=)" if any(b in schema.labels for b in bad_filter) else "")
        )
    group = None if by is None else tuple([by] if isinstance(by, str) else by)
    if group is not None:
        bad = [b for b in group if b not in schema.labels]
        if bad:
            raise InvalidQueryError(
                f"cannot group by {bad}: not labels of {metric!r} ({list(schema.labels)})"
            )
    every_ns = None if every is None else parse_duration(every)
    if every_ns is None and (agg is not None or by is not None or fill is not None):
        raise InvalidQueryError("agg, by and fill need every= (a bucket width such as '1m')")
    aggs = tuple(parse_aggs(agg)) if every_ns is not None else ()
    resolution = "auto" if resolution is None else str(resolution)
    if resolution not in ("auto", "raw") and every_ns is None:
        raise InvalidQueryError(
            f"resolution={resolution!r} needs every= (rollup tiers answer bucketed queries)"
        )
    if filters and resolution not in ("auto", "raw"):
        raise InvalidQueryError(
            f"filter= tests raw points; resolution={resolution!r} answers from rollups (use 'auto' or 'raw')"
        )
    for spec in aggs:
        if spec.kind in ("increase", "rate"):
            not_counters = [f for f in wanted if schema.fields[f].kind != "counter"]
            if not_counters:
                raise InvalidQueryError(
                    f"{spec.name} applies to counter fields; {not_counters} are gauges "
                    "(declare counters with writer.write(..., counters=[...]))"
                )
    return QueryRequest(
        metric=metric,
        tenant=tenant,
        start=start_ns,
        end=end_ns,
        matchers=matchers,
        fields=tuple(wanted),
        every=every_ns,
        aggs=aggs,
        by=group,
        fill=fill or "none",
        resolution=resolution,
        filters=filters,
    )


def run_query(
    storage: Storage,
    snapshot: Snapshot,
    schema: MetricSchema,
    request: QueryRequest,
    buffered: Iterable[pa.Table],
    *,
    use_chunk_stats: bool = True,
) -> QueryResult:
    """Execute a validated request against a pinned snapshot plus unflushed batches.

    Bucketed count / min / max queries answer whole chunks from their statistics (``use_chunk_stats=False``
    decodes everything, e.g. to compare both paths).
    """
    explain = Explain(snapshot_version=snapshot.version)
    # rollups hold no points to test a value filter on: filtered queries read raw data
    if request.every is not None and request.resolution != "raw" and not request.filters:
        from tsdb_lake.query.tiers import run_tiered  # rollup tiers (query/tiers.py)

        buffered = list(buffered)
        routed = run_tiered(storage, snapshot, schema, request, buffered, explain)
        if routed is not None:
            if SERIES_ID in routed.columns:
                routed = routed.drop(SERIES_ID)
            return QueryResult(routed, explain)
    explain.tiers.append({"tier": "raw", "start": request.start, "end": request.end})
    use_stats = (
        request.every is not None
        and use_chunk_stats
        and not request.filters
        and all(s.kind in STATS_AGGS for s in request.aggs)
    )
    per_series = request.by is None
    group = list(schema.labels) if per_series else list(request.by or ())
    # count / sum / avg / min / max reduce per (series, bucket) first: labels are then attached per series
    by_series = request.every is not None and all(s.kind in DECOMPOSABLE for s in request.aggs)
    if request.every is None:
        point_labels: list[str] = list(schema.labels)
    else:
        point_labels = [] if by_series else group
    got = read_for_query(
        storage,
        snapshot,
        request.tenant,
        request.metric,
        schema,
        request.start,
        request.end,
        request.matchers,
        request.fields,
        buffered,
        explain,
        labels=point_labels,
        stats_every=request.every if use_stats else None,
        stats_minmax=any(s.kind in ("min", "max") for s in request.aggs),
        filters=request.filters,
        series_labels=group if by_series else None,
        partials_every=request.every if by_series and not use_stats else None,
        partial_aggs=request.aggs,
    )
    if request.every is None:
        frame = got.points.drop(SERIES_ID)
    else:
        frame = aggregate(
            got.points,
            every=request.every,
            aggs=request.aggs,
            fields=request.fields,
            group_labels=group,
            per_series=per_series,
            start=request.start,
            end=request.end,
            fill=request.fill,
            stats=got.stats,
            series=got.series,
            partials=got.partials,
        )
        if SERIES_ID in frame.columns:
            frame = frame.drop(SERIES_ID)
    return QueryResult(frame, explain)


def shape_output(frame: pl.DataFrame, output: Output) -> Any:
    """Convert the int64 ``time`` column to UTC datetimes and return the requested frame kind."""
    if TIME_COLUMN in frame.columns:
        frame = frame.with_columns(pl.col(TIME_COLUMN).cast(pl.Datetime("ns", "UTC")))
    if output == "polars":
        return frame
    if output == "arrow":
        return frame.to_arrow()
    if output == "pandas":
        return frame.to_pandas()
    raise InvalidQueryError(f"unknown output {output!r}; use 'polars', 'pandas' or 'arrow'")


def require_schema(
    snapshot: Snapshot, tenant: str, metric: str, pending: MetricSchema | None
) -> MetricSchema:
    """The metric's schema (catalog or unflushed writes) or a NotFoundError listing the known metrics."""
    schema = snapshot.schema(tenant, metric) or pending
    if schema is None:
        known = sorted(snapshot.metrics(tenant))
        raise NotFoundError(f"tenant {tenant!r} has no metric {metric!r}; known metrics: {known}")
    return schema
