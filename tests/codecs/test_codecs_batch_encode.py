"""Batch encoders: byte-identical to the single-blob encoders, Arrow-ready, and round-tripping in batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from codec_strategies import SPECIAL_FLOAT_BITS, float_series, int_series
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId
from tsdb_lake.codecs.batch import PARALLEL_MIN_VALUES

FLOAT_CHOICES = [None, CodecId.GORILLA, CodecId.ALP, CodecId.RLE, CodecId.RAW, CodecId.ALP_ANS]


@st.composite
def cuts(draw: st.DrawFn, n: int) -> np.ndarray:
    """Non-decreasing chunk offsets from 0 to ``n`` (empty chunks allowed)."""
    inner = sorted(draw(st.lists(st.integers(0, n), max_size=12)))
    return np.array([0, *inner, n], dtype=np.int64)


def blobs_of(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    return [bytes(data[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)]


@settings(max_examples=80, deadline=None)
@given(st.data(), float_series(max_size=400), st.sampled_from(FLOAT_CHOICES), st.booleans())
def test_floats_many_identical_to_single(
    data: st.DataObject, v: np.ndarray, choice: CodecId | None, par: bool
) -> None:
    off = data.draw(cuts(len(v)))
    out, boff = codecs.encode_floats_many(v, off, choice, parallel=par)
    assert out.dtype == np.uint8 and boff.dtype == np.int64 and len(boff) == len(off)
    assert blobs_of(out, boff) == [
        codecs.encode_floats(v[off[i] : off[i + 1]], choice) for i in range(len(off) - 1)
    ]


@settings(max_examples=60, deadline=None)
@given(st.data(), int_series(), st.booleans())
def test_ints_and_timestamps_many_identical_to_single(data: st.DataObject, x: np.ndarray, par: bool) -> None:
    off = data.draw(cuts(len(x)))
    chunks = [x[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    out, boff = codecs.encode_timestamps_many(x, off, parallel=par)
    assert blobs_of(out, boff) == [codecs.encode_timestamps(c) for c in chunks]
    out, boff = codecs.encode_ints_many(x, off, parallel=par)
    assert blobs_of(out, boff) == [codecs.encode_ints(c) for c in chunks]
    back, counts = codecs.decode_ints_many((out, boff), parallel=par)
    assert np.array_equal(back, x[off[0] : off[-1]])
    assert np.array_equal(counts, np.diff(off))


def test_large_batch_threads_match_single_and_decode_from_arrow() -> None:
    rng = np.random.default_rng(3)
    n = 3 * PARALLEL_MIN_VALUES + 17
    v = np.round(np.cumsum(rng.normal(0, 1, n)), 2)
    specials = np.array(SPECIAL_FLOAT_BITS, dtype=np.uint64).view(np.float64)
    v[::997] = specials[np.arange(len(v[::997])) % len(specials)]
    off = np.append(np.arange(0, n, 360), n).astype(np.int64)
    serial = codecs.encode_floats_many(v, off, parallel=False)
    threaded = codecs.encode_floats_many(v, off, parallel=True)
    assert np.array_equal(serial[0], threaded[0]) and np.array_equal(serial[1], threaded[1])
    for i in (0, 1, len(off) // 2, len(off) - 2):
        assert bytes(serial[0][off_slice(serial[1], i)]) == codecs.encode_floats(v[off[i] : off[i + 1]])
    for arrow_type, width in ((pa.binary(), np.int32), (pa.large_binary(), np.int64)):
        data, boff = threaded
        arr = pa.Array.from_buffers(
            arrow_type, len(boff) - 1, [None, pa.py_buffer(boff.astype(width)), pa.py_buffer(data)]
        )
        arr.validate(full=True)
        back, counts = codecs.decode_floats_many(arr)
        assert np.array_equal(back.view(np.uint64), v.view(np.uint64))
        assert np.array_equal(counts, np.diff(off))


def off_slice(boff: np.ndarray, i: int) -> slice:
    return slice(int(boff[i]), int(boff[i + 1]))


def test_empty_and_offset_windows() -> None:
    data, boff = codecs.encode_floats_many(np.zeros(0), np.array([0]))
    assert len(data) == 0 and boff.tolist() == [0]
    x = np.arange(100, dtype=np.int64) * 7
    data, boff = codecs.encode_timestamps_many(x, np.array([10, 10, 50, 90]))
    assert blobs_of(data, boff) == [
        codecs.encode_timestamps(x[10:10]),
        codecs.encode_timestamps(x[10:50]),
        codecs.encode_timestamps(x[50:90]),
    ]


@pytest.mark.parametrize(
    "bad", [np.array([0, 5, 3]), np.array([-1, 2]), np.array([0, 200]), np.zeros(0, np.int64)]
)
def test_bad_offsets_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        codecs.encode_floats_many(np.zeros(100), bad)


def test_non_float_codec_rejected() -> None:
    with pytest.raises(ValueError):
        codecs.encode_floats_many(np.zeros(4), np.array([0, 4]), CodecId.TIMESTAMP)
