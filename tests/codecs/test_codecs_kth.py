"""``kth_smallest`` (the exact median helper of the encoders) against ``np.partition``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.codecs.intpack import kth_smallest

INT64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-3000, 3000), INT64), min_size=1, max_size=400), st.data())
def test_kth_smallest_matches_partition_and_keeps_input(xs: list[int], data: st.DataObject) -> None:
    x = np.array(xs, np.int64)
    before = x.copy()
    k = data.draw(st.integers(0, len(xs) - 1))
    assert kth_smallest(x, k) == np.partition(x, k)[k]
    assert np.array_equal(x, before)


def test_kth_smallest_narrow_and_wide_ranges() -> None:
    rng = np.random.default_rng(5)
    narrow = rng.integers(-500, 500, 359)  # counted
    wide = rng.integers(-(2**62), 2**62, 359)  # falls back to partition
    for x in (narrow, wide, np.array([2**63 - 1, -(2**63)], np.int64)):
        for k in (0, len(x) // 2, len(x) - 1):
            assert kth_smallest(x, k) == np.sort(x)[k]
