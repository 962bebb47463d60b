"""Size functions of the encoders agree with what the writers actually write (the adaptive choice relies on it)."""

from __future__ import annotations

import numpy as np
from codec_strategies import float_series, int_series
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from tsdb_lake.codecs import kernels as K
from tsdb_lake.codecs.alpans import alp_ans_plan, alp_ans_plan_bits, alp_ans_write
from tsdb_lake.codecs.bits import bitlen, new_words
from tsdb_lake.codecs.floatcodecs import alp_ints
from tsdb_lake.codecs.intpack import BLOCK, _block_choice, ints_plan, ints_write, pfor_stream_cost, pfor_write


@njit
def _ans_bound_and_write(d: np.ndarray, corr: np.ndarray, e: int, f: int) -> tuple[int, int, np.ndarray]:
    plan = alp_ans_plan(d, corr)
    bound = alp_ans_plan_bits(d.shape[0], plan)
    words = new_words(bound)
    return bound, alp_ans_write(words, 0, d, corr, e, f, plan), words


def _brute_block(u: np.ndarray) -> tuple[int, int]:
    """``(cost, w)`` of one PFOR block by trying every width (ties to the larger width), per CODECS.md §4."""
    if not u.any():
        return 1, -1
    lens = np.array([bitlen(np.uint64(x)) for x in u])
    maxlen = int(lens.max())
    best, bw = 16 + len(u) * maxlen, maxlen
    for w in range(maxlen - 1, -1, -1):
        above = int((lens > w).sum())
        cost = 22 + len(u) * w + above * (7 + maxlen - w)
        if cost < best:
            best, bw = cost, w
    return best, bw


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=BLOCK),
    st.integers(0, 64),
)
def test_block_choice_is_the_cheapest_width(vals: list[int], shift: int) -> None:
    u = np.array(vals, dtype=np.uint64) >> np.uint64(shift)
    cost, w, _ = _block_choice(u, 0, u.shape[0])
    assert (cost, w) == _brute_block(u)


@settings(max_examples=200, deadline=None)
@given(int_series())
def test_pfor_and_int_stream_costs_match_written_bits(x: np.ndarray) -> None:
    xu = x.view(np.uint64)
    if xu.shape[0] == 0:
        return
    u = xu - xu.min()
    words = new_words(64 * u.shape[0] + 64 * 22)
    assert pfor_write(words, 0, u) == pfor_stream_cost(u)
    mode, cost, ub, param = ints_plan(xu, True)
    words = new_words(K.ints_max_bits(xu.shape[0]))
    assert ints_write(words, 0, xu, mode, ub, np.uint64(param)) == cost


@settings(max_examples=200, deadline=None)
@given(float_series())
def test_alp_plan_and_ans_bound_match_written_bits(v: np.ndarray) -> None:
    if v.shape[0] == 0:
        return
    body, e, f, d, corr, mode, u, param = K._alp_plan(v)
    words, pos = K._alp_write(e, f, d, corr, mode, u, np.uint64(param))
    assert pos == body + 8 + 8 * ((v.shape[0].bit_length() + 6) // 7 or 1)
    d2, corr2, _ = alp_ints(v, e, f)
    assert np.array_equal(d, d2) and np.array_equal(corr, corr2)
    bound, written, words = _ans_bound_and_write(d, corr, e, f)
    assert 0 < written <= bound
    assert not words[(written + 63) // 64 :].any()  # nothing beyond the written bits
