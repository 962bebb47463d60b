"""The error tree of tsdb-lake: one base class, a stable code per kind, and a ``retryable`` flag.

Every user-facing failure is a :class:`TsdbLakeError`. Callers branch on ``code`` (stable strings, safe to
log and match) or on the subclass; ``retryable`` says whether the same call may succeed if simply repeated.
This module imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BackendReadError",
    "BackendWriteError",
    "CardinalityLimitedError",
    "CommitConflictError",
    "CorruptBlockError",
    "ErrorCode",
    "InvalidFrameError",
    "InvalidNameError",
    "InvalidQueryError",
    "InvalidTimestampError",
    "InvalidValueTypeError",
    "LineProtocolError",
    "NotFoundError",
    "RateLimitedError",
    "RowError",
    "SchemaConflictError",
    "TsdbLakeError",
    "WriteError",
]


class ErrorCode(StrEnum):
    """Stable machine-readable error codes."""

    INVALID_NAME = "invalid_name"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_VALUE_TYPE = "invalid_value_type"
    INVALID_FRAME = "invalid_frame"
    LINE_PROTOCOL = "line_protocol"
    SCHEMA_CONFLICT = "schema_conflict"
    CORRUPT_BLOCK = "corrupt_block"
    COMMIT_CONFLICT = "commit_conflict"
    RATE_LIMITED = "rate_limited"
    CARDINALITY_LIMITED = "cardinality_limited"
    BACKEND_READ = "backend_read"
    BACKEND_WRITE = "backend_write"
    NOT_FOUND = "not_found"
    INVALID_QUERY = "invalid_query"
    WRITE_REJECTED = "write_rejected"


class TsdbLakeError(Exception):
    """Base class of every error tsdb-lake raises on purpose."""

    code: ErrorCode = ErrorCode.INVALID_FRAME
    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"


class InvalidNameError(TsdbLakeError):
    """A tenant, metric, label key or field name breaks the naming rules."""

    code = ErrorCode.INVALID_NAME


class InvalidTimestampError(TsdbLakeError):
    """A timestamp is missing, null, of an unusable type or outside the supported range."""

    code = ErrorCode.INVALID_TIMESTAMP


class InvalidValueTypeError(TsdbLakeError):
    """A column has a type that is neither a label (string) nor a field (numeric)."""

    code = ErrorCode.INVALID_VALUE_TYPE


class InvalidFrameError(TsdbLakeError):
    """The frame as a whole is unusable: empty, mismatched lengths, no fields, unsupported kind."""

    code = ErrorCode.INVALID_FRAME


class SchemaConflictError(TsdbLakeError):
    """A write or evolution conflicts with the metric's recorded schema (e.g. a label becoming a field)."""

    code = ErrorCode.SCHEMA_CONFLICT


class CorruptBlockError(TsdbLakeError):
    """Bytes that should decode do not: truncated, corrupted or hostile input. Names the file when known."""

    code = ErrorCode.CORRUPT_BLOCK

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{message} (in {path})" if path else message)
        self.path = path

    def with_path(self, path: str) -> CorruptBlockError:
        """The same error naming ``path``; used by layers that know which file the block came from."""
        if self.path is not None:
            return self
        return CorruptBlockError(self.message, path=path)


class CommitConflictError(TsdbLakeError):
    """A catalog commit lost a race it could not resolve by retrying."""

    code = ErrorCode.COMMIT_CONFLICT
    retryable = True


class RateLimitedError(TsdbLakeError):
    """The writer is applying back-pressure: flushing cannot keep up with ingest. Retry after a pause."""

    code = ErrorCode.RATE_LIMITED
    retryable = True


class CardinalityLimitedError(TsdbLakeError):
    """A write would exceed a configured series-cardinality limit."""

    code = ErrorCode.CARDINALITY_LIMITED


class BackendReadError(TsdbLakeError):
    """The storage backend failed to read an object."""

    code = ErrorCode.BACKEND_READ
    retryable = True


class BackendWriteError(TsdbLakeError):
    """The storage backend failed to write or delete an object."""

    code = ErrorCode.BACKEND_WRITE
    retryable = True


class NotFoundError(TsdbLakeError):
    """A lake, tenant, metric, field, tier or catalog version does not exist."""

    code = ErrorCode.NOT_FOUND


class InvalidQueryError(TsdbLakeError):
    """A query is malformed: bad range, unknown aggregate, bad regex, forbidden table."""

    code = ErrorCode.INVALID_QUERY


@dataclass(frozen=True)
class RowError:
    """Why one input row (or line, for line protocol) was rejected. ``row`` is 0-based; lines are 1-based."""

    row: int
    reason: str
    column: str | None = None


class WriteError(TsdbLakeError):
    """A batch was rejected as a whole; ``rows`` lists each offending row and why. Nothing was written."""

    code = ErrorCode.WRITE_REJECTED

    def __init__(self, message: str, rows: list[RowError], *, code: ErrorCode | None = None) -> None:
        shown = "; ".join(
            f"row {r.row}{f' column {r.column!r}' if r.column else ''}: {r.reason}" for r in rows[:5]
        )
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        super().__init__(f"{message}: {shown}{more}" if rows else message)
        self.rows = rows
        if code is not None:
            self.code = code


class LineProtocolError(WriteError):
    """Malformed Influx line protocol; ``rows`` holds 1-based line numbers with the reason."""

    code = ErrorCode.LINE_PROTOCOL
