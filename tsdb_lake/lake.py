"""``connect()`` and the :class:`Lake` facade: it wires the rooms together and holds no logic of theirs."""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from tsdb_lake.catalog import Catalog, MetricSchema, Snapshot, evolve
from tsdb_lake.ingest.options import WriterOptions
from tsdb_lake.ingest.writer import Writer, open_wal_slot, recover_orphan_slots
from tsdb_lake.model import validate_name
from tsdb_lake.query.engine import Output, build_request, require_schema, run_query, shape_output
from tsdb_lake.query.matchers import WhereLike
from tsdb_lake.query.predicates import FilterLike
from tsdb_lake.query.timeutil import TimeLike
from tsdb_lake.storage import open_storage
from tsdb_lake.storage.base import Storage
from tsdb_lake.wal import WAL

__all__ = ["DEFAULT_TENANT", "Lake", "connect"]

DEFAULT_TENANT = "default"


def _default_wal_root(storage: Storage, uri: str) -> Path:
    local_root = getattr(storage, "root", None)
    if local_root is not None:
        return Path(local_root) / "_wal"
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "tsdb-lake" / "wal" / hashlib.sha1(uri.encode()).hexdigest()[:16]


def connect(
    uri: str | os.PathLike[str] = "./lake",
    storage_options: Mapping[str, Any] | None = None,
    *,
    wal_root: str | os.PathLike[str] | None = None,
) -> Lake:
    """Open (creating if needed) the lake at ``uri``: a local folder or ``s3://bucket/prefix``.

    ``storage_options`` carries endpoint, credentials and region for object stores (see ``infra/README.md``).
    ``wal_root`` is the local folder for writers' WALs (default: ``<lake>/_wal`` for local lakes, the user's
    state directory for remote ones).
    """
    uri_str = os.fspath(uri)
    storage = open_storage(uri_str, storage_options)
    root = Path(wal_root) if wal_root is not None else _default_wal_root(storage, uri_str)
    return Lake(storage, Catalog.create_or_open(storage), wal_root=root)


class Lake:
    """A lake: write with :meth:`writer`, read with :meth:`query`, :meth:`scan` or :meth:`sql`."""

    def __init__(self, storage: Storage, catalog: Catalog, *, wal_root: Path) -> None:
        self.storage = storage
        self.catalog = catalog
        self.wal_root = wal_root
        self._writers: weakref.WeakSet[Writer] = weakref.WeakSet()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        """Where the lake lives."""
        return self.storage.uri

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # ------------------------------------------------------------------ writing
    def writer(
        self,
        tenant: str = DEFAULT_TENANT,
        *,
        wal_dir: str | os.PathLike[str] | None = None,
        options: WriterOptions | None = None,
        **settings: Any,
    ) -> Writer:
        """A WAL-backed writer for ``tenant``; ``settings`` override fields of :class:`WriterOptions`.

        Without ``wal_dir`` the writer takes the first free WAL slot under the lake's WAL root; a WAL left
        by a crashed writer is replayed by whichever writer opens its slot next.
        """
        validate_name("tenant", tenant)
        opts = replace(options or WriterOptions(), **settings)
        if wal_dir is not None:
            wal = WAL(
                wal_dir,
                segment_bytes=opts.wal_segment_bytes,
                durability=opts.durability,
                sync_interval_s=opts.sync_interval_s,
            )
        else:
            wal = open_wal_slot(self.wal_root / tenant, opts)
        writer = Writer(self.storage, self.catalog, tenant, wal, opts, on_close=self._writers.discard)
        if wal_dir is None:
            recover_orphan_slots(
                self.storage, self.catalog, tenant, self.wal_root / tenant, opts, skip=wal.directory
            )
        self._writers.add(writer)
        return writer

    # ------------------------------------------------------------------ reading
    def snapshot(self, version: int | None = None) -> Snapshot:
        """The catalog state at ``version`` (default: the latest)."""
        if version is None:
            self.catalog.refresh()
        return self.catalog.snapshot(version)

    def tenants(self) -> list[str]:
        """Tenants with data in the lake."""
        return sorted(self.snapshot().tenants())

    def metrics(self, tenant: str = DEFAULT_TENANT) -> list[str]:
        """Metrics of ``tenant``."""
        return sorted(self.snapshot().metrics(tenant))

    def _buffered(self, tenant: str, metric: str, start: int, end: int) -> list[pa.Table]:
        tables: list[pa.Table] = []
        for w in list(self._writers):
            if w.tenant == tenant:
                tables.extend(w.buffered(metric, start, end))
        return tables

    def _pending_schema(self, tenant: str, metric: str, base: MetricSchema | None) -> MetricSchema | None:
        schema = base
        for w in list(self._writers):
            if w.tenant != tenant:
                continue
            theirs = w.schema(metric)
            if theirs is not None:
                schema = evolve(schema, theirs.labels, theirs.fields) or schema
        return schema

    def query(
        self,
        metric: str,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        tenant: str = DEFAULT_TENANT,
        where: WhereLike = None,
        filter: FilterLike = None,
        fields: Sequence[str] | str | None = None,
        every: Any = None,
        agg: str | Sequence[str] | None = None,
        by: Sequence[str] | str | None = None,
        fill: str | None = None,
        as_of: int | None = None,
        resolution: str | None = None,
        output: Output = "polars",
        explain: bool = False,
    ) -> Any:
        """Points of ``metric`` in ``[start, end)``, raw or bucketed by ``every`` with ``agg``.

        Returns a polars DataFrame (or pandas / Arrow per ``output``); with ``explain=True`` a tuple of the
        frame and the explain dict. ``as_of`` reads the catalog version given (time travel, no memtable).
        ``filter`` keeps points whose field values pass comparisons such as ``"usage_user > 90"`` (see
        ``query/predicates.py``); chunks whose min / max rule them out are skipped undecoded.
        """
        validate_name("tenant", tenant)
        validate_name("metric", metric)
        snapshot = self.snapshot(as_of)
        base = snapshot.schema(tenant, metric)
        live = as_of is None
        schema = require_schema(
            snapshot, tenant, metric, self._pending_schema(tenant, metric, base) if live else None
        )
        request = build_request(
            schema,
            metric,
            tenant,
            start,
            end,
            where=where,
            fields=fields,
            every=every,
            agg=agg,
            by=by,
            fill=fill,
            resolution=resolution,
            filter=filter,
        )
        buffered = self._buffered(tenant, metric, request.start, request.end) if live else []
        result = run_query(self.storage, snapshot, schema, request, buffered)
        shaped = shape_output(result.frame, output)
        return (shaped, result.explain.to_dict()) if explain else shaped

    def explain(
        self, metric: str, start: TimeLike = None, end: TimeLike = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Run the query and return only its explain report (files / chunks considered, pruned, decoded)."""
        _, report = self.query(metric, start, end, explain=True, **kwargs)
        return report  # type: ignore[no-any-return]

    def scan(self, metric: str, *, tenant: str = DEFAULT_TENANT, as_of: int | None = None) -> Any:
        """A ``polars.LazyFrame`` over ``metric``; filters on time / labels and projections reach the pruning."""
        from tsdb_lake.query.polars_io import scan_metric

        return scan_metric(self, metric, tenant=tenant, as_of=as_of)

    def sql(self, query: str, *, tenant: str = DEFAULT_TENANT, explain: bool = False) -> Any:
        """DuckDB SQL over ``tenant``'s metrics (one table each); a relation (``(relation, explain)``)."""
        from tsdb_lake.query.sql import run_sql

        return run_sql(self, query, tenant=tenant, explain=explain)

    # ------------------------------------------------------------------ maintenance
    def rollup(
        self, tenant: str | None = None, metric: str | None = None, dry_run: bool = False, **options: Any
    ) -> Any:
        """Build / repair the rollup tiers (``compaction.rollup.run_rollups``); returns its RollupReport.

        ``options``: ``now_ns`` and ``settle_ns`` (raw is rolled up to ``floor(now - settle, 1h)``).
        """
        from tsdb_lake.compaction.rollup import run_rollups

        return run_rollups(self.storage, self.catalog, tenant, metric, dry_run, **options)

    def compact(
        self, tenant: str | None = None, metric: str | None = None, dry_run: bool = False, **settings: Any
    ) -> Any:
        """Merge small / overlapping raw files of settled hours; ``settings`` override CompactionSettings."""
        from tsdb_lake.compaction import CompactionSettings, run_compaction

        compaction = CompactionSettings(**settings)
        return run_compaction(
            self.storage, self.catalog, compaction, tenant=tenant, metric=metric, dry_run=dry_run
        )

    def vacuum(
        self,
        older_than: Any = 3600,
        dry_run: bool = False,
        *,
        log_retention: Any = None,
        now_ns: int | None = None,
    ) -> Any:
        """Delete data files no snapshot younger than ``older_than`` (default 1 h) references, and old orphans;
        then expire catalog log entries older than ``log_retention`` (default: lake property, else 30 days)."""
        from tsdb_lake.compaction import run_vacuum

        return run_vacuum(
            self.storage,
            self.catalog,
            older_than,
            dry_run=dry_run,
            now_ns=now_ns,
            log_retention=log_retention,
        )

    @property
    def retention(self) -> Any:
        """Retention rules: ``.set(tier, ttl, tenant=, metric=)``, ``.show()``, ``.apply(dry_run=True)``."""
        from tsdb_lake.compaction import Retention

        return Retention(self.catalog)

    def status(self) -> dict[str, Any]:
        """Per tenant / metric / tier: files, bytes, points, range, watermarks, retention (``status.py``)."""
        from tsdb_lake.status import lake_status

        return lake_status(self)

    def verify(self, *, deep: bool = False, strict: bool = False) -> Any:
        """Check the catalog against storage without changing anything; a ``verify.VerifyReport``."""
        from tsdb_lake.verify import verify_lake

        return verify_lake(self, deep=deep, strict=strict)

    def export(self, dest: str | os.PathLike[str], **options: Any) -> Any:
        """Export a tier's time range to plain Parquet under ``dest`` (``export.export_lake``); its report."""
        from tsdb_lake.export import export_lake

        return export_lake(self, dest, **options)

    def close(self) -> None:
        """Close every writer opened from this lake (each flushes)."""
        for w in list(self._writers):
            w.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
