"""``lake.sql``: results equal ``lake.query``; WHERE time ranges and label equality reach the pruning."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import tsdb_lake.lake as lake_mod

H = 3_600_000_000_000
S = 1_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H
HOSTS = ["h0", "h1", "h2", "h3"]
HOURS = 6


def _ts_sql(ns: int) -> str:
    text = np.datetime64(ns, "ns").astype("datetime64[us]").astype(str)
    return f"TIMESTAMPTZ '{text}+00'"


def _cpu_frame(host: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = HOURS * 120
    user: list[float | None] = list(rng.random(n))
    for i in range(3, n, 41):
        user[i] = None
    return pl.DataFrame(
        {
            "time": T0 + np.arange(n, dtype=np.int64) * 30 * S,
            "host": host,
            "region": "eu" if host in ("h0", "h1") else "us",
            "usage_user": pl.Series(user, dtype=pl.Float64),
            "usage_sys": rng.random(n) * 100,
            "requests": rng.integers(0, 1000, n),
        }
    )


def build_lake(uri: str, storage_options: dict[str, Any] | None = None) -> lake_mod.Lake:
    """Tenant ``acme``: cpu, 4 hosts x 6 hours at 30 s, in two flushes (h0, h1 then h2, h3: 2 files an hour)."""
    lake = lake_mod.connect(uri, storage_options)
    with lake.writer(tenant="acme") as w:
        for i, host in enumerate(HOSTS):
            w.write("cpu", _cpu_frame(host, i))
            if i % 2:
                w.flush()
    with lake.writer(tenant="beta") as w:
        w.write("mem", pl.DataFrame({"time": [T0], "host": ["secret-host"], "free": [1.0]}))
        w.flush()
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> lake_mod.Lake:
    return build_lake(str(tmp_path_factory.mktemp("sql") / "lake"))


def _us(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("time").dt.cast_time_unit("us"))


def test_select_star_equals_query(lake: lake_mod.Lake) -> None:
    got = lake.sql("SELECT * FROM cpu", tenant="acme").pl()
    want = _us(lake.query("cpu", tenant="acme"))
    assert got.schema == want.schema
    assert got.sort("host", "time").equals(want.sort("host", "time"))
    assert got.height == len(HOSTS) * HOURS * 120


def test_aggregates_grouped_by_labels(lake: lake_mod.Lake) -> None:
    got = lake.sql(
        """SELECT host, region, count(*) AS n, count(usage_user) AS n_user, sum(requests) AS req,
                  min(usage_sys) AS lo, max(usage_sys) AS hi, avg(usage_sys) AS mean
           FROM cpu GROUP BY host, region ORDER BY host""",
        tenant="acme",
    ).pl()
    raw = lake.query("cpu", tenant="acme")
    want = (
        raw.group_by("host", "region")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("usage_user").count().cast(pl.Int64).alias("n_user"),
            pl.col("requests").sum().cast(pl.Int128).alias("req"),
            pl.col("usage_sys").min().alias("lo"),
            pl.col("usage_sys").max().alias("hi"),
            pl.col("usage_sys").mean().alias("mean"),
        )
        .sort("host")
    )
    assert got.select("host", "region", "n", "n_user", "lo", "hi").equals(
        want.select("host", "region", "n", "n_user", "lo", "hi")
    )
    assert got["req"].cast(pl.Int64).to_list() == want["req"].cast(pl.Int64).to_list()
    np.testing.assert_allclose(got["mean"].to_numpy(), want["mean"].to_numpy(), rtol=1e-9)


def test_time_bucket_equals_query_every(lake: lake_mod.Lake) -> None:
    start, end = T0 + H, T0 + 3 * H
    got = lake.sql(
        f"""SELECT host, time_bucket(INTERVAL '5 minutes', time) AS time,
                   avg(usage_sys) AS usage_sys_avg, max(usage_sys) AS usage_sys_max, count(usage_sys) AS usage_sys_count
            FROM cpu WHERE time >= {_ts_sql(start)} AND time < {_ts_sql(end)}
            GROUP BY ALL ORDER BY host, time""",
        tenant="acme",
    ).pl()
    want = _us(
        lake.query(
            "cpu",
            start,
            end,
            tenant="acme",
            fields=["usage_sys"],
            every="5m",
            agg=["avg", "max", "count"],
            by=["host"],
        ).sort("host", "time")
    )
    assert got.select("host", "time", "usage_sys_max", "usage_sys_count").equals(
        want.select("host", "time", "usage_sys_max", "usage_sys_count")
    )
    np.testing.assert_allclose(got["usage_sys_avg"].to_numpy(), want["usage_sys_avg"].to_numpy(), rtol=1e-9)


def test_time_range_is_pushed_into_file_pruning(lake: lake_mod.Lake) -> None:
    _, full = lake.sql("SELECT count(*) FROM cpu", tenant="acme", explain=True)
    rel, ex = lake.sql(
        f"SELECT count(*) AS n FROM cpu WHERE time >= {_ts_sql(T0 + 2 * H)} AND time < {_ts_sql(T0 + 3 * H)}",
        tenant="acme",
        explain=True,
    )
    assert rel.pl()["n"].to_list() == [len(HOSTS) * 120]
    assert full["files_read"] == full["files_total"] > 1
    assert ex["files_read"] == 2 and ex["files_pruned_by_time"] == ex["files_total"] - 2
    (scan,) = ex["scans"]
    assert (
        T0 + 2 * H - 10_000 <= scan["start"] <= T0 + 2 * H
        and T0 + 3 * H <= scan["end"] <= T0 + 3 * H + 10_000
    )


def test_label_equality_and_in_are_pushed_into_chunk_pruning(lake: lake_mod.Lake) -> None:
    _, full = lake.sql("SELECT avg(usage_user) FROM cpu", tenant="acme", explain=True)
    rel, ex = lake.sql("SELECT avg(usage_user) AS a FROM cpu WHERE host = 'h2'", tenant="acme", explain=True)
    want = lake.query("cpu", tenant="acme", where={"host": "h2"})["usage_user"].mean()
    assert rel.pl()["a"][0] == pytest.approx(want, rel=1e-12)
    assert ex["chunks_decoded"] * len(HOSTS) <= full["chunks_decoded"]
    assert ex["scans"][0]["where"] == ['host="h2"']
    assert ex["scans"][0]["fields"] == ["usage_user"]  # projection: one field decoded
    _, ex_in = lake.sql("SELECT count(*) FROM cpu WHERE host IN ('h0', 'h3')", tenant="acme", explain=True)
    assert 0 < ex_in["chunks_decoded"] < full["chunks_decoded"]
    assert ex_in["chunks_pruned_by_labels"] > 0
    _, ex_file = lake.sql("SELECT count(*) FROM cpu WHERE region = 'us'", tenant="acme", explain=True)
    assert ex_file["files_pruned_by_labels"] == ex_file["files_total"] // 2  # h0/h1 files hold no 'us'


def test_unpushable_predicates_stay_correct(lake: lake_mod.Lake) -> None:
    got = lake.sql(
        "SELECT host, count(*) AS n FROM cpu WHERE usage_sys > 50 OR host = 'h1' GROUP BY host ORDER BY host",
        tenant="acme",
    ).pl()
    want = (
        lake.query("cpu", tenant="acme")
        .filter((pl.col("usage_sys") > 50) | (pl.col("host") == "h1"))
        .group_by("host")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .sort("host")
    )
    assert got.equals(want)


def test_joins_subqueries_and_result_formats(lake: lake_mod.Lake) -> None:
    rel = lake.sql(
        """WITH last AS (SELECT host, max(time) AS t FROM cpu GROUP BY host)
           SELECT c.host, c.usage_sys FROM cpu c JOIN last l ON c.host = l.host AND c.time = l.t ORDER BY c.host""",
        tenant="acme",
    )
    lastpoint = lake.query("cpu", tenant="acme").sort("time").group_by("host").last().sort("host")
    assert rel.pl()["usage_sys"].to_list() == lastpoint["usage_sys"].to_list()
    assert rel.df()["host"].tolist() == HOSTS
    assert rel.to_arrow_table().num_rows == len(HOSTS)


def test_now_relative_query(tmp_path: Path) -> None:
    lake = lake_mod.connect(str(tmp_path / "lake"))
    now = time.time_ns()
    minute = 60 * S
    offsets = [m for m in range(1, 180) if not 55 <= m <= 65]  # keep clear of the 1-hour boundary
    times = np.array([now - m * minute for m in offsets], dtype=np.int64)[::-1]
    with lake.writer(tenant="t") as w:
        w.write(
            "cpu", pl.DataFrame({"time": times, "host": "a", "v": np.arange(len(times), dtype=np.float64)})
        )
        w.flush()
    rel, ex = lake.sql(
        "SELECT count(*) AS n FROM cpu WHERE time >= now() - INTERVAL 1 HOUR", tenant="t", explain=True
    )
    assert rel.pl()["n"][0] == sum(1 for m in offsets if m < 60) == 54
    assert ex["files_pruned_by_time"] >= 1  # the hours older than now() - 1h are never opened
    assert ex["scans"][0]["start"] is not None


def test_sql_on_both_backends(lake_target: Any) -> None:
    lake = build_lake(lake_target.uri, lake_target.storage_options)
    rel, ex = lake.sql(
        f"SELECT host, max(usage_sys) AS m FROM cpu WHERE host = 'h0' AND time < {_ts_sql(T0 + H)} GROUP BY host",
        tenant="acme",
        explain=True,
    )
    want = lake.query("cpu", None, T0 + H, tenant="acme", where={"host": "h0"})["usage_sys"].max()
    assert rel.pl()["m"].to_list() == [want]
    assert ex["files_read"] == 1  # one hour, and of its two files only the one holding h0
    assert ex["files_pruned_by_time"] == ex["files_total"] - 2 and ex["files_pruned_by_labels"] == 1


def test_concurrent_sql_calls(lake: lake_mod.Lake) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(host: str) -> list[Any]:
        return (
            lake.sql(f"SELECT count(*) AS n FROM cpu WHERE host = '{host}'", tenant="acme")
            .pl()["n"]
            .to_list()
        )

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, HOSTS * 3))
    assert results == [[HOURS * 120]] * (len(HOSTS) * 3)
