"""Typed settings of the maintenance passes: compaction, retention and vacuum.

All durations are int nanoseconds (``*_ns``) so the planner stays pure integer arithmetic; the helpers
:func:`duration_ns` turns ``timedelta`` / seconds / ``"10m"``-style strings into nanoseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from tsdb_lake.errors import InvalidQueryError

__all__ = [
    "DEFAULT_VACUUM_GRACE_NS",
    "CompactionSettings",
    "DurationLike",
    "duration_ns",
]

_S = 1_000_000_000
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": _S, "m": 60 * _S, "h": 3600 * _S, "d": 86400 * _S}
_UNITS["w"] = 7 * _UNITS["d"]
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d|w)\s*$")

#: A duration: ``timedelta``, seconds (int / float), or a string like ``"90s"``, ``"10m"``, ``"7d"``.
DurationLike = timedelta | int | float | str

#: Default grace period of vacuum: files removed from the catalog (or never committed) stay this long.
DEFAULT_VACUUM_GRACE_NS = 3600 * _S


def duration_ns(value: DurationLike, *, what: str = "duration") -> int:
    """``value`` in nanoseconds; raises :class:`InvalidQueryError` for negative or unparsable input.

    Numbers are seconds; strings take one unit among ns, us, ms, s, m, h, d, w (``"10m"``, ``"1.5h"``).
    """
    if isinstance(value, bool):
        raise InvalidQueryError(f"{what} must be a timedelta, seconds or a string like '10m', got {value!r}")
    if isinstance(value, timedelta):
        ns = (value.days * 86400 + value.seconds) * _S + value.microseconds * 1000
    elif isinstance(value, int):
        ns = value * _S
    elif isinstance(value, float):
        ns = round(value * _S)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m is None:
            raise InvalidQueryError(f"{what} {value!r} is not a duration like '90s', '10m', '7d'")
        ns = round(float(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise InvalidQueryError(f"{what} must be a timedelta, seconds or a string like '10m', got {value!r}")
    if ns < 0:
        raise InvalidQueryError(f"{what} must not be negative, got {value!r}")
    return ns


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """What the compaction planner merges and how big the outputs are.

    A raw hour partition is compacted when it holds at least ``min_small_files`` small files (smaller than
    ``small_file_bytes`` and than half of ``target_file_bytes``, so outputs never count as small), or (``merge_overlaps``) at least two files whose (series id, time) bounds overlap
    — late data or duplicates that every query would otherwise merge. Partitions still being written are
    skipped: the hour must have ended ``settle_ns`` ago and its newest file must be ``quiet_ns`` old.
    Outputs are cut at series boundaries into files of about ``target_file_bytes`` (estimated from the
    inputs' bytes per point) with chunks of at most ``max_chunk_points`` points. ``max_input_bytes`` bounds
    one partition job (memory); ``max_jobs`` bounds one pass (None = no limit).
    """

    min_small_files: int = 4
    small_file_bytes: int = 16 << 20
    merge_overlaps: bool = True
    settle_ns: int = 10 * 60 * _S
    quiet_ns: int = 60 * _S
    target_file_bytes: int = 128 << 20
    max_chunk_points: int = 4096
    max_input_bytes: int = 512 << 20
    max_jobs: int | None = None

    def __post_init__(self) -> None:
        if self.min_small_files < 2:
            raise InvalidQueryError("min_small_files must be >= 2 (one file has nothing to merge with)")
        for name in ("small_file_bytes", "target_file_bytes", "max_chunk_points", "max_input_bytes"):
            if getattr(self, name) <= 0:
                raise InvalidQueryError(f"{name} must be positive")
        if self.settle_ns < 0 or self.quiet_ns < 0:
            raise InvalidQueryError("settle_ns and quiet_ns must not be negative")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise InvalidQueryError("max_jobs must be >= 1 or None")
