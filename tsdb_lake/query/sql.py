"""``lake.sql``: DuckDB SQL over one tenant's metrics, each a table, with WHERE pushed into the lake's pruning.

Every call opens a fresh DuckDB connection (a cursor of one shared, locked, in-memory database) that holds
exactly the tenant's metrics (as of the latest catalog version) as connection-local tables — polars LazyFrames from :func:`tsdb_lake.query.polars_io.scan_metric`. DuckDB
pushes a table's filters (comparisons of a column with a constant, ``IN``, ``BETWEEN``, AND; ``now()`` and
``now() - INTERVAL ...`` are folded to constants first) and its projection into the LazyFrame, whose IO plugin
hands time bounds and label equality / ``IN`` to ``lake.query``'s catalog and chunk pruning.

Isolation: only query statements run (SELECT / WITH / EXPLAIN / DESCRIBE / SUMMARIZE — nothing can be
created that another call would see); external access is disabled (no ``read_parquet`` / ``COPY`` /
``ATTACH`` / extension loading), Python replacement scans are off (a table name never resolves to a Python
variable), and the configuration is locked. Table types: ``time`` TIMESTAMPTZ (µs, UTC; session TimeZone is UTC), labels VARCHAR,
fields DOUBLE / BIGINT. The result is a DuckDB relation (``.pl()``, ``.df()``, ``.arrow()``,
``.to_arrow_table()``); it reads the lake when it is executed and again each time it is re-executed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb

from tsdb_lake.duckdb import register_tables, register_udfs
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.model import validate_name
from tsdb_lake.query.polars_io import ScanRecord

if TYPE_CHECKING:
    from tsdb_lake.lake import Lake

__all__ = ["SUMMED_COUNTERS", "merge_explain", "open_connection", "run_sql"]

_CONFIG = {
    "enable_external_access": False,
    "python_enable_replacements": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
}
SUMMED_COUNTERS = (
    "files_total",
    "files_pruned_by_time",
    "files_pruned_by_labels",
    "files_pruned",
    "files_read",
    "chunks_read",
    "chunks_pruned_by_labels",
    "chunks_pruned_by_values",
    "chunks_answered_by_stats",
    "chunks_decoded",
    "points_decoded",
    "bytes_read",
    "memtable_batches",
)


_ALLOWED_STATEMENTS = ("SELECT", "EXPLAIN")
_DB_LOCK = threading.Lock()
_DB: list[duckdb.DuckDBPyConnection] = []


def _shared_database() -> duckdb.DuckDBPyConnection:
    """The process-wide locked-down in-memory database; each ``lake.sql`` call works on its own cursor.

    A DuckDB database costs ~50 ms to open and a cursor microseconds. Tables are registered on the cursor
    (connection-local, invisible to every other cursor); the UDFs, the UTC time zone and the locked
    configuration are database-wide. Nothing else can be created in it: ``lake.sql`` runs only queries.
    """
    with _DB_LOCK:
        if not _DB:
            db = duckdb.connect(":memory:", config=dict(_CONFIG))
            db.execute("SET GLOBAL TimeZone = 'UTC'")
            register_udfs(db)
            db.execute("SET lock_configuration = true")
            _DB.append(db)
        return _DB[0]


def open_connection(
    lake: Lake, tenant: str, *, on_explain: Callable[[ScanRecord], None] | None = None
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A connection (cursor of the shared locked database) holding exactly ``tenant``'s tables, and the names."""
    validate_name("tenant", tenant)
    con = _shared_database().cursor()
    tables = register_tables(con, lake, tenant=tenant, on_explain=on_explain)
    return con, tables


def _check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    for statement in con.extract_statements(query):
        kind = getattr(statement.type, "name", str(statement.type))
        if kind not in _ALLOWED_STATEMENTS:
            raise InvalidQueryError(
                f"lake.sql runs queries (SELECT, WITH, EXPLAIN, DESCRIBE, SUMMARIZE), not {kind} statements; "
                "attach the tables to your own connection with tsdb_lake.duckdb.register(con, lake, tenant=...)"
            )


def _translate_error(exc: duckdb.Error, tenant: str, tables: list[str]) -> InvalidQueryError:
    message = str(exc).strip()
    if isinstance(exc, duckdb.ParserException):
        return InvalidQueryError(f"SQL syntax error: {message}")
    if isinstance(exc, duckdb.CatalogException):
        return InvalidQueryError(f"{message}\ntenant {tenant!r} has tables: {tables} (one per metric)")
    if isinstance(exc, duckdb.PermissionException):
        return InvalidQueryError(
            f"{message}\nlake.sql reads only tenant {tenant!r}'s tables {tables}; files, extensions and other "
            "databases are not reachable"
        )
    if isinstance(exc, duckdb.BinderException):
        return InvalidQueryError(f"{message}\n(tenant {tenant!r} tables: {tables})")
    return InvalidQueryError(f"SQL failed: {message}")


def merge_explain(records: list[ScanRecord], version: int | None = None) -> dict[str, Any]:
    """Sum the counters of every table scan of a statement; ``scans`` keeps each scan's own report."""
    out: dict[str, Any] = {k: 0 for k in SUMMED_COUNTERS}
    for rec in records:
        for k in SUMMED_COUNTERS:
            out[k] += int(rec.explain.get(k, 0) or 0)
    out["scans"] = [r.to_dict() for r in records]
    out["snapshot_versions"] = sorted({r.explain.get("snapshot_version") for r in records} - {None})
    if version is not None:
        out["catalog_version"] = version
    return out


def run_sql(lake: Lake, query: str, *, tenant: str, explain: bool = False) -> Any:
    """Run ``query`` over ``tenant``'s tables; a DuckDB relation (None for statements without a result).

    With ``explain=True`` the statement runs now and the result is ``(relation over the materialised rows,
    explain dict)``: the summed ``lake.query`` counters of every table scan plus the per-scan ``scans``.
    Bad SQL, unknown tables or columns and blocked file access raise :class:`InvalidQueryError`.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidQueryError("lake.sql needs a non-empty SQL string")
    records: list[ScanRecord] = []
    con, tables = open_connection(lake, tenant, on_explain=records.append)
    try:
        _check_read_only(con, query)
        relation = con.sql(query)
        if not explain:
            return relation
        if relation is None:
            return None, merge_explain(records)
        table = relation.to_arrow_table()
    except duckdb.Error as exc:
        raise _translate_error(exc, tenant, tables) from exc
    return con.from_arrow(table), merge_explain(records)
