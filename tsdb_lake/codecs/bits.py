"""Bit-stream primitives shared by the codecs: LSB-first fields over little-endian 64-bit words.

Stream bit ``k`` is bit ``k % 8`` of byte ``k // 8``; an ``n``-bit field holding ``v`` puts bit ``j`` of
``v`` at stream bit ``pos + j``. Because the host is little endian, a ``uint64`` word array viewed as bytes
*is* the stream. Readers work on a copy of the blob in a zero-padded word array (:data:`PAD_WORDS` extra
words), so a read that starts at or before the end of the data and spans at most 256 bits never leaves the
array; callers check ``pos <= total`` (or the exact length of a field run) before every such read.

Kernels report failures with a status code (``OK`` = 0); :func:`status_message` turns one into text.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little endian
    raise ImportError("tsdb_lake.codecs needs a little-endian host")

__all__ = [
    "ALL_ONES",
    "E_BAD_FIELD",
    "E_CODEC",
    "E_COUNT",
    "E_TRAILING",
    "E_TRUNCATED",
    "OK",
    "PAD_WORDS",
    "bitlen",
    "clz",
    "ctz",
    "finish",
    "get",
    "get_varint",
    "load_words",
    "new_words",
    "put",
    "put_varint",
    "status_message",
    "unzigzag",
    "varint_bits",
    "zigzag",
]

U64 = np.uint64
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
PAD_WORDS = 6

OK = 0
E_TRUNCATED = 1
E_BAD_FIELD = 2
E_TRAILING = 3
E_COUNT = 4
E_CODEC = 5

_MESSAGES = {
    E_TRUNCATED: "truncated block: the bit stream ends before the data it declares",
    E_BAD_FIELD: "corrupt block: a field holds an impossible value",
    E_TRAILING: "corrupt block: unexpected bytes or non-zero padding after the data",
    E_COUNT: "corrupt block: the value count is impossible for the block size",
    E_CODEC: "corrupt block: unknown or unexpected codec id",
}


def status_message(status: int) -> str:
    """Human-readable text for a kernel status code."""
    return _MESSAGES.get(status, f"corrupt block (status {status})")


@njit(cache=True, inline="always")
def clz(x: np.uint64) -> int:
    """Leading zero bits of a uint64 (64 for 0)."""
    return int(np.int64(leading_zeros(x)))  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def ctz(x: np.uint64) -> int:
    """Trailing zero bits of a uint64 (64 for 0)."""
    return int(np.int64(trailing_zeros(x)))  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def bitlen(x: np.uint64) -> int:
    """Number of significant bits of a uint64 (0 for 0)."""
    return 64 - int(np.int64(leading_zeros(x)))  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def zigzag(d: np.uint64) -> np.uint64:
    """Zigzag of a two's-complement int64 held in a uint64: 0,-1,1,-2 -> 0,1,2,3."""
    return (d << U64(1)) ^ (U64(0) - (d >> U64(63)))


@njit(cache=True, inline="always")
def unzigzag(u: np.uint64) -> np.uint64:
    """Inverse of :func:`zigzag`, result as a two's-complement uint64."""
    return (u >> U64(1)) ^ (U64(0) - (u & U64(1)))


@njit(cache=True, inline="always")
def put(words: np.ndarray, pos: int, v: np.uint64, n: int) -> int:
    """Write the low ``n`` (0..64) bits of ``v`` (already masked) at bit ``pos``; return the new position."""
    if n == 0:
        return pos
    wi = pos >> 6
    off = pos & 63
    words[wi] |= v << U64(off)
    if off + n > 64:
        words[wi + 1] |= v >> U64(64 - off)
    return pos + n


@njit(cache=True, inline="always")
def get(words: np.ndarray, pos: int, n: int) -> np.uint64:
    """Read an ``n``-bit (0..64) field at bit ``pos``; memory safety is the caller's (see module doc)."""
    wi = pos >> 6
    off = pos & 63
    v = words[wi] >> U64(off)
    if off + n > 64:
        v |= words[wi + 1] << U64(64 - off)
    if n < 64:
        v &= (U64(1) << U64(n)) - U64(1)
    return v


@njit(cache=True)
def put_varint(words: np.ndarray, pos: int, v: np.uint64) -> int:
    """Write ``v`` as an unsigned LEB128 varint (8-bit groups, low 7 bits first, high bit = more)."""
    while v >= U64(0x80):
        pos = put(words, pos, (v & U64(0x7F)) | U64(0x80), 8)
        v >>= U64(7)
    return put(words, pos, v, 8)


@njit(cache=True, inline="always")
def varint_bits(v: np.uint64) -> int:
    """Bits :func:`put_varint` writes for ``v`` (8 per 7-bit group)."""
    n = 8
    while v >= U64(0x80):
        v >>= U64(7)
        n += 8
    return n


@njit(cache=True)
def get_varint(words: np.ndarray, pos: int, total: int) -> tuple[np.uint64, int, int]:
    """Read an unsigned LEB128 varint of at most 10 groups: ``(value, new pos, status)``."""
    v = U64(0)
    for k in range(10):
        if pos + 8 > total:
            return U64(0), pos, E_TRUNCATED
        b = get(words, pos, 8)
        pos += 8
        if k == 9 and b > U64(1):
            return U64(0), pos, E_BAD_FIELD
        v |= (b & U64(0x7F)) << U64(7 * k)
        if b < U64(0x80):
            return v, pos, OK
    return U64(0), pos, E_BAD_FIELD


@njit(cache=True)
def new_words(nbits: int) -> np.ndarray:
    """A zeroed word buffer able to hold ``nbits`` bits plus padding, for a writer."""
    return np.zeros((nbits >> 6) + PAD_WORDS, np.uint64)


@njit(cache=True)
def finish(words: np.ndarray, pos: int) -> np.ndarray:
    """The written stream as bytes (a uint8 copy), zero-padded to a whole byte."""
    return words.view(np.uint8)[: (pos + 7) >> 3].copy()


@njit(cache=True)
def load_words(data: np.ndarray, start: int, end: int) -> np.ndarray:
    """Copy bytes ``data[start:end]`` into a zero-padded little-endian uint64 word array for reading."""
    nb = end - start
    full = nb >> 3
    words = np.zeros(full + 1 + PAD_WORDS, np.uint64)
    for i in range(full):
        b = start + 8 * i
        words[i] = (
            U64(data[b])
            | (U64(data[b + 1]) << U64(8))
            | (U64(data[b + 2]) << U64(16))
            | (U64(data[b + 3]) << U64(24))
            | (U64(data[b + 4]) << U64(32))
            | (U64(data[b + 5]) << U64(40))
            | (U64(data[b + 6]) << U64(48))
            | (U64(data[b + 7]) << U64(56))
        )
    w = U64(0)
    for j in range(nb - 8 * full):
        w |= U64(data[start + 8 * full + j]) << U64(8 * j)
    words[full] = w
    return words
