"""Shared hypothesis strategies for the codec tests: adversarial float64 and int64 series."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import strategies as st

SPECIAL_FLOAT_BITS = [
    0x0000000000000000,  # +0.0
    0x8000000000000000,  # -0.0
    0x7FF0000000000000,  # +inf
    0xFFF0000000000000,  # -inf
    0x7FF8000000000000,  # quiet NaN
    0x7FF0000000000001,  # signalling NaN payload
    0xFFFFFFFFFFFFFFFF,  # negative NaN, all payload bits
    0x7FF8DEADBEEF0001,  # NaN with payload
    0x0000000000000001,  # smallest subnormal
    0x000FFFFFFFFFFFFF,  # largest subnormal
    0x8000000000000001,  # negative subnormal
    0x7FEFFFFFFFFFFFFF,  # max finite
    0x0010000000000000,  # min normal
    struct.unpack("<Q", struct.pack("<d", 2.0**53 + 2))[0],  # integer beyond 2^53
    struct.unpack("<Q", struct.pack("<d", -(2.0**63)))[0],
    struct.unpack("<Q", struct.pack("<d", 0.1))[0],
    struct.unpack("<Q", struct.pack("<d", 48.56800000000001))[0],  # one ulp off a decimal
]

INT64_EXTREMES = [-(2**63), 2**63 - 1, -(2**63) + 1, 2**63 - 2, 0, -1, 1]


def _bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


float_bits = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from(SPECIAL_FLOAT_BITS),
    st.integers(-(10**8), 10**8).map(lambda i: _bits(i / 100)),
    st.integers(-(10**6), 10**6).map(lambda i: _bits(float(i))),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(_bits),
)


@st.composite
def float_series(draw: st.DrawFn, max_size: int = 600) -> np.ndarray:
    """A float64 array (built from bit patterns, so NaN payloads survive) mixing every awkward kind of value."""
    kind = draw(st.sampled_from(["mixed", "decimal_walk", "constant_runs", "specials"]))
    if kind == "mixed":
        bits = draw(st.lists(float_bits, max_size=max_size))
    elif kind == "decimal_walk":
        n = draw(st.integers(0, max_size))
        seed = draw(st.integers(0, 2**32 - 1))
        dec = draw(st.integers(0, 6))
        rng = np.random.default_rng(seed)
        vals = np.round(np.cumsum(rng.normal(0, 1, n)) * 10, dec)
        holes = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.sampled_from(SPECIAL_FLOAT_BITS))))
        b = vals.view(np.uint64).copy()
        for i, v in holes:
            if i < n:
                b[i] = v
        return b.view(np.float64)
    elif kind == "constant_runs":
        runs = draw(st.lists(st.tuples(float_bits, st.integers(1, 300)), max_size=8))
        bits = [b for b, k in runs for _ in range(k)]
    else:
        bits = draw(st.lists(st.sampled_from(SPECIAL_FLOAT_BITS), max_size=max_size))
    return np.array(bits, dtype=np.uint64).view(np.float64)


@st.composite
def int_series(draw: st.DrawFn, max_size: int = 600) -> np.ndarray:
    """An int64 array: random, extreme, regular with jitter/gaps, duplicates, out of order."""
    kind = draw(st.sampled_from(["random", "extremes", "regular", "small"]))
    if kind == "random":
        vals = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=max_size))
    elif kind == "extremes":
        vals = draw(st.lists(st.sampled_from(INT64_EXTREMES), max_size=max_size))
    elif kind == "small":
        vals = draw(st.lists(st.integers(-1000, 1000), max_size=max_size))
    else:
        n = draw(st.integers(0, max_size))
        start = draw(st.integers(-(2**62), 2**62))
        step = draw(st.integers(0, 10**10))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        x = start + np.arange(n, dtype=np.int64) * step
        x = x + rng.integers(-3, 4, n) * draw(st.sampled_from([0, 1, 1000]))
        if n > 3 and draw(st.booleans()):
            x[rng.integers(0, n, 3)] += step * 5  # gaps / out of order
        if n > 3 and draw(st.booleans()):
            x[1] = x[0]  # duplicate
        return x.astype(np.int64)
    return np.array(vals, dtype=np.int64)
