"""Concurrent commits from threads and from spawned processes: no commit lost, versions dense,
every file present exactly once — on a local folder and on the S3 endpoint."""

from __future__ import annotations

import multiprocessing as mp
import threading
from typing import Any

from catalog_testlib import assert_catalog_valid, make_file

from tsdb_lake.catalog import AddFile, Catalog, MetricSchema, SetSchema, WriterProgress
from tsdb_lake.catalog.schema import FieldSpec
from tsdb_lake.storage import open_storage
from tsdb_lake.storage.base import Storage

COMMITS_PER_WORKER = 8


def _commit_files(storage: Storage, writer: str, n: int) -> list[str]:
    """Commit ``n`` entries each adding one file, a schema field of its own and the writer's progress."""
    cat = Catalog.create_or_open(storage, checkpoint_interval=5)
    paths = []
    for i in range(n):
        f = make_file(writer=writer)
        cat.commit(
            [
                AddFile(f),
                SetSchema("acme", "cpu", MetricSchema(("host",), {f"f_{writer}": FieldSpec("float64")})),
                WriterProgress(writer, i),
            ],
            operation="write",
            writer=writer,
            max_retries=200,
        )
        paths.append(f.path)
    return paths


def _process_worker(uri: str, options: dict[str, Any], writer: str, n: int, out: Any) -> None:
    out.put((writer, _commit_files(open_storage(uri, options), writer, n)))


def _check(storage: Storage, expected: dict[str, list[str]]) -> None:
    cat = Catalog.open(storage)
    snap = cat.snapshot()
    total = sum(len(v) for v in expected.values())
    assert snap.version == total  # versions are dense: 0 = create, then one per commit
    history = cat.history()
    assert [e.version for e in history] == list(range(total + 1))
    added = [p for e in range(1, total + 1) for p in _added(cat, e)]
    assert sorted(added) == sorted(p for v in expected.values() for p in v)  # each exactly once
    assert set(snap.by_path) == set(added)
    schema = snap.schema("acme", "cpu")
    assert schema is not None and set(schema.fields) == {f"f_{w}" for w in expected}  # no field lost
    for writer, paths in expected.items():
        assert snap.progress(writer) == len(paths) - 1
    assert assert_catalog_valid(storage) > total


def _added(cat: Catalog, version: int) -> list[str]:
    return [a.file.path for a in cat.read_entry(version).actions if isinstance(a, AddFile)]


def test_threads_commit_concurrently(storage: Storage) -> None:
    Catalog.create_or_open(storage)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def run(writer: str) -> None:
        try:
            results[writer] = _commit_files(storage, writer, COMMITS_PER_WORKER)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _check(storage, results)


def test_threads_sharing_one_catalog(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    paths: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(5):
            f = make_file()
            cat.commit([AddFile(f)], operation="write", max_retries=200)
            with lock:
                paths.append(f.path)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(cat.refresh().by_path) == set(paths) and cat.version == 15


def test_processes_commit_concurrently(lake_target: Any) -> None:
    n = COMMITS_PER_WORKER if lake_target.kind == "local" else 5
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_worker,
            args=(lake_target.uri, lake_target.storage_options, f"p{i}", n, out),
        )
        for i in range(3)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check(open_storage(lake_target.uri, lake_target.storage_options), results)
