"""Rollup state vs raw aggregation: points → 1m → 1h (→ 1d) must answer what raw answers.

Oracle: ``query.aggregate.aggregate`` over the same points (the raw query path). count / min / max / first /
last / exact quantiles must match exactly, sums and means within 1e-9 relative; quantiles from KLL sketches
within the sketch's stated rank error.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tsdb_lake.codecs import decode_floats, decode_ints
from tsdb_lake.compaction.rollup import merge_rollup, points_to_rollup
from tsdb_lake.compaction.sketches import SKETCH_K, build_sketch, exact_limit_bytes, rank_error
from tsdb_lake.format.rollup import FieldInfo
from tsdb_lake.points import SERIES_ID
from tsdb_lake.query.aggregate import aggregate, parse_aggs
from tsdb_lake.query.tiers import aggregate_rollup

MIN = 60_000_000_000
HOUR = 60 * MIN
EXACT_AGGS = ["avg", "min", "max", "sum", "count", "first", "last", "p50", "p90", "p0", "p100"]
FIELDS = {"g": FieldInfo("float64"), "i": FieldInfo("int64"), "c": FieldInfo("float64", counter=True)}


def _frame(seed: int, n: int, nan_p: float, null_p: float, span: int, reset_p: float) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    series = rng.integers(1, 4, n).astype(np.uint64)
    times = rng.choice(span, size=n, replace=False).astype(np.int64) * 1_000_000  # ms resolution, unique
    g = np.round(rng.normal(50, 20, n), 3)
    g[rng.random(n) < nan_p] = np.nan
    steps = rng.integers(0, 10, n).astype(float)
    frame = pl.DataFrame(
        {SERIES_ID: series, "time": times, "g": g, "i": rng.integers(-1000, 1000, n), "step": steps}
    ).sort([SERIES_ID, "time"])
    # counters: a running sum of steps per series with occasional resets to a small value
    reset = rng.random(n) < reset_p
    sid = frame.get_column(SERIES_ID).to_numpy()
    step = frame.get_column("step").to_numpy()
    c = np.empty(n)
    acc = 0.0
    for j in range(n):
        if j == 0 or sid[j] != sid[j - 1]:
            acc = float(rng.integers(0, 100))
        elif reset[j]:
            acc = float(rng.integers(0, 3))
        else:
            acc += step[j]
        c[j] = acc
    c[rng.random(n) < nan_p / 2] = np.nan
    frame = frame.with_columns(pl.Series("c", c), pl.col(SERIES_ID).cast(pl.String).alias("host"))
    g_null = rng.random(n) < null_p
    i_null = rng.random(n) < null_p
    frame = frame.with_columns(
        pl.when(pl.Series(g_null)).then(None).otherwise(pl.col("g")).alias("g"),
        pl.when(pl.Series(i_null)).then(None).otherwise(pl.col("i")).alias("i"),
    )
    return frame.select([SERIES_ID, "time", "host", "g", "i", "c"])


def _compare(raw: pl.DataFrame, got: pl.DataFrame) -> None:
    assert raw.columns == got.columns
    assert raw.height == got.height
    # Exact quantiles are the same interpolation of the same values; polars' kernel may differ in the last
    # bit depending on nulls around them, so they are compared to 1e-12.
    inexact = [
        c for c in raw.columns if c.endswith(("_avg", "_sum", "_stddev", "_increase", "_rate")) or "_p" in c
    ]
    assert_frame_equal(raw.drop(inexact), got.drop(inexact), check_exact=True)
    for c in inexact:
        a = raw.get_column(c).cast(pl.Float64).to_numpy()
        b = got.get_column(c).cast(pl.Float64).to_numpy()
        tol = 1e-6 if c.endswith("_stddev") else 1e-12 if "_p" in c else 1e-9
        assert np.allclose(a, b, rtol=tol, atol=1e-9, equal_nan=True), (c, a, b)
        assert (np.isnan(a) == np.isnan(b)).all(), c


def _tiers(frame: pl.DataFrame, *, sketches: bool) -> dict[str, pl.DataFrame]:
    m1 = points_to_rollup(frame, ["host"], FIELDS, MIN, sketches=False)
    h1 = merge_rollup(m1, ["host"], FIELDS, HOUR, sketches=sketches)
    h3 = merge_rollup(h1, ["host"], FIELDS, 3 * HOUR, sketches=sketches)
    return {"1m": m1, "1h": h1, "3h": h3}


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 600),
    nan_p=st.sampled_from([0.0, 0.02, 0.3]),
    null_p=st.sampled_from([0.0, 0.1]),
    hours=st.integers(1, 7),
    reset_p=st.sampled_from([0.0, 0.02]),
    by=st.booleans(),
    fill=st.sampled_from(["none", "null"]),
)
def test_rollup_equals_raw(
    seed: int, n: int, nan_p: float, null_p: float, hours: int, reset_p: float, by: bool, fill: str
) -> None:
    span = hours * 3_600_000
    n = min(n, span)
    frame = _frame(seed, n, nan_p, null_p, span, reset_p)
    group = [] if by else ["host"]
    for tier, rows in _tiers(frame, sketches=False).items():
        for every in (HOUR, 3 * HOUR, 6 * HOUR):
            if every % {"1m": MIN, "1h": HOUR, "3h": 3 * HOUR}[tier]:
                continue
            kw = {"every": every, "group_labels": group, "per_series": not by, "start": 0, "end": 9 * HOUR}
            for fields, aggs in (
                (["g", "i"], [*EXACT_AGGS, "stddev"]),
                (["c"], ["increase", "rate", "first"]),
            ):
                specs = parse_aggs(aggs)
                raw = aggregate(frame, aggs=specs, fields=fields, fill=fill, **kw)
                got, approximate = aggregate_rollup(
                    rows, aggs=specs, fields={f: FIELDS[f] for f in fields}, fill=fill, **kw
                )
                assert not approximate
                if SERIES_ID in raw.columns:
                    raw, got = raw.drop(SERIES_ID), got.drop(SERIES_ID)
                _compare(raw, got)


def test_empty_buckets_and_all_null_field() -> None:
    frame = pl.DataFrame(
        {
            SERIES_ID: pl.Series([1, 1, 1], dtype=pl.UInt64),
            "time": [0, 5 * HOUR, 5 * HOUR + 1],
            "host": ["a", "a", "a"],
            "g": [None, float("nan"), float("nan")],
            "i": [1, None, 3],
            "c": [1.0, 2.0, 0.5],
        }
    )
    rows = _tiers(frame, sketches=True)["1h"]
    specs = parse_aggs([*EXACT_AGGS, "stddev"])
    kw = {"every": HOUR, "group_labels": ["host"], "per_series": True, "start": 0, "end": 6 * HOUR}
    for fill in ("none", "null", "previous", "linear"):
        raw = aggregate(frame, aggs=specs, fields=["g", "i"], fill=fill, **kw).drop(SERIES_ID)
        got, _ = aggregate_rollup(
            rows, aggs=specs, fields={"g": FIELDS["g"], "i": FIELDS["i"]}, fill=fill, **kw
        )
        _compare(raw, got.drop(SERIES_ID))
    inc, _ = aggregate_rollup(
        rows, aggs=parse_aggs(["increase"]), fields={"c": FIELDS["c"]}, **{**kw, "every": 6 * HOUR}
    )
    assert inc.get_column("c_increase").to_list() == [1.0 + 0.5]  # 1 -> 2 (+1), reset to 0.5 (+0.5)


def _hist(blob: bytes | None, wblob: bytes | None) -> list[tuple[float, int]]:
    assert blob is not None
    vals = decode_floats(blob)
    w = decode_ints(wblob) if wblob is not None else np.ones(len(vals), np.int64)
    return list(zip(vals.tolist(), w.tolist(), strict=True))


def test_histograms_exact_and_sketch_only_when_larger() -> None:
    """Low-cardinality buckets stay exact histograms whatever their size; incompressible ones past k sketch."""
    rng = np.random.default_rng(3)
    n = 4 * 3600  # one point a second for 4 hours: 3600 per hour bucket
    ints = rng.integers(0, 50, n).astype(float)
    ints[5] = np.nan
    noise = rng.normal(0, 1, n)
    frame = pl.DataFrame(
        {
            SERIES_ID: pl.Series([7] * n, dtype=pl.UInt64),
            "time": np.arange(n, dtype=np.int64) * 10**9,
            "host": ["a"] * n,
            "g": ints,
            "i": np.arange(n),
            "c": noise,
        }
    )
    fields = {"g": FieldInfo("float64"), "c": FieldInfo("float64")}
    m1 = points_to_rollup(frame, ["host"], fields, MIN, sketches=False)
    assert m1.get_column("g__sketch").is_null().all() and m1.get_column("c__sketch").is_null().all()
    h1 = merge_rollup(m1, ["host"], fields, HOUR, sketches=True)
    # integers 0..49: 50 distinct values with weights summing to the non-NaN count
    for i, (vb, wb) in enumerate(zip(h1["g__values"], h1["g__weights"], strict=True)):
        hist = _hist(vb, wb)
        expect = np.unique(ints[i * 3600 : (i + 1) * 3600], return_counts=True)
        keep = ~np.isnan(expect[0])
        assert hist == list(zip(expect[0][keep].tolist(), expect[1][keep].tolist(), strict=True))
    assert h1.get_column("g__sketch").is_null().all()
    assert (h1["g__values"].bin.size() < exact_limit_bytes()).all()
    # 3600 distinct normal values do not compress below 8k bytes: sketches, exact values dropped
    assert h1.get_column("c__sketch").is_not_null().all() and h1.get_column("c__values").is_null().all()
    unsketched = merge_rollup(m1, ["host"], fields, HOUR, sketches=False)
    assert unsketched.get_column("c__sketch").is_null().all()
    assert unsketched["c__weights"].is_null().all()  # every value distinct: no weights blob
    assert [len(decode_floats(b)) for b in unsketched["c__values"]] == [3600] * 4
    # a sketch among the inputs makes the merged bucket a sketch
    day = merge_rollup(h1, ["host"], fields, 24 * HOUR, sketches=False)
    assert day["c__sketch"].is_not_null().all() and day["g__sketch"].is_null().all()
    assert build_sketch(None, [day["c__sketch"][0]]).n == n


@pytest.mark.parametrize("dist", ["normal", "lognormal", "uniform"])
def test_sketch_quantiles_within_rank_error(dist: str) -> None:
    rng = np.random.default_rng(11)
    n = 40_000
    values = {
        "normal": rng.normal(0, 1, n),
        "lognormal": rng.lognormal(0, 2, n),
        "uniform": rng.uniform(0, 100, n),
    }[dist]
    frame = pl.DataFrame(
        {
            SERIES_ID: pl.Series(np.ones(n, np.uint64)),
            "time": np.sort(rng.choice(24 * 3_600_000, n, replace=False)).astype(np.int64) * 1_000_000,
            "host": ["a"] * n,
            "g": values,
            "i": np.zeros(n, np.int64),
            "c": np.zeros(n),
        }
    )
    tiers = _tiers(frame, sketches=True)
    day = merge_rollup(tiers["1h"], ["host"], FIELDS, 24 * HOUR, sketches=True)
    qs = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999]
    specs = parse_aggs([f"p{q * 100:g}" for q in qs])
    kw = {"every": 24 * HOUR, "group_labels": ["host"], "per_series": True, "start": 0, "end": 24 * HOUR}
    got, approximate = aggregate_rollup(day, aggs=specs, fields={"g": FIELDS["g"]}, **kw)
    assert approximate
    ordered = np.sort(values)
    eps = rank_error(SKETCH_K)
    for q, spec in zip(qs, specs, strict=True):
        est = got.get_column(f"g_{spec.name}")[0]
        lo = np.searchsorted(ordered, est, side="left") / n
        hi = np.searchsorted(ordered, est, side="right") / n
        assert lo - eps <= q <= hi + eps, (q, est, lo, hi, eps)


def test_sketch_nan_positions_follow_polars() -> None:
    values = np.concatenate([np.arange(1000.0), [np.nan] * 10])
    sk = build_sketch(values)
    assert sk.n == 1000
    from tsdb_lake.compaction.sketches import quantile_from_sketch

    assert math.isnan(quantile_from_sketch(sk, 1.0, len(values)))
    assert not math.isnan(quantile_from_sketch(sk, 0.5, len(values)))
