"""Label matchers as in PromQL: equality, inequality, regex and negated regex (fully anchored)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from tsdb_lake.errors import InvalidQueryError

__all__ = ["MatchOp", "Matcher", "WhereLike", "eq", "ne", "not_regex", "parse_where", "regex"]

MatchOp = Literal["=", "!=", "=~", "!~"]
_SELECTOR_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_.:\-]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Matcher:
    """``label op value``; a missing label matches as the empty string, exactly as in PromQL."""

    label: str
    op: MatchOp
    value: str
    _compiled: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise InvalidQueryError(f"unknown matcher operator {self.op!r}; use =, !=, =~ or !~")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_compiled", re.compile(f"(?:{self.value})"))
            except re.error as exc:
                raise InvalidQueryError(f"bad regex {self.value!r} for label {self.label!r}: {exc}") from exc

    def matches(self, value: str | None) -> bool:
        """Whether a label value (None = label absent) satisfies the matcher."""
        v = value or ""
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._compiled is not None
        hit = self._compiled.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def expr(self) -> pl.Expr:
        """The matcher as a polars boolean expression over the label column."""
        col = pl.col(self.label).fill_null("")
        if self.op == "=":
            return col == self.value
        if self.op == "!=":
            return col != self.value
        anchored = f"^(?:{self.value})$"
        hit = col.str.contains(anchored)
        return hit if self.op == "=~" else ~hit

    def may_match_any(self, values: Iterable[str] | None) -> bool:
        """Whether a file whose label has exactly these distinct values (None = unknown) can match."""
        if values is None:
            return True
        vals = list(values)
        return any(self.matches(v) for v in vals) or self.matches(None)


def eq(label: str, value: str) -> Matcher:
    """``label = value``."""
    return Matcher(label, "=", value)


def ne(label: str, value: str) -> Matcher:
    """``label != value``."""
    return Matcher(label, "!=", value)


def regex(label: str, pattern: str) -> Matcher:
    """``label =~ pattern`` (anchored at both ends)."""
    return Matcher(label, "=~", pattern)


def not_regex(label: str, pattern: str) -> Matcher:
    """``label !~ pattern`` (anchored at both ends)."""
    return Matcher(label, "!~", pattern)


WhereLike = Mapping[str, "str | Matcher | Iterable[str]"] | str | Iterable[Matcher] | None


def parse_where(where: WhereLike) -> list[Matcher]:
    """Matchers from a dict (``{"host": "a"}`` equality, a list of values = any of them), a list of
    :class:`Matcher`, or a PromQL selector string ``'host=~"web-.*", region!="eu"'``."""
    if where is None:
        return []
    if isinstance(where, str):
        text = where.strip().removeprefix("{").removesuffix("}")
        out, pos = [], 0
        while pos < len(text):
            m = _SELECTOR_RE.match(text, pos)
            if not m:
                raise InvalidQueryError(f"cannot parse label selector {where!r} near {text[pos:]!r}")
            value = m.group(3).encode().decode("unicode_escape")
            out.append(Matcher(m.group(1), m.group(2), value))  # type: ignore[arg-type]
            pos = m.end()
        return out
    if isinstance(where, Mapping):
        out = []
        for label, value in where.items():
            if isinstance(value, Matcher):
                out.append(value)
            elif isinstance(value, str):
                out.append(Matcher(label, "=", value))
            elif isinstance(value, Iterable):
                values = [str(v) for v in value]
                out.append(Matcher(label, "=~", "|".join(re.escape(v) for v in values)))
            else:
                raise InvalidQueryError(f"where[{label!r}] must be a string, a list of strings or a Matcher")
        return out
    out = []
    for item in where:
        if not isinstance(item, Matcher):
            raise InvalidQueryError(f"where items must be Matcher objects, got {type(item).__name__}")
        out.append(item)
    return out
