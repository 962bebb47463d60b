"""Names, series keys and series ids: the data model's pure rules (no I/O).

A tenant holds metrics; a metric holds series; a series is the metric plus its labels (string key/values).
Names become path segments and column names, so they are validated here before anything reaches storage.
The canonical series key and the 64-bit series id are part of the lake format (``catalog/FORMAT.md``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Literal

from tsdb_lake.errors import InvalidNameError

__all__ = [
    "MAX_LABEL_VALUE_BYTES",
    "MAX_NAME_LENGTH",
    "RESERVED_COLUMNS",
    "TIME_COLUMN",
    "FieldKind",
    "NameKind",
    "series_id",
    "series_key",
    "validate_label_value",
    "validate_name",
]

TIME_COLUMN = "time"
MAX_NAME_LENGTH = 128
MAX_LABEL_VALUE_BYTES = 4096
#: Column names the lake uses itself; user labels and fields may not take them. Every name starting with
#: ``_`` is reserved as well.
RESERVED_COLUMNS = frozenset({TIME_COLUMN, "tenant", "metric", "tier", "hour", "day", "month", "year"})

NameKind = Literal["tenant", "metric", "label", "field"]

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]*")


class FieldKind(StrEnum):
    """How a numeric field behaves over time; counters get reset-aware increase in rollups."""

    GAUGE = "gauge"
    COUNTER = "counter"


def validate_name(kind: NameKind, name: object) -> str:
    """Return ``name`` if it is a valid ``kind`` name, else raise :class:`InvalidNameError`.

    Rules: a string of 1-128 characters, starting with an ASCII letter, then ASCII letters, digits, ``_``,
    ``.``, ``:`` or ``-``; no ``..``. Labels and fields may not use the reserved column names nor ``__``.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{kind} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{kind} name {name[:32]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"{kind} name {name!r} is invalid: use ASCII letters, digits, '_', '.', ':' or '-', "
            "starting with a letter (no '..', '/', spaces or control characters)"
        )
    if kind in ("label", "field") and name in RESERVED_COLUMNS:
        raise InvalidNameError(f"{kind} name {name!r} is reserved by tsdb-lake; rename the column")
    if kind in ("label", "field") and "__" in name:
        raise InvalidNameError(
            f"{kind} name {name!r} contains '__', which tsdb-lake reserves for column suffixes"
        )
    return name


def validate_label_value(key: str, value: object) -> str:
    """Return a label value if valid: a string without NUL of at most 4096 UTF-8 bytes."""
    if not isinstance(value, str):
        raise InvalidNameError(f"label {key!r} value must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidNameError(f"label {key!r} value contains a NUL character")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_LABEL_VALUE_BYTES:
        raise InvalidNameError(f"label {key!r} value is longer than {MAX_LABEL_VALUE_BYTES} bytes")
    return value


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def series_key(metric: str, labels: Mapping[str, str | None] | Iterable[tuple[str, str | None]]) -> str:
    """The canonical series key: ``metric,k1=v1,k2=v2`` with labels sorted by key, null labels omitted.

    ``\\``, ``,``, ``=`` and space inside keys and values are escaped with a backslash (Influx style).
    """
    items = labels.items() if isinstance(labels, Mapping) else labels
    parts = [_escape(metric)]
    for key, value in sorted((k, v) for k, v in items if v is not None):
        parts.append(f"{_escape(key)}={_escape(value)}")
    return ",".join(parts)


def series_id(key: str) -> int:
    """The stable 64-bit series id: BLAKE2b with an 8-byte digest of the UTF-8 key, read little-endian.

    Returned as an unsigned int in ``[0, 2**64)``.
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")
