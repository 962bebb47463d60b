"""tsdb-lake: a time-series store whose home is a lake of Parquet files on object storage.

``tsdb_lake.connect(uri)`` opens a lake; the package root only re-exports the public names.
"""

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
from tsdb_lake.ingest.options import WriterOptions
from tsdb_lake.ingest.writer import Writer
from tsdb_lake.lake import Lake, connect
from tsdb_lake.model import FieldKind
from tsdb_lake.query.matchers import Matcher, eq, ne, not_regex, regex

__version__ = "0.1.0"

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
