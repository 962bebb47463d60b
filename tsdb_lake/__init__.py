"""tsdb-lake: a time-series store whose home is a lake of Parquet files on object storage."""

from tsdb_lake.errors import (
    CommitConflictError,
    CorruptBlockError,
    ErrorCode,
    TsdbLakeError,
    WriteError,
)

__version__ = "0.1.0"

__all__ = [
    "CommitConflictError",
    "CorruptBlockError",
    "ErrorCode",
    "TsdbLakeError",
    "WriteError",
    "__version__",
]
