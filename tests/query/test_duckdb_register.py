"""``tsdb_lake.duckdb.register``: tenant tables on a user's connection, and the UDFs that decode raw files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from datasketches import kll_doubles_sketch

import tsdb_lake.duckdb as tdb
import tsdb_lake.lake as lake_mod
from tsdb_lake import codecs

H = 3_600_000_000_000
S = 1_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H


def _write(lake: lake_mod.Lake) -> None:
    rng = np.random.default_rng(5)
    n = 2 * 120
    frames = []
    for host in ("a", "b"):
        user: list[float | None] = list(np.round(rng.random(n) * 100, 2))
        for i in range(1, n, 9):
            user[i] = None
        user[5] = float("nan")
        frames.append(
            pl.DataFrame(
                {
                    "time": T0 + np.arange(n, dtype=np.int64) * 30 * S + 17,  # sub-µs digits kept by the UDFs
                    "host": host,
                    "usage_user": pl.Series(user, dtype=pl.Float64),
                    "requests": rng.integers(-(2**62), 2**62, n),
                }
            )
        )
    with lake.writer(tenant="acme") as w:
        for f in frames:
            w.write("cpu", f)
        w.flush()
    with lake.writer(tenant="beta") as w:
        w.write("secrets", pl.DataFrame({"time": [T0], "v": [42.0]}))
        w.flush()


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("duck") / "lake"
    _write(lake_mod.connect(str(root)))
    return root


@pytest.fixture(scope="module")
def lake(lake_root: Path) -> lake_mod.Lake:
    return lake_mod.connect(str(lake_root))


def test_register_attaches_only_the_tenants_tables(lake: lake_mod.Lake) -> None:
    con = duckdb.connect()
    assert tdb.register(con, lake, tenant="acme") == ["cpu"]
    got = con.sql("SELECT * FROM cpu ORDER BY host, time").pl()
    got = got.with_columns(pl.col("time").dt.convert_time_zone("UTC"))  # results use the session's TimeZone
    want = lake.query("cpu", tenant="acme").with_columns(pl.col("time").dt.cast_time_unit("us"))
    assert got.equals(want)
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM secrets")
    assert tdb.register(con, lake, tenant="beta", prefix="beta_") == ["beta_secrets"]
    assert con.sql("SELECT v FROM beta_secrets").fetchall() == [(42.0,)]
    con.close()


def test_registered_tables_refresh_on_every_query(tmp_path: Path) -> None:
    lake = lake_mod.connect(str(tmp_path / "lake"))
    con = duckdb.connect()
    with lake.writer(tenant="t") as w:
        w.write("m", pl.DataFrame({"time": [T0], "v": [1.0]}))
        w.flush()
        tdb.register(con, lake, tenant="t")
        assert con.sql("SELECT count(*) FROM m").fetchall() == [(1,)]
        w.write("m", pl.DataFrame({"time": [T0 + S], "v": [2.0]}))
        w.flush()
        assert con.sql("SELECT sum(v) FROM m").fetchall() == [(3.0,)]
        w.write("n", pl.DataFrame({"time": [T0], "v": [5.0]}))
        w.flush()
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM n")
    tdb.register(con, lake, tenant="t")  # a new metric needs a new register()
    assert con.sql("SELECT v FROM n").fetchall() == [(5.0,)]
    con.close()


def _raw_glob(root: Path, tenant: str, metric: str) -> str:
    return str(root / "data" / f"tenant={tenant}" / f"metric={metric}" / "tier=raw" / "**" / "*.parquet")


def test_udfs_decode_raw_files_like_the_lake(lake: lake_mod.Lake, lake_root: Path) -> None:
    con = duckdb.connect()
    tdb.register_udfs(con)
    files = f"read_parquet('{_raw_glob(lake_root, 'acme', 'cpu')}', hive_partitioning=true)"
    got = con.sql(
        f"""SELECT host, unnest(tsdb_decode_times(_time)) AS time,
                   unnest(tsdb_decode_values_valid(usage_user, _valid__usage_user, _count)) AS usage_user,
                   unnest(tsdb_decode_ints(requests)) AS requests
            FROM {files} ORDER BY host, time"""
    ).pl()
    want = lake.query("cpu", tenant="acme").with_columns(pl.col("time").cast(pl.Int64))
    assert got.select("host", "time", "requests").equals(want.select("host", "time", "requests"))
    np.testing.assert_array_equal(
        got["usage_user"].to_numpy(), want["usage_user"].to_numpy()
    )  # NaN and nulls
    assert got["usage_user"].null_count() == want["usage_user"].null_count() > 0
    # tsdb_decode_values: only the non-null values of each chunk
    non_null = con.sql(
        f"SELECT host, unnest(tsdb_decode_values(usage_user)) AS v FROM {files} ORDER BY host"
    ).pl()
    for host in ("a", "b"):
        mine = non_null.filter(pl.col("host") == host)["v"].to_numpy()
        theirs = want.filter(pl.col("host") == host)["usage_user"].drop_nulls().to_numpy()
        np.testing.assert_array_equal(np.sort(mine), np.sort(theirs))
    con.close()


def test_udfs_against_plain_codec_round_trip() -> None:
    rng = np.random.default_rng(1)
    times = [np.sort(rng.integers(0, 10**15, k)).astype(np.int64) for k in (1, 100, 5000)]
    floats = [rng.normal(size=len(t)) for t in times]
    ints = [rng.integers(-(2**40), 2**40, len(t)) for t in times]
    table = pa.table(
        {
            "t": pa.array([codecs.encode_timestamps(t) for t in times] + [None], pa.binary()),
            "f": pa.array([codecs.encode_floats(f) for f in floats] + [None], pa.binary()),
            "i": pa.array([codecs.encode_ints(i) for i in ints] + [None], pa.binary()),
        }
    )
    con = duckdb.connect()
    tdb.register_udfs(con)
    con.register("blobs", table)
    rows = con.sql(
        "SELECT tsdb_decode_times(t), tsdb_decode_values(f), tsdb_decode_ints(i) FROM blobs"
    ).fetchall()
    for k in range(3):
        assert rows[k][0] == times[k].tolist()
        assert rows[k][1] == floats[k].tolist()
        assert rows[k][2] == ints[k].tolist()
    assert rows[3] == (None, None, None)
    con.close()


def test_udf_rejects_corrupt_blobs() -> None:
    con = duckdb.connect()
    tdb.register_udfs(con)
    good = codecs.encode_timestamps(np.arange(100, dtype=np.int64))
    con.register("bad", pa.table({"t": pa.array([good[: len(good) // 2], b"\xff\x01"], pa.binary())}))
    with pytest.raises(duckdb.Error, match="tsdb_decode_times"):
        con.sql("SELECT tsdb_decode_times(t) FROM bad").fetchall()
    with pytest.raises(duckdb.Error, match="tsdb_decode_values"):
        con.sql("SELECT tsdb_decode_values(t[2:]) FROM bad").fetchall()
    con.close()


def _sketch(values: np.ndarray) -> bytes:
    s = kll_doubles_sketch(200)
    for v in values:
        s.update(float(v))
    return bytes(s.serialize())


def test_kll_quantile_merges_rollup_sketches() -> None:
    rng = np.random.default_rng(3)
    groups = {"a": rng.normal(0, 1, 30_000), "b": rng.exponential(2.0, 9_000)}
    rows: list[dict[str, Any]] = []
    for g, values in groups.items():
        for part in np.array_split(values, 9):  # nine "1m buckets" per group, merged by the UDF
            rows.append({"g": g, "usage__sketch": _sketch(part)})
    rows.append({"g": "c", "usage__sketch": None})
    con = duckdb.connect()
    tdb.register_udfs(con)
    con.register(
        "rollup", pa.Table.from_pylist(rows, pa.schema([("g", pa.string()), ("usage__sketch", pa.binary())]))
    )
    out = dict(
        con.sql(
            "SELECT g, tsdb_kll_quantile(list(usage__sketch), 0.99) FROM rollup GROUP BY g ORDER BY g"
        ).fetchall()
    )
    assert out["c"] is None
    eps = kll_doubles_sketch.get_normalized_rank_error(200, False)
    for g, values in groups.items():
        rank = float(np.mean(values <= out[g]))
        assert abs(rank - 0.99) <= 2 * eps, (g, rank)
    median = con.sql(
        "SELECT tsdb_kll_quantile(list(usage__sketch), 0.5) FROM rollup WHERE g = 'a'"
    ).fetchall()
    assert abs(float(np.mean(groups["a"] <= median[0][0])) - 0.5) <= 2 * eps
    with pytest.raises(duckdb.Error, match="q must be within"):
        con.sql("SELECT tsdb_kll_quantile(list(usage__sketch), 1.5) FROM rollup").fetchall()
    with pytest.raises(duckdb.Error, match="kll_doubles_sketch"):
        con.sql("SELECT tsdb_kll_quantile([BLOB 'junk'], 0.5)").fetchall()
    con.close()


def test_register_on_both_backends(lake_target: Any) -> None:
    lake = lake_mod.connect(lake_target.uri, lake_target.storage_options)
    _write(lake)
    con = duckdb.connect()
    tdb.register(con, lake, tenant="acme", udfs=False)
    got = con.sql(
        "SELECT host, count(*) AS n, max(requests) AS r FROM cpu WHERE host = 'b' GROUP BY host"
    ).pl()
    want = lake.query("cpu", tenant="acme", where={"host": "b"})
    assert got["n"].to_list() == [want.height] and got["r"].to_list() == [want["requests"].max()]
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM secrets")
    con.close()


def test_register_udfs_include_rollup_quantile_over_exact_values() -> None:
    import numpy as np

    from tsdb_lake import codecs
    from tsdb_lake.duckdb import register_udfs

    con = duckdb.connect()
    register_udfs(con)
    blobs = [codecs.encode_floats(np.array([1.0, 2.0])), codecs.encode_floats(np.array([3.0, 4.0, 5.0]))]
    got = con.execute(
        "SELECT rollup_quantile([NULL, NULL]::BLOB[], ?::BLOB[], [NULL, NULL]::BLOB[], 0.5)", [blobs]
    ).fetchone()
    assert got is not None and got[0] == 3.0
    con.close()
