"""Codec identifiers, the blob header and the format constants shared by every codec.

Every encoded blob starts with ``codec id (1 byte)`` then the value count as an unsigned LEB128 varint.
The numbers below are part of the on-disk format (``catalog/CODECS.md``) and never change meaning.
"""

from __future__ import annotations

from enum import IntEnum

from tsdb_lake.errors import CorruptBlockError

__all__ = [
    "FLOAT_CODECS",
    "FORMAT_VERSION",
    "INT_CODECS",
    "MAX_EXPANSION",
    "MAX_SLACK",
    "CodecId",
    "read_header",
]

#: Version of the codec bitstreams described in catalog/CODECS.md.
FORMAT_VERSION = 1

#: A blob of ``L`` bytes may claim at most ``MAX_EXPANSION * L + MAX_SLACK`` values; decoders reject more.
MAX_EXPANSION = 1024
MAX_SLACK = 4096


class CodecId(IntEnum):
    """Stable codec identifiers: the first byte of every blob."""

    TIMESTAMP = 1  #: int64 timestamps: delta-of-delta (or delta / frame-of-reference) + PFOR bit packing
    INT64 = 2  #: int64 values: frame-of-reference, delta or delta-of-delta + PFOR bit packing
    GORILLA = 3  #: float64 Gorilla XOR (VLDB 2015)
    RAW = 4  #: float64 raw, 8 bytes little endian each
    RLE = 5  #: float64 runs of bit-identical values (constant chunks)
    ALP = 6  #: float64 as decimal-scaled integers + bit-pattern corrections (after ALP, SIGMOD 2024)
    ALP_ANS = 7  #: ALP's integers as entropy-coded (rANS) delta or frame-of-reference residuals


FLOAT_CODECS = frozenset({CodecId.GORILLA, CodecId.RAW, CodecId.RLE, CodecId.ALP, CodecId.ALP_ANS})
INT_CODECS = frozenset({CodecId.TIMESTAMP, CodecId.INT64})


def read_header(blob: bytes | bytearray | memoryview) -> tuple[CodecId, int, int]:
    """Parse a blob header: ``(codec id, value count, header length in bytes)``; CorruptBlockError if bad."""
    mv = memoryview(blob).cast("B")
    if len(mv) < 2:
        raise CorruptBlockError(f"blob of {len(mv)} bytes is too short for a header")
    try:
        cid = CodecId(mv[0])
    except ValueError:
        raise CorruptBlockError(f"unknown codec id {mv[0]}") from None
    count = 0
    shift = 0
    pos = 1
    while True:
        if pos >= len(mv) or pos > 10:
            raise CorruptBlockError("truncated or overlong value-count varint")
        b = mv[pos]
        pos += 1
        count |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if count > MAX_EXPANSION * len(mv) + MAX_SLACK:
        raise CorruptBlockError(f"blob of {len(mv)} bytes claims an impossible {count} values")
    return cid, count, pos
