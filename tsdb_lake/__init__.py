"""tsdb-lake: a time-series store whose home is a lake of Parquet files on object storage.

``tsdb_lake.connect(uri)`` opens a lake. The package root only re-exports the public names; the heavy ones
(the lake, the writer: they pull in numba, polars and pyarrow) load on first use so ``import tsdb_lake`` and
the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tsdb_lake.errors import (
    BackendReadError,
    BackendWriteError,
    CardinalityLimitedError,
    CommitConflictError,
    CorruptBlockError,
    ErrorCode,
    InvalidFrameError,
    InvalidNameError,
    InvalidQueryError,
    InvalidTimestampError,
    InvalidValueTypeError,
    LineProtocolError,
    NotFoundError,
    RateLimitedError,
    RowError,
    SchemaConflictError,
    TsdbLakeError,
    WriteError,
)
from tsdb_lake.model import FieldKind

if TYPE_CHECKING:
    from tsdb_lake.ingest.options import WriterOptions
    from tsdb_lake.ingest.writer import Writer
    from tsdb_lake.lake import Lake, connect
    from tsdb_lake.query.matchers import Matcher, eq, ne, not_regex, regex

__version__ = "0.1.0"

_LAZY = {
    "Lake": "tsdb_lake.lake",
    "connect": "tsdb_lake.lake",
    "Writer": "tsdb_lake.ingest.writer",
    "WriterOptions": "tsdb_lake.ingest.options",
    "Matcher": "tsdb_lake.query.matchers",
    "eq": "tsdb_lake.query.matchers",
    "ne": "tsdb_lake.query.matchers",
    "regex": "tsdb_lake.query.matchers",
    "not_regex": "tsdb_lake.query.matchers",
}

__all__ = [
    "BackendReadError",
    "BackendWriteError",
    "CardinalityLimitedError",
    "CommitConflictError",
    "CorruptBlockError",
    "ErrorCode",
    "FieldKind",
    "InvalidFrameError",
    "InvalidNameError",
    "InvalidQueryError",
    "InvalidTimestampError",
    "InvalidValueTypeError",
    "Lake",
    "LineProtocolError",
    "Matcher",
    "NotFoundError",
    "RateLimitedError",
    "RowError",
    "SchemaConflictError",
    "TsdbLakeError",
    "WriteError",
    "Writer",
    "WriterOptions",
    "__version__",
    "connect",
    "eq",
    "ne",
    "not_regex",
    "regex",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tsdb_lake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
