"""``seal_points``' fast series ordering equals the general (series, time) sort, ties in arrival order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.memtable.memtable import _series_order
from tsdb_lake.points import sort_order


@st.composite
def _points(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = draw(st.integers(1, 40))
    n = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2**64 - 1, g, dtype=np.uint64)
    if g > 1 and draw(st.booleans()):
        ids[1] = ids[0]  # two label rows that map to one series id
    groups = rng.integers(0, g, n)
    shape = draw(st.sampled_from(["sorted", "interleaved", "random"]))
    if shape == "sorted":
        times = np.sort(rng.integers(0, 50, n))  # duplicates included
    elif shape == "interleaved":
        times = np.arange(n, dtype=np.int64) // g
    else:
        times = rng.integers(0, 50, n)
    if draw(st.booleans()):
        groups = np.sort(groups)
    return groups, ids, times


@settings(max_examples=300, deadline=None)
@given(_points())
def test_series_order_is_the_general_sort(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    groups, ids, times = case
    expected = sort_order(ids[groups], times)
    got = _series_order(groups, ids, times)
    identity = np.arange(len(groups))
    assert np.array_equal(identity if expected is None else expected, identity if got is None else got)
