"""Tenant isolation and typed errors of ``lake.query`` / ``lake.sql``: a tenant never sees another's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import tsdb_lake.lake as lake_mod
from tsdb_lake.errors import InvalidNameError, InvalidQueryError, NotFoundError

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iso") / "lake"
    lake = lake_mod.connect(str(root))
    with lake.writer(tenant="acme") as w:
        w.write("cpu", pl.DataFrame({"time": [T0, T0 + 1], "host": ["a", "b"], "usage": [1.0, 2.0]}))
        w.flush()
    with lake.writer(tenant="beta") as w:
        w.write("cpu", pl.DataFrame({"time": [T0], "host": ["secret-host"], "usage": [99.0]}))
        w.write("secrets", pl.DataFrame({"time": [T0], "owner": ["beta"], "value": [42.0]}))
        w.flush()
    return root


@pytest.fixture(scope="module")
def lake(lake_dir: Path) -> lake_mod.Lake:
    return lake_mod.connect(str(lake_dir))


def test_each_tenant_sees_only_its_rows(lake: lake_mod.Lake) -> None:
    acme = lake.sql("SELECT DISTINCT host FROM cpu ORDER BY host", tenant="acme").pl()
    beta = lake.sql("SELECT DISTINCT host FROM cpu ORDER BY host", tenant="beta").pl()
    assert acme["host"].to_list() == ["a", "b"]
    assert beta["host"].to_list() == ["secret-host"]
    assert "secret-host" not in lake.query("cpu", tenant="acme")["host"].to_list()


def test_another_tenants_table_is_unknown(lake: lake_mod.Lake) -> None:
    with pytest.raises(InvalidQueryError, match="secrets") as info:
        lake.sql("SELECT * FROM secrets", tenant="acme")
    assert "'acme' has tables: ['cpu']" in str(info.value)
    with pytest.raises(NotFoundError, match="known metrics: \\['cpu'\\]"):
        lake.query("secrets", tenant="acme")
    with pytest.raises(InvalidQueryError):
        lake.sql("SELECT * FROM beta.cpu", tenant="acme")


def test_python_variables_never_become_tables(lake: lake_mod.Lake) -> None:
    secrets = pl.DataFrame({"value": [42.0]})  # a replacement scan would find this local
    assert secrets.height == 1
    with pytest.raises(InvalidQueryError):
        lake.sql("SELECT * FROM secrets", tenant="acme")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_parquet('{root}/data/tenant=beta/**/*.parquet', hive_partitioning=true)",
        "SELECT * FROM '{root}/data/tenant=beta/metric=secrets/tier=raw/*/*.parquet'",
        "SELECT * FROM glob('{root}/**')",
        "COPY (SELECT 1) TO '{root}/../leak.csv'",
        "ATTACH '{root}/../other.duckdb' AS other",
        "SET enable_external_access = true",
        "LOAD httpfs",
    ],
)
def test_files_and_settings_are_out_of_reach(lake: lake_mod.Lake, lake_dir: Path, statement: str) -> None:
    with pytest.raises(InvalidQueryError):
        rel = lake.sql(statement.format(root=lake_dir), tenant="acme")
        if rel is not None:
            rel.fetchall()
    assert not (lake_dir.parent / "leak.csv").exists()


@pytest.mark.parametrize(
    "statement,message",
    [
        ("SELEC * FROM cpu", "syntax error"),
        ("SELECT * FROM cpu WHERE", "syntax error"),
        ("SELECT nope FROM cpu", "nope"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("", "non-empty"),
    ],
)
def test_bad_sql_is_a_typed_error(lake: lake_mod.Lake, statement: str, message: str) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        lake.sql(statement, tenant="acme")


def test_bad_tenant_names_and_bad_queries(lake: lake_mod.Lake) -> None:
    with pytest.raises(InvalidNameError):
        lake.sql("SELECT 1", tenant="../beta")
    with pytest.raises(InvalidQueryError, match="start"):
        lake.query("cpu", T0 + 10, T0, tenant="acme")
    with pytest.raises(InvalidQueryError, match="unknown field"):
        lake.query("cpu", tenant="acme", fields=["nope"])
    with pytest.raises(InvalidQueryError, match="regex"):
        lake.query("cpu", tenant="acme", where='host=~"("')


def test_only_queries_run_and_nothing_persists_between_calls(lake: lake_mod.Lake) -> None:
    for statement in (
        "CREATE TABLE leak AS SELECT * FROM cpu",
        "CREATE TEMP VIEW v AS SELECT 1",
        "INSERT INTO cpu VALUES (1)",
        "SELECT 1; DROP TABLE cpu",
    ):
        with pytest.raises(InvalidQueryError, match="runs queries"):
            lake.sql(statement, tenant="acme")
    with pytest.raises(InvalidQueryError, match="leak"):
        lake.sql("SELECT * FROM leak", tenant="beta")
    assert lake.sql("SHOW TABLES", tenant="beta").pl()["name"].to_list() == ["cpu", "secrets"]
    assert lake.sql("SHOW TABLES", tenant="acme").pl()["name"].to_list() == ["cpu"]
    described = lake.sql("DESCRIBE cpu", tenant="acme").pl()
    assert dict(zip(described["column_name"], described["column_type"], strict=True)) == {
        "time": "TIMESTAMP WITH TIME ZONE",
        "host": "VARCHAR",
        "usage": "DOUBLE",
    }
    assert lake.sql("SELECT current_setting('TimeZone') AS tz", tenant="acme").pl()["tz"].to_list() == ["UTC"]


def test_unknown_tenant_has_no_tables(lake: lake_mod.Lake) -> None:
    with pytest.raises(InvalidQueryError, match="has tables: \\[\\]"):
        lake.sql("SELECT * FROM cpu", tenant="nobody")
    assert lake.sql("SELECT 42 AS x", tenant="nobody").pl()["x"].to_list() == [42]


def test_isolation_on_both_backends(lake_target: Any) -> None:
    lake = lake_mod.connect(lake_target.uri, lake_target.storage_options)
    with lake.writer(tenant="a") as w:
        w.write("m", pl.DataFrame({"time": [T0], "v": [1.0]}))
        w.flush()
    with lake.writer(tenant="b") as w:
        w.write("m", pl.DataFrame({"time": [T0, T0 + 1], "v": [2.0, 3.0]}))
        w.write("only_b", pl.DataFrame({"time": [T0], "v": [4.0]}))
        w.flush()
    assert lake.sql("SELECT sum(v) AS s FROM m", tenant="a").pl()["s"].to_list() == [1.0]
    assert lake.sql("SELECT sum(v) AS s FROM m", tenant="b").pl()["s"].to_list() == [5.0]
    assert lake.scan("m", tenant="a").collect()["v"].to_list() == [1.0]
    with pytest.raises(InvalidQueryError, match="only_b"):
        lake.sql("SELECT * FROM only_b", tenant="a")
