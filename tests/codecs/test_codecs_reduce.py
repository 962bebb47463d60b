"""Batch decoders over threads and the reducing decoder: equal to decoding blob by blob, then reducing."""

from __future__ import annotations

import numpy as np
import pytest
from codec_strategies import float_series
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId
from tsdb_lake.errors import CorruptBlockError

FLOAT_CHOICES = [None, CodecId.GORILLA, CodecId.ALP, CodecId.RLE, CodecId.RAW, CodecId.ALP_ANS]


def _expected(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per blob: count, sum, min / max (NaN skipped unless all NaN, NaN when empty), from single decodes."""
    parts = [codecs.decode_floats(b) for b in blobs]
    counts = np.array([len(p) for p in parts], np.int64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow follow IEEE here
        sums = np.array([float(np.sum(p)) for p in parts])
        kept = [p[~np.isnan(p)] for p in parts]  # (numpy's fmin keeps a signalling NaN: not used here)
        lo = np.array([k.min() if len(k) else np.nan for k in kept])
        hi = np.array([k.max() if len(k) else np.nan for k in kept])
    return counts, sums, lo, hi


def _check(blobs: list[bytes], parallel: bool) -> None:
    counts, sums, lo, hi = codecs.reduce_floats_many(blobs, parallel=parallel)
    w_counts, w_sums, w_lo, w_hi = _expected(blobs)
    np.testing.assert_array_equal(counts, w_counts)
    # the summation order is unspecified: equal up to rounding (NaN / inf where IEEE gives them); sums of huge
    # values of both signs may overflow in one order and not in another, so compare finite sums only
    finite = np.isfinite(sums) & np.isfinite(w_sums)
    np.testing.assert_allclose(sums[finite], w_sums[finite], rtol=1e-9, atol=1e-300)
    has_nan = np.array([bool(np.isnan(codecs.decode_floats(b)).any()) for b in blobs])
    assert np.isnan(sums[has_nan]).all()
    np.testing.assert_array_equal(lo, w_lo)
    np.testing.assert_array_equal(hi, w_hi)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(float_series(max_size=300), min_size=1, max_size=8),
    st.sampled_from(FLOAT_CHOICES),
    st.booleans(),
)
def test_reduce_matches_decode_then_reduce(
    series: list[np.ndarray], choice: CodecId | None, par: bool
) -> None:
    _check([codecs.encode_floats(v, choice) for v in series], par)


def test_reduce_nan_inf_and_empty_chunks() -> None:
    nan, inf = float("nan"), float("inf")
    series = [
        np.array([]),
        np.array([nan, nan]),
        np.array([nan, 1.5, -2.0, nan]),
        np.array([inf, -inf, 3.0]),
        np.array([inf, inf]),
        np.arange(37, dtype=np.float64) / 10,
    ]
    for choice in FLOAT_CHOICES:
        blobs = [codecs.encode_floats(v, choice) for v in series]
        for par in (False, True):
            _check(blobs, par)
    counts, sums, lo, hi = codecs.reduce_floats_many([codecs.encode_floats(v) for v in series])
    assert counts.tolist() == [0, 2, 4, 3, 2, 37]
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and sums[0] == 0.0
    assert np.isnan(lo[1]) and np.isnan(sums[1])
    assert (lo[2], hi[2]) == (-2.0, 1.5) and np.isnan(sums[2])
    assert (lo[3], hi[3]) == (-inf, inf) and np.isnan(sums[3])
    assert (lo[4], hi[4], sums[4]) == (inf, inf, inf)
    assert (lo[5], hi[5]) == (0.0, 3.6) and sums[5] == pytest.approx(66.6, rel=1e-12)


def test_large_batches_decode_the_same_serially_and_in_pieces() -> None:
    rng = np.random.default_rng(5)
    walk = np.round(50 + np.cumsum(rng.normal(0, 1, 400_000)), 1)
    off = np.arange(0, len(walk) + 1, 360)
    off[-1] = len(walk)
    data, boff = codecs.encode_floats_many(walk, off)
    serial, c1 = codecs.decode_floats_many((data, boff), parallel=False)
    threaded, c2 = codecs.decode_floats_many((data, boff), parallel=True)
    np.testing.assert_array_equal(serial.view(np.uint64), walk.view(np.uint64))
    np.testing.assert_array_equal(threaded.view(np.uint64), walk.view(np.uint64))
    np.testing.assert_array_equal(c1, c2)
    blobs = [bytes(data[boff[i] : boff[i + 1]]) for i in range(len(boff) - 1)]
    _check(blobs, True)


def test_corrupt_chunk_in_a_batch_is_reported() -> None:
    good = codecs.encode_floats(np.arange(100, dtype=np.float64) * 0.25, CodecId.ALP_ANS)
    bad = good[:-3]
    for par in (False, True):
        with pytest.raises(CorruptBlockError, match="chunk 5"):
            codecs.reduce_floats_many([good] * 5 + [bad] + [good] * 40, parallel=par)
        with pytest.raises(CorruptBlockError, match="chunk 5"):
            codecs.decode_floats_many([good] * 5 + [bad] + [good] * 40, parallel=par)
