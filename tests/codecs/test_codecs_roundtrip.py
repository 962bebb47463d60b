"""Round-trip properties of every codec: bit-exact on random and adversarial series of every length."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from codec_strategies import INT64_EXTREMES, SPECIAL_FLOAT_BITS, float_series, int_series
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId
from tsdb_lake.errors import CorruptBlockError

FLOAT_CHOICES = [None, CodecId.GORILLA, CodecId.ALP, CodecId.RLE, CodecId.RAW, CodecId.ALP_ANS]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))
    )


@settings(max_examples=150, deadline=None)
@given(int_series())
def test_timestamps_round_trip(ts: np.ndarray) -> None:
    blob = codecs.encode_timestamps(ts)
    assert codecs.codec_id(blob) is CodecId.TIMESTAMP
    assert codecs.blob_count(blob) == len(ts)
    assert np.array_equal(codecs.decode_timestamps(blob), ts)
    assert np.array_equal(codecs.decode_values(blob), ts)


@settings(max_examples=150, deadline=None)
@given(int_series())
def test_ints_round_trip(x: np.ndarray) -> None:
    blob = codecs.encode_ints(x)
    assert codecs.codec_id(blob) is CodecId.INT64
    out = codecs.decode_ints(blob)
    assert out.dtype == np.int64 and np.array_equal(out, x)
    assert codecs.decode_values(blob).dtype == np.int64


@settings(max_examples=200, deadline=None)
@given(float_series(), st.sampled_from(FLOAT_CHOICES))
def test_floats_round_trip_bit_exact(v: np.ndarray, choice: CodecId | None) -> None:
    blob = codecs.encode_floats(v, choice)
    if choice is not None:
        assert codecs.codec_id(blob) is choice
    assert codecs.blob_count(blob) == len(v)
    assert same_bits(codecs.decode_floats(blob), v)
    assert same_bits(codecs.decode_values(blob), v)


@settings(max_examples=60, deadline=None)
@given(float_series(max_size=300))
def test_adaptive_is_never_bigger_than_gorilla_or_raw(v: np.ndarray) -> None:
    size = len(codecs.encode_floats(v))
    assert size <= len(codecs.encode_gorilla(v))
    assert size <= len(codecs.encode_floats(v, CodecId.RAW))


@pytest.mark.parametrize("n", range(0, 20))
def test_every_short_length(n: int) -> None:
    rng = np.random.default_rng(n)
    ts = np.sort(rng.integers(-(2**62), 2**62, n))
    assert np.array_equal(codecs.decode_timestamps(codecs.encode_timestamps(ts)), ts)
    v = np.round(rng.normal(0, 100, n), 2)
    for choice in FLOAT_CHOICES:
        assert same_bits(codecs.decode_floats(codecs.encode_floats(v, choice)), v)


def test_specials_in_every_float_codec() -> None:
    v = np.array(SPECIAL_FLOAT_BITS * 3, dtype=np.uint64).view(np.float64)
    for choice in FLOAT_CHOICES:
        assert same_bits(codecs.decode_floats(codecs.encode_floats(v, choice)), v)


def test_negative_zero_survives_alp() -> None:
    v = np.array([1.25, -0.0, 0.0, -0.0, 2.5] * 50)
    blob = codecs.encode_floats(v, CodecId.ALP)
    out = codecs.decode_floats(blob)
    assert same_bits(out, v)
    assert np.signbit(out[1]) and not np.signbit(out[2])


def test_int64_extremes_and_wrapping_deltas() -> None:
    x = np.array(INT64_EXTREMES * 40, dtype=np.int64)
    for enc, dec in (
        (codecs.encode_timestamps, codecs.decode_timestamps),
        (codecs.encode_ints, codecs.decode_ints),
    ):
        assert np.array_equal(dec(enc(x)), x)


def test_regular_timestamps_cost_almost_nothing() -> None:
    ts = 1_700_000_000_000_000_000 + np.arange(4096, dtype=np.int64) * 10_000_000_000
    blob = codecs.encode_timestamps(ts)
    assert len(blob) / len(ts) <= 0.02
    ts2 = ts.copy()
    ts2[1000:] += 10_000_000_000  # one gap
    assert len(codecs.encode_timestamps(ts2)) <= len(blob) + 24


def test_unsorted_and_duplicate_timestamps() -> None:
    ts = np.array([5, 5, 5, 3, 10**18, -(10**18), 7, 7], dtype=np.int64)
    assert np.array_equal(codecs.decode_timestamps(codecs.encode_timestamps(ts)), ts)


def test_datetime64_input_and_conversions() -> None:
    t = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:10"], dtype="datetime64[s]")
    out = codecs.decode_timestamps(codecs.encode_timestamps(t))
    assert np.array_equal(out, t.astype("datetime64[ns]").view(np.int64))
    assert same_bits(
        codecs.decode_floats(codecs.encode_floats(np.array([1, 2, 3], np.int32))), np.array([1.0, 2.0, 3.0])
    )


def test_decimal_series_pick_alp_and_compress() -> None:
    v = np.round(20 + np.cumsum(np.random.default_rng(3).normal(0, 0.05, 4096)), 2)
    blob = codecs.encode_floats(v)
    assert codecs.codec_id(blob) in (CodecId.ALP, CodecId.ALP_ANS)  # decimal-scaled integers either way
    assert len(blob) <= len(codecs.encode_floats(v, CodecId.ALP))
    assert len(blob) < 0.5 * len(codecs.encode_gorilla(v))


def test_constant_series_pick_rle() -> None:
    blob = codecs.encode_floats(np.full(4096, 42.5))
    assert codecs.codec_id(blob) is CodecId.RLE
    assert len(blob) < 20


def test_wrong_kind_of_blob_is_rejected() -> None:
    fblob = codecs.encode_gorilla(np.array([1.0, 2.0]))
    tblob = codecs.encode_timestamps(np.array([1, 2]))
    with pytest.raises(CorruptBlockError):
        codecs.decode_timestamps(fblob)
    with pytest.raises(CorruptBlockError):
        codecs.decode_floats(tblob)
    with pytest.raises(CorruptBlockError):
        codecs.decode_gorilla(codecs.encode_floats(np.array([1.0, 2.0]), CodecId.RAW))
    with pytest.raises(ValueError):
        codecs.encode_floats(np.array([1.0]), CodecId.TIMESTAMP)


def test_batch_decoders_all_input_forms_serial_and_parallel() -> None:
    rng = np.random.default_rng(5)
    chunks = [np.round(rng.normal(0, 10, int(k)), 1) for k in rng.integers(0, 3000, 12)]
    chunks[3] = np.full(100, np.nan)
    blobs = [codecs.encode_floats(c, FLOAT_CHOICES[i % len(FLOAT_CHOICES)]) for i, c in enumerate(chunks)]
    want = np.concatenate(chunks)
    arr = pa.array(blobs, pa.binary())
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[: len(blobs) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    sliced = pa.array([b"junk", *blobs], pa.large_binary()).slice(1)
    for form in (blobs, (data, offsets), arr, sliced):
        for par in (True, False):
            vals, counts = codecs.decode_floats_many(form, parallel=par)
            assert same_bits(vals, want)
            assert counts.tolist() == [len(c) for c in chunks]
    tchunks = [np.sort(rng.integers(0, 10**15, int(k))) for k in rng.integers(1, 3000, 7)]
    tvals, tcounts = codecs.decode_timestamps_many([codecs.encode_timestamps(t) for t in tchunks])
    assert np.array_equal(tvals, np.concatenate(tchunks))
    assert tcounts.sum() == len(tvals)
    empty_vals, empty_counts = codecs.decode_floats_many([])
    assert len(empty_vals) == 0 and len(empty_counts) == 0


def test_batch_decoder_names_the_bad_chunk() -> None:
    good = codecs.encode_floats(np.arange(10.0))
    with pytest.raises(CorruptBlockError, match="chunk 1"):
        codecs.decode_floats_many([good, good[:-1], good])
    with pytest.raises(CorruptBlockError, match="chunk 2"):
        codecs.decode_floats_many([good, good, codecs.encode_timestamps(np.arange(3))], parallel=False)
