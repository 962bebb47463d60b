"""``lake.scan``: a polars LazyFrame whose filters and projection reach ``lake.query``'s pruning.

Results must equal ``lake.query``; the explain counters of each scan execution prove the pruning.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tsdb_lake.lake as lake_mod
from tsdb_lake.errors import InvalidNameError, NotFoundError
from tsdb_lake.query.polars_io import ScanRecord, extract_pushdown, scan_metric

H = 3_600_000_000_000
S = 1_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H
HOSTS = ["h0", "h1", "h2", "h3"]
HOURS = 6


def _cpu_frame(host: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = HOURS * 120
    times = T0 + np.arange(n, dtype=np.int64) * 30 * S
    user = rng.random(n)
    user_list: list[float | None] = list(user)
    for i in range(0, n, 37):
        user_list[i] = None
    return pl.DataFrame(
        {
            "time": times,
            "host": host,
            "region": "eu" if host in ("h0", "h1") else "us",
            "usage_user": pl.Series(user_list, dtype=pl.Float64),
            "usage_sys": rng.random(n) * 100,
            "requests": rng.integers(0, 1000, n),
        }
    )


def build_lake(uri: str, storage_options: dict[str, Any] | None = None) -> lake_mod.Lake:
    """Tenant ``acme``: cpu (4 hosts x 6 hours, one null every 37 points); tenant ``beta``: cpu and mem."""
    lake = lake_mod.connect(uri, storage_options)
    with lake.writer(tenant="acme") as w:
        for i, host in enumerate(HOSTS):
            w.write("cpu", _cpu_frame(host, i))
        w.flush()
    with lake.writer(tenant="beta") as w:
        w.write("cpu", _cpu_frame("secret-host", 99).head(50))
        w.write("mem", pl.DataFrame({"time": [T0], "host": ["secret-host"], "free": [1.0]}))
        w.flush()
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> lake_mod.Lake:
    return build_lake(str(tmp_path_factory.mktemp("scan") / "lake"))


def _recorded(
    lake: lake_mod.Lake, metric: str = "cpu", tenant: str = "acme"
) -> tuple[pl.LazyFrame, list[ScanRecord]]:
    records: list[ScanRecord] = []
    return scan_metric(lake, metric, tenant=tenant, on_explain=records.append), records


def _ts(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)


def test_full_scan_equals_query(lake: lake_mod.Lake) -> None:
    got = lake.scan("cpu", tenant="acme").collect()
    want = lake.query("cpu", tenant="acme")
    assert got.schema == want.schema
    assert got.equals(want)
    assert got.height == len(HOSTS) * HOURS * 120


def test_time_filter_reads_only_the_hour(lake: lake_mod.Lake) -> None:
    lf, records = _recorded(lake)
    start, end = T0 + 2 * H, T0 + 3 * H
    got = lf.filter((pl.col("time") >= _ts(start)) & (pl.col("time") < _ts(end))).collect()
    assert got.equals(lake.query("cpu", start, end, tenant="acme"))
    (rec,) = records
    assert (rec.start, rec.end) == (start, end)
    ex = rec.explain
    assert ex["files_read"] == 1 and ex["files_pruned_by_time"] == ex["files_total"] - 1
    assert ex["chunks_decoded"] == len(HOSTS)


def test_host_filter_decodes_only_that_series(lake: lake_mod.Lake) -> None:
    lf, records = _recorded(lake)
    got = lf.filter(pl.col("host") == "h1").collect()
    assert got.equals(lake.query("cpu", tenant="acme", where={"host": "h1"}))
    (rec,) = records
    assert rec.explain["chunks_decoded"] == HOURS
    assert rec.explain["chunks_pruned_by_labels"] == HOURS * (len(HOSTS) - 1)


def test_is_in_and_between_and_projection(lake: lake_mod.Lake) -> None:
    lf, records = _recorded(lake)
    start, end = T0 + H, T0 + 2 * H
    got = (
        lf.filter(
            pl.col("host").is_in(["h0", "h3"])
            & pl.col("time").is_between(_ts(start), _ts(end), closed="left")
        )
        .select("time", "host", "usage_sys")
        .collect()
    )
    want = lake.query("cpu", start, end, tenant="acme", where={"host": ["h0", "h3"]}, fields=["usage_sys"])
    assert got.equals(want.select("time", "host", "usage_sys"))
    (rec,) = records
    assert rec.fields == ["usage_sys"]  # only the selected field is decoded
    assert rec.explain["chunks_decoded"] == 2 and rec.explain["files_read"] == 1


def test_predicates_it_cannot_push_are_still_applied(lake: lake_mod.Lake) -> None:
    lf, records = _recorded(lake)
    pred = (pl.col("usage_sys") > 50) | (pl.col("host") == "h2")
    got = lf.filter(pred).collect()
    want = lake.query("cpu", tenant="acme").filter(pred)
    assert got.equals(want)
    assert records[0].start is None and records[0].matchers == []


def test_head_and_empty_ranges(lake: lake_mod.Lake) -> None:
    lf = lake.scan("cpu", tenant="acme")
    assert lf.head(5).collect().equals(lake.query("cpu", tenant="acme").head(5))
    empty = lf.filter((pl.col("time") >= _ts(T0 + 3 * H)) & (pl.col("time") < _ts(T0 + H))).collect()
    assert empty.height == 0 and empty.schema == lf.collect_schema()
    none = lf.filter(pl.col("host") == "nobody").collect()
    assert none.height == 0


def test_group_by_on_scan_equals_query_aggregate(lake: lake_mod.Lake) -> None:
    got = (
        lake.scan("cpu", tenant="acme")
        .filter(pl.col("region") == "eu")
        .group_by("host", pl.col("time").dt.truncate("1h"))
        .agg(pl.col("usage_sys").max().alias("usage_sys_max"))
        .sort("host", "time")
        .collect()
    )
    want = lake.query(
        "cpu", tenant="acme", where={"region": "eu"}, fields=["usage_sys"], every="1h", agg="max", by=["host"]
    ).sort("host", "time")
    assert got.equals(want.select("host", "time", "usage_sys_max"))


def test_tenant_isolation_in_scan(lake: lake_mod.Lake) -> None:
    with pytest.raises(NotFoundError, match="mem"):
        lake.scan("mem", tenant="acme")
    beta = lake.scan("cpu", tenant="beta").collect()
    assert beta["host"].unique().to_list() == ["secret-host"]
    acme = lake.scan("cpu", tenant="acme").collect()
    assert "secret-host" not in acme["host"].to_list()
    with pytest.raises(InvalidNameError):
        lake.scan("cpu", tenant="../beta")


def test_as_of_pins_a_catalog_version(tmp_path: Path) -> None:
    lake = lake_mod.connect(str(tmp_path / "lake"))
    with lake.writer(tenant="t") as w:
        w.write("m", pl.DataFrame({"time": [T0, T0 + S], "v": [1.0, 2.0]}))
        w.flush()
        version = lake.snapshot().version
        w.write("m", pl.DataFrame({"time": [T0 + 2 * S], "v": [3.0]}))
        w.flush()
    assert lake.scan("m", tenant="t", as_of=version).collect()["v"].to_list() == [1.0, 2.0]
    assert lake.scan("m", tenant="t").collect()["v"].to_list() == [1.0, 2.0, 3.0]


def test_scan_sees_unflushed_writes_and_new_data_on_each_collect(tmp_path: Path) -> None:
    lake = lake_mod.connect(str(tmp_path / "lake"))
    with lake.writer(tenant="t") as w:
        w.write("m", pl.DataFrame({"time": [T0], "v": [1.0]}))
        lf = lake.scan("m", tenant="t")
        assert lf.collect()["v"].to_list() == [1.0]
        w.write("m", pl.DataFrame({"time": [T0 + S], "v": [2.0]}))
        assert lf.collect()["v"].to_list() == [1.0, 2.0]


def test_scan_on_both_backends(lake_target: Any) -> None:
    lake = build_lake(lake_target.uri, lake_target.storage_options)
    lf, records = _recorded(lake)
    got = (
        lf.filter((pl.col("host") == "h2") & (pl.col("time") < _ts(T0 + H)))
        .select("time", "requests")
        .collect()
    )
    want = lake.query("cpu", None, T0 + H, tenant="acme", where={"host": "h2"}, fields=["requests"])
    assert got.equals(want.select("time", "requests"))
    assert got.schema["requests"] == pl.Int64
    assert records[0].explain["files_read"] == 1 and records[0].explain["chunks_decoded"] == 1


# ------------------------------------------------------------------------------ extraction is conservative
_BASE = 1_700_000_000_000_000_000
_OFFSETS = st.integers(min_value=-5_000, max_value=5_000)


def _term(draw: Any, base: int) -> pl.Expr:
    kind = draw(st.sampled_from(["time", "time_cast", "eq", "ne", "isin", "duck_isin", "field", "or"]))
    col_t = pl.col("time")
    if kind in ("time", "time_cast"):
        unit = draw(st.sampled_from(["ns", "us", "ms"]))
        value = base + draw(_OFFSETS) * draw(st.sampled_from([1, 997, 1000, 1_000_000]))
        lit = pl.lit(value).cast(pl.Datetime("ns", "UTC")).dt.cast_time_unit(unit)  # type: ignore[arg-type]
        lhs = col_t.dt.cast_time_unit("us") if kind == "time_cast" else col_t
        op = draw(st.sampled_from([">=", ">", "<", "<=", "=="]))
        ops = {">=": lhs >= lit, ">": lhs > lit, "<": lhs < lit, "<=": lhs <= lit, "==": lhs == lit}
        return ops[op]
    host = pl.col("host")
    values = st.sampled_from(["a", "b", "c", ""])
    if kind == "eq":
        v = draw(values)
        return host == v if draw(st.booleans()) else pl.lit(v) == host
    if kind == "ne":
        return host != draw(values)
    if kind == "isin":
        return host.is_in(pl.Series(draw(st.lists(values, max_size=3)), dtype=pl.String).implode())
    if kind == "duck_isin":
        vals = pl.Series(draw(st.lists(values, min_size=1, max_size=3)), dtype=pl.String)
        return pl.when(host.is_null()).then(pl.lit(None, pl.Boolean)).otherwise(host.is_in(vals.implode()))
    if kind == "field":
        return pl.col("v") > draw(st.floats(0, 1))
    return (host == draw(values)) | (col_t >= pl.lit(base).cast(pl.Datetime("ns", "UTC")))


@st.composite
def _predicates(draw: Any) -> tuple[pl.Expr, str, int]:
    time_unit = draw(st.sampled_from(["ns", "us"]))
    base = draw(st.sampled_from([_BASE, -3_000_123]))  # after and before 1970 (truncation differs)
    terms = [_term(draw, base) for _ in range(draw(st.integers(1, 4)))]
    if len(terms) > 1 and draw(st.booleans()):
        return pl.all_horizontal(terms), time_unit, base
    pred = terms[0]
    for t in terms[1:]:
        pred = pred & t
    return pred, time_unit, base


@settings(max_examples=200, deadline=None)
@given(_predicates(), st.integers(0, 2**32 - 1))
def test_extracted_bounds_contain_every_kept_row(case: tuple[pl.Expr, str, int], seed: int) -> None:
    pred, time_unit, base = case
    rng = np.random.default_rng(seed)
    n = 400
    t_ns = base + rng.integers(-6_000_000, 6_000_000, n)
    hosts = rng.choice(np.array(["a", "b", "c", "", "x"], dtype=object), n).tolist()
    hosts = [None if i % 7 == 0 else h for i, h in enumerate(hosts)]
    frame = pl.DataFrame(
        {
            "time": pl.Series(t_ns).cast(pl.Datetime("ns", "UTC")),
            "host": hosts,
            "v": rng.random(n),
            "t_ns": t_ns,
        }
    ).with_columns(pl.col("time").dt.cast_time_unit(time_unit))  # type: ignore[arg-type]
    kept = frame.filter(pred)
    pushed = extract_pushdown(pred, ["host"], time_unit)  # type: ignore[arg-type]
    for row in kept.iter_rows(named=True):
        if pushed.start is not None:
            assert row["t_ns"] >= pushed.start
        if pushed.end is not None:
            assert row["t_ns"] < pushed.end
        for m in pushed.matchers:
            assert m.matches(row["host"]), (m, row)


def test_extraction_finds_the_simple_forms() -> None:
    t = pl.lit(T0).cast(pl.Datetime("ns", "UTC"))
    pred = (pl.col("time") >= t) & (pl.col("time") < t + pl.duration(hours=1)) & (pl.col("host") == "a")
    pushed = extract_pushdown(pred, ["host"])
    assert pushed.start == T0 and pushed.matchers and pushed.matchers[0].value == "a"
    pushed = extract_pushdown(pl.col("host").is_in(["a", "b"]) & (pl.col("time") > t), ["host"])
    assert pushed.start == T0 + 1 and pushed.matchers[0].op == "=~"
    assert extract_pushdown((pl.col("host") == "a") | (pl.col("time") > t), ["host"]).matchers == []
