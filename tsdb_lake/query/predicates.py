"""Field-value predicates (``lake.query(filter=...)``): comparisons of a field with a number, all ANDed.

Semantics follow IEEE 754 as PromQL and numpy do: a NaN value satisfies only ``!=``; a missing (null) value
satisfies nothing. A predicate built with ``nan_matches=True`` also keeps NaN values — the order polars and
DuckDB use (NaN above every number), which ``lake.scan`` / ``lake.sql`` push down with.

Pruning: a chunk whose per-chunk ``_min__f`` / ``_max__f`` (NaN ignored; null when the chunk has no non-NaN
value) rule a predicate out holds no matching point and is neither decoded nor returned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

import numpy as np
import polars as pl

from tsdb_lake.errors import InvalidQueryError

__all__ = [
    "CompareOp",
    "FieldPredicate",
    "FilterLike",
    "chunks_may_match",
    "parse_filter",
    "points_mask",
    "predicate_expr",
]

CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]
_OPS = (">", ">=", "<", "<=", "==", "!=")
_ALIASES = {"=": "=="}
_TERM_RE = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_.:\-]*)\s*(>=|<=|==|!=|=|>|<)\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf(?:inity)?))\s*(?:,|\band\b|&&|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FieldPredicate:
    """``field op value`` over a numeric field; ``nan_matches`` makes NaN values satisfy it too."""

    field: str
    op: CompareOp
    value: float | int
    nan_matches: bool = False

    def __post_init__(self) -> None:
        op = _ALIASES.get(self.op, self.op)
        if op not in _OPS:
            raise InvalidQueryError(
                f"unknown filter operator {self.op!r} on {self.field!r}; use {', '.join(_OPS)}"
            )
        object.__setattr__(self, "op", op)
        if isinstance(self.value, bool) or not isinstance(self.value, Real):
            raise InvalidQueryError(
                f"filter on {self.field!r} compares with a number, got {type(self.value).__name__} {self.value!r}"
            )
        if isinstance(self.value, float) and math.isnan(self.value):
            raise InvalidQueryError(
                f"filter on {self.field!r}: a NaN bound matches nothing; compare with a number"
            )

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.value!r}" + (" (NaN matches)" if self.nan_matches else "")

    def expr(self, dtype: pl.DataType | None = None) -> pl.Expr:
        """The predicate as a polars boolean expression over the field of type ``dtype`` (default float64);
        null for a null value (a filter drops it)."""
        return _expr_for(self, pl.Float64() if dtype is None else dtype)


FilterLike = (
    str | Mapping[str, "str | float | int | tuple[str, float | int]"] | Iterable[FieldPredicate] | None
)


def parse_filter(filter_: FilterLike) -> list[FieldPredicate]:
    """Predicates from a string (``"usage_user > 90, usage_system <= 5"``; ``,``, ``and`` or ``&&`` join),
    a dict (``{"usage_user": "> 90"}``, ``{"x": (">=", 1)}``, a number = equality) or FieldPredicate items."""
    if filter_ is None:
        return []
    if isinstance(filter_, str):
        out: list[FieldPredicate] = []
        pos, text = 0, filter_.strip()
        while pos < len(text):
            m = _TERM_RE.match(text, pos)
            if not m or m.end() == pos:
                raise InvalidQueryError(
                    f"cannot parse filter {filter_!r} near {text[pos:]!r}; write e.g. 'usage_user > 90, x <= 5'"
                )
            out.append(FieldPredicate(m.group(1), m.group(2), _number(m.group(3))))  # type: ignore[arg-type]
            pos = m.end()
        return out
    if isinstance(filter_, Mapping):
        out = []
        for name, spec in filter_.items():
            if isinstance(spec, FieldPredicate):
                out.append(spec)
            elif isinstance(spec, str):
                parsed = parse_filter(f"{name} {spec}")
                if len(parsed) != 1:
                    raise InvalidQueryError(
                        f"filter[{name!r}] must be one comparison such as '> 90', got {spec!r}"
                    )
                out.extend(parsed)
            elif isinstance(spec, tuple) and len(spec) == 2:
                out.append(FieldPredicate(name, spec[0], spec[1]))  # type: ignore[arg-type]
            else:
                out.append(FieldPredicate(name, "==", spec))  # type: ignore[arg-type]
        return out
    out = []
    for item in filter_:
        if not isinstance(item, FieldPredicate):
            raise InvalidQueryError(f"filter items must be FieldPredicate objects, got {type(item).__name__}")
        out.append(item)
    return out


def _number(text: str) -> float | int:
    lowered = text.lower().lstrip("+")
    if "inf" in lowered:
        return -math.inf if lowered.startswith("-") else math.inf
    if re.fullmatch(r"-?\d+", lowered):
        return int(lowered)
    return float(lowered)


def chunks_may_match(
    pred: FieldPredicate, lo: np.ndarray, hi: np.ndarray, has_stats: np.ndarray, n: np.ndarray, is_float: bool
) -> np.ndarray:
    """Per chunk, whether it may hold a point satisfying ``pred``, from its statistics: ``lo`` / ``hi`` the
    minimum / maximum ignoring NaN (valid where ``has_stats``), ``n`` its non-null values."""
    v = pred.value
    present = n > 0
    with np.errstate(invalid="ignore"):
        if pred.op == ">":
            hit = hi > v
        elif pred.op == ">=":
            hit = hi >= v
        elif pred.op == "<":
            hit = lo < v
        elif pred.op == "<=":
            hit = lo <= v
        elif pred.op == "==":
            hit = (lo <= v) & (hi >= v)
        else:
            hit = ~((lo == v) & (hi == v))
    hit = hit & has_stats
    if is_float and (pred.nan_matches or pred.op == "!="):
        # NaN values may hide in any chunk with values: the statistics ignore them
        return present
    return present & hit


def points_mask(preds: Sequence[FieldPredicate], frame: pl.DataFrame) -> np.ndarray:
    """A boolean numpy mask of the rows of ``frame`` that satisfy every predicate (nulls never do)."""
    if not preds:
        return np.ones(frame.height, bool)
    exprs = [_expr_for(p, frame.schema[p.field]) for p in preds]
    mask = frame.select(pl.all_horizontal(exprs).fill_null(False)).to_series()
    return np.asarray(mask.to_numpy(), bool)


def predicate_expr(preds: Sequence[FieldPredicate], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """All predicates ANDed as one polars expression over columns of ``schema`` (null rows: False)."""
    return pl.all_horizontal([_expr_for(p, schema[p.field]) for p in preds]).fill_null(False)


def _expr_for(pred: FieldPredicate, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(pred.field)
    v = pred.value
    cmp = {
        ">": col > v,
        ">=": col >= v,
        "<": col < v,
        "<=": col <= v,
        "==": col == v,
        "!=": col != v,
    }[pred.op]
    if not dtype.is_float():
        return cmp
    # polars orders NaN above every number: NaN > x, NaN >= x and NaN != x hold, NaN == x (x a number) does
    # not. Adjust to IEEE (only != holds) unless NaN is meant to match.
    if pred.nan_matches or pred.op == "!=":
        return cmp | col.is_nan()
    return cmp & col.is_not_nan()
