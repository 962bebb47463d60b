"""Byte form of the catalog's JSON documents (log entries, checkpoints): compact UTF-8 JSON, gzip-framed
when large.

A document of at least :data:`GZIP_MIN_BYTES` bytes of JSON is stored as one gzip member (RFC 1952, header
``mtime`` 0, so equal documents give equal bytes); smaller ones stay plain JSON that ``cat`` shows. Readers
tell the two apart by the first byte: JSON objects start with ``{``, gzip with ``0x1f 0x8b``. On TSBS-shaped
commits (per-file label values and statistics) the log shrinks ~14x.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

from tsdb_lake.errors import CorruptBlockError

__all__ = ["GZIP_MIN_BYTES", "dump_document", "load_document"]

#: JSON documents at least this long are gzip-compressed; shorter ones gain little and stay readable as-is.
GZIP_MIN_BYTES = 1024
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_LEVEL = 6


def dump_document(doc: Any) -> bytes:
    """The stored bytes of ``doc``: compact JSON (no NaN literals), gzip-framed from :data:`GZIP_MIN_BYTES`."""
    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if len(data) < GZIP_MIN_BYTES:
        return data
    return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)


def load_document(data: bytes, key: str, what: str) -> Any:
    """Parse stored bytes back into JSON values; malformed content raises CorruptBlockError naming ``key``."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptBlockError(f"catalog {what} is not a valid gzip member: {exc}", path=key) from None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptBlockError(f"catalog {what} is not valid JSON: {exc}", path=key) from None
