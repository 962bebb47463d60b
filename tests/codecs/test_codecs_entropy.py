"""``entropy_bits`` (the ALP_ANS mode estimate) looks up log2 of small counts: it must equal the direct call."""

from __future__ import annotations

import numpy as np
from numba import njit

from tsdb_lake.codecs.ans import MAX_TOKENS, entropy_bits


@njit(cache=False)
def _direct(hist: np.ndarray, k: int) -> float:
    m = 0
    used = 0
    for t in range(k):
        m += hist[t]
        used += 1 if hist[t] > 0 else 0
    bits = 4.0 * used
    if m == 0:
        return bits
    lm = np.log2(m)
    for t in range(k):
        if hist[t] > 0:
            bits += hist[t] * (lm - np.log2(hist[t]))
    return bits


def test_entropy_bits_bit_identical_to_direct_log2() -> None:
    rng = np.random.default_rng(5)
    for trial in range(3000):
        k = int(rng.integers(1, MAX_TOKENS + 1))
        top = int(rng.choice([3, 50, 1000, 5000, 100_000]))  # below and above the lookup table
        hist = rng.integers(0, top, k).astype(np.int64)
        hist[rng.random(k) < 0.3] = 0
        got = entropy_bits(hist, k)
        want = _direct(hist, k)
        assert np.float64(got).view(np.uint64) == np.float64(want).view(np.uint64), (trial, k, top)
