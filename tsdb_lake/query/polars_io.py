"""``lake.scan``: a polars LazyFrame over one metric of one tenant, backed by a polars IO plugin.

The plugin receives the query's projection, predicate and row limit from polars. It pushes into ``lake.query``:

- the time bounds of ``time >= x``, ``time > x``, ``time < y``, ``time <= y`` and ``time == x``;
- label ``==``, ``!=`` and ``is_in([...])`` as label matchers (catalog file pruning and chunk label pruning);
- field comparisons with a number (``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``, ``is_between``) as value
  filters (chunk pruning on per-chunk min / max), keeping NaN where polars' order does (NaN above numbers);
- the projection: only the fields the query selects or filters on are decoded.

Extraction is conservative: it only looks through ANDs (``&``, ``all_horizontal``, and the ``when(is_null)
.then(null).otherwise(...)`` form DuckDB emits for ``IN``) and every extracted bound is a superset of the rows
the predicate keeps. The full predicate is then applied to every batch, so correctness never depends on it.

Each execution of the LazyFrame runs ``lake.query`` afresh (latest catalog snapshot plus the calling process's
unflushed writes, or the pinned ``as_of`` version). ``on_explain`` receives a :class:`ScanRecord` per execution:
what was pushed and the ``lake.query`` explain counters — the tests use it to prove pruning happens.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from polars.io.plugins import register_io_source

from tsdb_lake.catalog import MetricSchema
from tsdb_lake.catalog.schema import FieldSpec
from tsdb_lake.model import TIME_COLUMN, validate_name
from tsdb_lake.query.matchers import Matcher
from tsdb_lake.query.predicates import FieldPredicate

if TYPE_CHECKING:
    from tsdb_lake.lake import Lake

__all__ = ["Pushdown", "ScanRecord", "TimeUnit", "extract_pushdown", "polars_schema", "scan_metric"]

TimeUnit = Literal["ns", "us", "ms"]
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}
_POLARS_UNIT_NS = {"Nanoseconds": 1, "Microseconds": 1_000, "Milliseconds": 1_000_000}
_FLIP = {"Eq": "Eq", "NotEq": "NotEq", "Lt": "Gt", "LtEq": "GtEq", "Gt": "Lt", "GtEq": "LtEq"}
_CONST_FUNCTIONS = ("TemporalExpr", "StringExpr")
# The widest range lake.query accepts (its own unbounded defaults).
_MIN_NS = -(2**63) + 1
_MAX_NS = 2**63 - 1


@dataclass
class Pushdown:
    """What a predicate lets the scan prune: a half-open time range (ns) and label matchers (all ANDed).

    ``start``/``end`` of None mean unbounded. Every row the predicate keeps lies inside these bounds.
    """

    start: int | None = None
    end: int | None = None
    matchers: list[Matcher] = field(default_factory=list)
    filters: list[FieldPredicate] = field(default_factory=list)

    def narrow(self, start: int | None = None, end: int | None = None) -> None:
        """Intersect the time range with ``[start, end)``."""
        if start is not None:
            self.start = start if self.start is None else max(self.start, start)
        if end is not None:
            self.end = end if self.end is None else min(self.end, end)

    @property
    def empty(self) -> bool:
        """Whether the time range is provably empty."""
        return self.start is not None and self.end is not None and self.start >= self.end


@dataclass
class ScanRecord:
    """One execution of a scan: the table, what was pushed into ``lake.query`` and its explain report."""

    metric: str
    tenant: str
    start: int | None
    end: int | None
    matchers: list[Matcher]
    fields: list[str]
    rows: int
    explain: dict[str, Any]
    filters: list[FieldPredicate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (matchers as ``label op "value"`` strings)."""
        return {
            "metric": self.metric,
            "tenant": self.tenant,
            "start": self.start,
            "end": self.end,
            "where": [f'{m.label}{m.op}"{m.value}"' for m in self.matchers],
            "fields": list(self.fields),
            "filter": [str(p) for p in self.filters],
            "rows": self.rows,
            "explain": self.explain,
        }


# ---------------------------------------------------------------------------------------------- extraction
def _node_kind(node: Any) -> str | None:
    return next(iter(node)) if isinstance(node, dict) and len(node) == 1 else None


def _is_constant(node: Any) -> bool:
    """Literals, casts of constants and pure temporal / string functions of constants (no column, no RNG)."""
    kind = _node_kind(node)
    if kind == "Literal":
        return True
    if kind == "Cast":
        return _is_constant(node["Cast"].get("expr"))
    if kind == "Function":
        body = node["Function"]
        fn = body.get("function")
        if _node_kind(fn) not in _CONST_FUNCTIONS:
            return False
        return all(_is_constant(i) for i in body.get("input", []))
    return False


def _evaluate(node: Any) -> pl.Series | None:
    """The value of a constant subtree as a one-column Series, or None when it cannot be evaluated."""
    if not _is_constant(node):
        return None
    try:
        expr = pl.Expr.deserialize(io.StringIO(json.dumps(node)), format="json")
        return pl.select(expr).to_series()
    except Exception:  # a constant polars itself cannot evaluate yields no hint, never an error
        return None


def _column_of(node: Any) -> tuple[str, int] | None:
    """``(name, cast unit in ns)`` when the node is a column, possibly under ``dt.cast_time_unit`` (0: none)."""
    kind = _node_kind(node)
    if kind == "Column" and isinstance(node["Column"], str):
        return node["Column"], 0
    if kind == "Function":
        body = node["Function"]
        fn = body.get("function")
        inputs = body.get("input", [])
        if _node_kind(fn) == "TemporalExpr" and len(inputs) == 1:
            temporal = fn["TemporalExpr"]
            if isinstance(temporal, dict) and "CastTimeUnit" in temporal:
                inner = _column_of(inputs[0])
                unit = _POLARS_UNIT_NS.get(str(temporal["CastTimeUnit"]), 1_000_000)
                if inner is not None:
                    return inner[0], max(inner[1], unit)
    return None


def _time_value(series: pl.Series) -> tuple[int, int] | None:
    """``(ns since epoch, unit in ns)`` of a one-value datetime Series."""
    if len(series) != 1 or series.null_count() or not isinstance(series.dtype, pl.Datetime):
        return None
    unit = _UNIT_NS.get(str(series.dtype.time_unit))
    if unit is None:
        return None
    raw = series.to_physical().item()
    return int(raw) * unit, unit


def _string_values(series: pl.Series) -> list[str] | None:
    if isinstance(series.dtype, pl.List | pl.Array):
        series = series.explode()
    if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
        return None
    return [str(v) for v in series.cast(pl.String).drop_nulls().to_list()]


class _Extractor:
    def __init__(self, labels: Sequence[str], time_unit_ns: int, fields: Mapping[str, str]) -> None:
        self.labels = set(labels)
        self.fields = dict(fields)
        self.time_margin = time_unit_ns
        self.out = Pushdown()

    def walk(self, node: Any) -> None:
        kind = _node_kind(node)
        if kind == "BinaryExpr":
            body = node["BinaryExpr"]
            op = body.get("op")
            if op in ("And", "LogicalAnd"):
                self.walk(body.get("left"))
                self.walk(body.get("right"))
            elif op in _FLIP:
                self._comparison(body.get("left"), op, body.get("right"))
        elif kind == "Function":
            body = node["Function"]
            fn = body.get("function")
            inputs = body.get("input", [])
            boolean = fn.get("Boolean") if isinstance(fn, dict) else None
            if boolean == "AllHorizontal":
                for child in inputs:
                    self.walk(child)
            elif isinstance(boolean, dict) and "IsIn" in boolean and len(inputs) == 2:
                self._is_in(inputs[0], inputs[1])
            elif isinstance(boolean, dict) and "IsBetween" in boolean and len(inputs) == 3:
                closed = str((boolean["IsBetween"] or {}).get("closed", "Both"))
                self._comparison(inputs[0], "GtEq" if closed in ("Left", "Both") else "Gt", inputs[1])
                self._comparison(inputs[0], "LtEq" if closed in ("Right", "Both") else "Lt", inputs[2])
        elif kind == "Ternary":
            body = node["Ternary"]
            # when(p).then(null/false).otherwise(x): a kept row satisfies x.
            truthy = _evaluate(body.get("truthy"))
            if truthy is not None and len(truthy) == 1 and truthy.item() in (None, False):
                self.walk(body.get("falsy"))

    def _comparison(self, left: Any, op: str, right: Any) -> None:
        col = _column_of(left)
        other = right
        if col is None:
            col, other, op = _column_of(right), left, _FLIP[op]
        if col is None:
            return
        name, cast_unit = col
        value = _evaluate(other)
        if value is None:
            return
        if name == TIME_COLUMN:
            self._time_bound(op, value, cast_unit)
        elif name in self.labels and op in ("Eq", "NotEq"):
            strings = _string_values(value)
            if strings is not None and len(strings) == 1 and len(value) == 1:
                self.out.matchers.append(Matcher(name, "=" if op == "Eq" else "!=", strings[0]))
        elif name in self.fields and not cast_unit:
            self._field_bound(name, op, value)

    def _field_bound(self, name: str, op: str, value: pl.Series) -> None:
        if len(value) != 1 or value.null_count() or not value.dtype.is_numeric():
            return
        number = value.item()
        if isinstance(number, bool) or (isinstance(number, float) and math.isnan(number)):
            return
        symbol = {"Gt": ">", "GtEq": ">=", "Lt": "<", "LtEq": "<=", "Eq": "==", "NotEq": "!="}[op]
        # polars orders NaN above every number: NaN passes > and >= (and != in any order)
        nan = self.fields[name] != "int64" and op in ("Gt", "GtEq")
        self.out.filters.append(FieldPredicate(name, symbol, number, nan_matches=nan))  # type: ignore[arg-type]

    def _time_bound(self, op: str, value: pl.Series, cast_unit: int) -> None:
        tv = _time_value(value)
        if tv is None:
            return
        ns, lit_unit = tv
        # polars compares at the coarsest unit U among the scan's column, a cast_time_unit on it and the
        # literal, truncating the finer sides (floor, or toward zero before 1970): see time_bounds().
        unit = max(self.time_margin, lit_unit, cast_unit)
        start, end = time_bounds(op, ns, unit)
        self.out.narrow(start, end)

    def _is_in(self, column: Any, values: Any) -> None:
        col = _column_of(column)
        if col is None or col[0] not in self.labels or col[1]:
            return
        series = _evaluate(values)
        strings = None if series is None else _string_values(series)
        if strings:
            self.out.matchers.append(
                Matcher(col[0], "=~", "|".join(re.escape(v) for v in sorted(set(strings))))
            )


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def time_bounds(op: str, value_ns: int, unit: int) -> tuple[int | None, int | None]:
    """The ns range ``[start, end)`` holding every ``t`` with ``c(t) op L`` where ``c`` truncates ``t`` to
    ``unit`` and ``L`` is ``value_ns`` truncated to ``unit``; truncation is floor or toward zero.

    For ``t >= 0`` both truncations are floor and the bounds are exact; before 1970 ``c(t)`` may be one
    more than ``floor(t / unit)``, so lower bounds at or below zero widen by one unit.
    """
    if unit == 1:
        exact = {
            "GtEq": (value_ns, None),
            "Gt": (value_ns + 1, None),
            "Lt": (None, value_ns),
            "LtEq": (None, value_ns + 1),
            "Eq": (value_ns, value_ns + 1),
        }
        return exact.get(op, (None, None))
    candidates = {value_ns // unit, _trunc_div(value_ns, unit)}

    def lower(lit: int) -> int:
        return lit * unit if lit > 0 else (lit - 1) * unit

    start = end = None
    if op in ("GtEq", "Eq"):
        start = min(lower(c) for c in candidates)
    if op == "Gt":
        start = min(lower(c + 1) for c in candidates)
    if op == "Lt":
        end = max(c * unit for c in candidates)
    if op in ("LtEq", "Eq"):
        end = max((c + 1) * unit for c in candidates)
    return start, end


def extract_pushdown(
    predicate: pl.Expr | None,
    labels: Sequence[str],
    time_unit: TimeUnit = "ns",
    fields: Mapping[str, str] | None = None,
) -> Pushdown:
    """The time range, label matchers and (for ``fields``: name -> dtype) value filters implied by
    ``predicate`` (conservative; see the module docstring)."""
    if predicate is None:
        return Pushdown()
    try:
        tree = json.loads(predicate.meta.serialize(format="json"))
    except Exception:  # an expression polars cannot serialise just gets no pushdown
        return Pushdown()
    extractor = _Extractor(labels, _UNIT_NS[time_unit], fields or {})
    extractor.walk(tree)
    return extractor.out


# ------------------------------------------------------------------------------------------------- the scan
def polars_schema(schema: MetricSchema, time_unit: TimeUnit = "ns") -> dict[str, pl.DataType]:
    """The scan's columns in ``lake.query`` order: ``time`` (UTC), labels (String), fields (Float64 / Int64)."""
    out: dict[str, pl.DataType] = {TIME_COLUMN: pl.Datetime(time_unit, "UTC")}
    for label in schema.labels:
        out[label] = pl.String()
    for name, spec in schema.fields.items():
        out[name] = pl.Int64() if spec.dtype == "int64" else pl.Float64()
    return out


def _schema_from_lake(lake: Lake, metric: str, tenant: str, as_of: int | None) -> MetricSchema:
    """The metric's schema as ``lake.query`` sees it (catalog plus unflushed writes); NotFoundError if none."""
    empty = lake.query(metric, _MIN_NS, _MIN_NS + 1, tenant=tenant, as_of=as_of)
    labels = [c for c, t in empty.schema.items() if c != TIME_COLUMN and t == pl.String]
    fields = {
        c: FieldSpec(dtype="int64" if t == pl.Int64 else "float64")
        for c, t in empty.schema.items()
        if c != TIME_COLUMN and c not in labels
    }
    return MetricSchema(labels=tuple(labels), fields=fields)


def scan_metric(
    lake: Lake,
    metric: str,
    *,
    tenant: str,
    as_of: int | None = None,
    schema: MetricSchema | None = None,
    time_unit: TimeUnit = "ns",
    on_explain: Callable[[ScanRecord], None] | None = None,
) -> pl.LazyFrame:
    """A LazyFrame over ``metric`` of ``tenant`` whose filters and projection reach ``lake.query``'s pruning.

    ``schema`` (default: read now, raising NotFoundError for an unknown metric) fixes the columns; fields
    added later appear after a new ``scan``. ``time_unit`` is the unit of the ``time`` column
    (``Datetime(time_unit, "UTC")``; "ns" keeps full precision). Rows come sorted by series then time.
    """
    validate_name("tenant", tenant)
    validate_name("metric", metric)
    schema = schema or _schema_from_lake(lake, metric, tenant, as_of)
    columns = polars_schema(schema, time_unit)
    field_names = list(schema.fields)

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        wanted = list(columns) if with_columns is None else list(with_columns)
        empty = pl.DataFrame(schema={c: columns[c] for c in wanted})
        if n_rows == 0:
            yield empty
            return
        pushed = extract_pushdown(
            predicate, schema.labels, time_unit, {n: spec.dtype for n, spec in schema.fields.items()}
        )
        if pushed.empty:
            yield empty
            return
        needed = set(wanted) | (set(predicate.meta.root_names()) if predicate is not None else set())
        fields = [f for f in field_names if f in needed]
        frame, report = lake.query(
            metric,
            pushed.start,
            pushed.end,
            tenant=tenant,
            where=pushed.matchers or None,
            filter=pushed.filters or None,
            fields=fields,
            as_of=as_of,
            explain=True,
        )
        frame = _conform(frame, columns, time_unit)
        if predicate is not None:
            frame = frame.filter(predicate)
        frame = frame.select(wanted)
        if n_rows is not None:
            frame = frame.head(n_rows)
        if on_explain is not None:
            on_explain(
                ScanRecord(
                    metric,
                    tenant,
                    pushed.start,
                    pushed.end,
                    pushed.matchers,
                    fields,
                    frame.height,
                    report,
                    pushed.filters,
                )
            )
        step = batch_size if batch_size and batch_size > 0 else max(frame.height, 1)
        if frame.height == 0:
            yield frame
            return
        for offset in range(0, frame.height, step):
            yield frame.slice(offset, step)

    return register_io_source(
        source,
        schema=columns,
        explain_name="tsdb_lake",
        explain_detail=f"tenant={tenant} metric={metric}",
    )


def _conform(frame: pl.DataFrame, columns: Mapping[str, pl.DataType], time_unit: TimeUnit) -> pl.DataFrame:
    """``lake.query``'s frame in the scan's declared dtypes (time unit; columns missing from it as nulls)."""
    exprs = []
    for name, dtype in columns.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
        elif name == TIME_COLUMN:
            exprs.append(pl.col(name).dt.cast_time_unit(time_unit) if time_unit != "ns" else pl.col(name))
        else:
            exprs.append(pl.col(name).cast(dtype))
    return frame.select(exprs)
