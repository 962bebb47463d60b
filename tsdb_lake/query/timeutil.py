"""Time arguments users pass (datetimes, pandas / numpy timestamps, ISO strings, ints) and durations."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import numpy as np

from tsdb_lake.errors import InvalidQueryError

__all__ = ["DURATION_UNITS", "TimeLike", "format_duration", "now_ns", "parse_duration", "to_ns"]

TimeLike = Any
DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s|m|h|d|w)\s*$")
_RELATIVE_RE = re.compile(r"^\s*now\s*(?:([+-])\s*(\d+\s*(?:ns|us|ms|s|m|h|d|w)))?\s*$", re.IGNORECASE)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def now_ns() -> int:
    """The current time in ns since the epoch."""
    return time.time_ns()


def parse_duration(value: str | int | dt.timedelta | np.timedelta64) -> int:
    """A duration in ns from ``"10s"``, ``"1m"``, ``"1h"``, ``"1d"``, ``"2w"``, a timedelta or int ns."""
    if isinstance(value, bool):
        raise InvalidQueryError(f"invalid duration {value!r}")
    if isinstance(value, int | np.integer):
        ns = int(value)
    elif isinstance(value, dt.timedelta):
        ns = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    elif isinstance(value, np.timedelta64):
        ns = int(value.astype("timedelta64[ns]").astype(np.int64))
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        ns = int(m.group(1)) * DURATION_UNITS[m.group(2)]
    else:
        raise InvalidQueryError(f"invalid duration {value!r}: use e.g. '10s', '1m', '1h', '1d' or int ns")
    if ns <= 0:
        raise InvalidQueryError(f"duration {value!r} must be positive")
    return ns


def format_duration(ns: int) -> str:
    """The shortest exact unit string of a duration, e.g. ``60_000_000_000 -> "1m"``."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        if ns % DURATION_UNITS[unit] == 0:
            return f"{ns // DURATION_UNITS[unit]}{unit}"
    return f"{ns}ns"


def to_ns(value: TimeLike, *, name: str = "time") -> int:
    """Nanoseconds since the epoch (UTC) from any time-like value users pass.

    Accepts int ns, ``datetime`` (naive = UTC), ``date``, pandas ``Timestamp``, ``numpy.datetime64``, ISO 8601
    strings and ``"now"`` / ``"now-1h"``.
    """
    if value is None:
        raise InvalidQueryError(f"{name} is required")
    if isinstance(value, bool):
        raise InvalidQueryError(f"invalid {name} {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidQueryError(f"{name} is NaT")
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if hasattr(value, "value") and type(value).__name__ == "Timestamp":  # pandas, without importing it
        if value != value:  # NaT
            raise InvalidQueryError(f"{name} is NaT")
        ts = value.tz_convert("UTC") if value.tzinfo is not None else value
        return int(ts.as_unit("ns").value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if isinstance(value, dt.date):
        return to_ns(dt.datetime(value.year, value.month, value.day), name=name)
    if isinstance(value, str):
        rel = _RELATIVE_RE.match(value)
        if rel:
            base = now_ns()
            if rel.group(1):
                offset = parse_duration(rel.group(2).replace(" ", ""))
                base = base + offset if rel.group(1) == "+" else base - offset
            return base
        try:
            return to_ns(dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00")), name=name)
        except ValueError:
            pass
        try:
            return to_ns(np.datetime64(value.strip().rstrip("Z"), "ns"), name=name)
        except ValueError as exc:
            raise InvalidQueryError(
                f"cannot parse {name} {value!r}: use ISO 8601, e.g. 2024-01-31T12:00:00Z"
            ) from exc
    raise InvalidQueryError(f"unsupported {name} type {type(value).__name__}")
