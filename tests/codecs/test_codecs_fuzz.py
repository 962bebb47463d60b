"""Hostile bytes: every decoder either returns a clean result or raises CorruptBlockError, never crashes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from codec_strategies import float_series, int_series
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId
from tsdb_lake.errors import CorruptBlockError

DECODERS: list[Callable[[bytes], object]] = [
    codecs.decode_timestamps,
    codecs.decode_ints,
    codecs.decode_floats,
    codecs.decode_gorilla,
    codecs.decode_values,
    lambda b: codecs.decode_floats_many([b, b], parallel=False),
    lambda b: codecs.decode_timestamps_many([b], parallel=True),
    lambda b: codecs.reduce_floats_many([b, b, b], parallel=True),
    codecs.codec_id,
    codecs.blob_count,
]


def _all_decoders_behave(blob: bytes) -> None:
    for dec in DECODERS:
        try:
            out = dec(blob)
        except CorruptBlockError:
            continue
        if isinstance(out, np.ndarray):
            assert out.ndim == 1
            assert len(out) <= 1024 * len(blob) + 4096


@st.composite
def valid_blob(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["ts", "int", *[c.name for c in codecs.FLOAT_CODECS], "adaptive"]))
    if kind == "ts":
        return codecs.encode_timestamps(draw(int_series(max_size=200)))
    if kind == "int":
        return codecs.encode_ints(draw(int_series(max_size=200)))
    v = draw(float_series(max_size=200))
    return codecs.encode_floats(v, None if kind == "adaptive" else CodecId[kind])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(blob: bytes) -> None:
    _all_decoders_behave(blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 8), st.integers(0, 2**63), st.binary(max_size=64))
def test_random_bytes_with_valid_header(cid: int, count: int, body: bytes) -> None:
    head = bytearray([cid])
    while True:
        b = count & 0x7F
        count >>= 7
        head.append(b | (0x80 if count else 0))
        if not count:
            break
    _all_decoders_behave(bytes(head) + body)


@settings(max_examples=300, deadline=None)
@given(valid_blob(), st.data())
def test_mutated_blobs(blob: bytes, data: st.DataObject) -> None:
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "count"]))
    b = bytearray(blob)
    if op == "flip" and b:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(b) * 8 - 1))
            b[i // 8] ^= 1 << (i % 8)
    elif op == "truncate":
        b = b[: data.draw(st.integers(0, len(b)))]
    elif op == "extend":
        b += data.draw(st.binary(min_size=1, max_size=16))
    elif op == "splice" and b:
        i = data.draw(st.integers(0, len(b) - 1))
        b[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    elif op == "count" and len(b) > 1:
        b[1] = data.draw(st.integers(0, 255))
    _all_decoders_behave(bytes(b))


def test_hostile_counts_do_not_allocate() -> None:
    for cid in range(1, 9):
        blob = bytes([cid]) + bytes([0xFF] * 9) + bytes([0x01]) + bytes(8)
        _all_decoders_behave(blob)
    # an RLE blob claiming a huge run is rejected by the expansion cap, not allocated
    huge = bytes([CodecId.RLE, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 0x80, 0x80, 0x80, 0x80, 0x10]) + bytes(8)
    _all_decoders_behave(huge)
