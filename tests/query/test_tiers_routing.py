"""Tier routing: which tier answers which range, explicit resolutions, retention and unflushed writes."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tsdb_lake.lake as lake_mod
from tsdb_lake.catalog import SetRetention
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.query.tiers import Part, plan_parts

MIN = 60_000_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000_000_000 // DAY * DAY
NOW = T0 + 40 * DAY


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A lake with 3 days of points, rolled up to the end of day 2 (1d covers days 0-1)."""
    rng = np.random.default_rng(9)
    lake = lake_mod.connect(tmp_path_factory.mktemp("tiers") / "lake")
    n = 3000
    times = np.sort(rng.choice(3 * 86_400, n, replace=False)).astype(np.int64) * 1_000_000_000 + T0
    frame = pl.DataFrame({"time": times, "host": rng.choice(["a", "b"], n), "v": rng.normal(0, 1, n)})
    with lake.writer(tenant="t") as w:
        w.write("cpu", frame)
    lake.rollup(now_ns=T0 + 2 * DAY + 5 * HOUR + 10 * MIN)
    return lake


def test_auto_stitches_coarse_to_raw(rolled: Any) -> None:
    snap = rolled.snapshot()
    assert snap.watermark("t", "cpu", "1m") == T0 + 2 * DAY + 5 * HOUR
    assert snap.watermark("t", "cpu", "1d") == T0 + 2 * DAY
    parts = plan_parts(snap, "t", "cpu", T0, T0 + 3 * DAY, DAY, "auto", now=NOW)
    assert parts == [
        Part("1d", T0, T0 + 2 * DAY),
        Part("1h", T0 + 2 * DAY, T0 + 2 * DAY + 5 * HOUR),
        Part("raw", T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY),
    ]
    parts = plan_parts(snap, "t", "cpu", T0, T0 + 3 * DAY, HOUR, None, now=NOW)
    assert parts == [
        Part("1h", T0, T0 + 2 * DAY + 5 * HOUR),
        Part("raw", T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY),
    ]
    # 1h does not divide 90 minutes: 1m answers.
    parts = plan_parts(snap, "t", "cpu", T0, T0 + DAY, 90 * MIN, "auto", now=NOW)
    assert parts == [Part("1m", T0, T0 + DAY)]
    # 7 seconds: nothing divides it, raw answers.
    assert plan_parts(snap, "t", "cpu", T0, T0 + DAY, 7_000_000_000, "auto", now=NOW) == [
        Part("raw", T0, T0 + DAY)
    ]
    got, explain = rolled.query(
        "cpu", T0, T0 + 3 * DAY, tenant="t", every="1h", agg=["avg", "max", "count"], explain=True
    )
    want = rolled.query(
        "cpu", T0, T0 + 3 * DAY, tenant="t", every="1h", agg=["avg", "max", "count"], resolution="raw"
    )
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9)
    assert [p["tier"] for p in explain["tiers"]] == ["1h", "raw"]


def test_explicit_resolution(rolled: Any) -> None:
    q = {"tenant": "t", "agg": ["avg"]}
    _, explain = rolled.query("cpu", T0, T0 + 2 * DAY, every="1d", resolution="1h", explain=True, **q)
    assert explain["tiers"] == [{"tier": "1h", "start": T0, "end": T0 + 2 * DAY}]
    _, explain = rolled.query("cpu", T0, T0 + 2 * DAY, every="1d", resolution="raw", explain=True, **q)
    assert [p["tier"] for p in explain["tiers"]] == ["raw"]
    with pytest.raises(InvalidQueryError, match="must divide every"):
        rolled.query("cpu", T0, T0 + DAY, every="30m", resolution="1h", **q)
    with pytest.raises(InvalidQueryError, match="cannot answer"):
        rolled.query("cpu", T0, T0 + 3 * DAY, every="1d", resolution="1d", **q)  # day 3 not built
    with pytest.raises(InvalidQueryError, match="cannot answer"):
        rolled.query("cpu", T0 + MIN, T0 + DAY, every="1h", resolution="1h", **q)  # not aligned
    with pytest.raises(InvalidQueryError, match="not a rollup tier"):
        rolled.query("cpu", T0, T0 + DAY, every="1h", resolution="5m", **q)
    with pytest.raises(InvalidQueryError, match="needs every"):
        rolled.query("cpu", T0, T0 + DAY, tenant="t", resolution="1h")


def test_retention_and_dirty_ranges_shape_the_plan(rolled: Any) -> None:
    snap = rolled.snapshot()
    # Pretend the 1m tier keeps 30 days: at NOW + 10 days its days 0-2 are gone, 1h answers them.
    state = rolled.catalog.commit([SetRetention("t", "cpu", "1h", 365 * DAY)], operation="retention_rule")
    snap = state
    later = T0 + 31 * DAY
    parts = plan_parts(snap, "t", "cpu", T0, T0 + DAY, 30 * MIN, "auto", now=later)
    assert parts == [Part("1m", T0, T0 + DAY)]
    state = rolled.catalog.commit([SetRetention("t", "cpu", "1m", 30 * DAY)], operation="retention_rule")
    parts = plan_parts(state, "t", "cpu", T0, T0 + DAY, HOUR, "auto", now=later + 2 * DAY)
    assert parts == [Part("1h", T0, T0 + DAY)]
    parts = plan_parts(state, "t", "cpu", T0, T0 + DAY, 30 * MIN, "auto", now=later + 2 * DAY)
    assert parts == [Part("raw", T0, T0 + DAY)]  # 1m expired, 1h cannot make 30-minute buckets


def test_unflushed_late_writes_force_raw(tmp_path: Any) -> None:
    lake = lake_mod.connect(tmp_path / "lake")
    with lake.writer(tenant="t") as w:
        w.write("cpu", pl.DataFrame({"time": [T0 + i * MIN for i in range(120)], "v": np.arange(120.0)}))
    lake.rollup(now_ns=NOW)
    with lake.writer(tenant="t", flush_interval_s=3600) as w:
        w.write("cpu", pl.DataFrame({"time": [T0 + 30 * MIN + 1], "v": [1000.0]}))
        got, explain = lake.query(
            "cpu", T0, T0 + 2 * HOUR, tenant="t", every="1h", agg=["max", "count"], explain=True
        )
        assert got.get_column("v_max").to_list() == [1000.0, 119.0]
        assert got.get_column("v_count").to_list() == [61, 60]
        assert explain["tiers"][-1] == {"tier": "raw", "start": T0 + 30 * MIN, "end": T0 + 2 * HOUR}
