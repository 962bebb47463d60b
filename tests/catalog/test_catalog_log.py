"""The catalog on real storage (local folder and S3 endpoint): create/open, commits, time travel,
checkpoints, schema conflicts, watermarks and dirty ranges, history, corruption."""

from __future__ import annotations

import json
import threading

import pytest
from catalog_testlib import HOUR, T0, CountingStorage, assert_catalog_valid, make_file

from tsdb_lake.catalog import (
    DEFAULT_TIERS,
    AddFile,
    Catalog,
    ClearDirty,
    DataFile,
    FieldSpec,
    MarkDirty,
    MetricSchema,
    RemoveFile,
    SetProperty,
    SetRetention,
    SetSchema,
    SetWatermark,
    Snapshot,
    WriterProgress,
)
from tsdb_lake.errors import (
    CommitConflictError,
    CorruptBlockError,
    InvalidNameError,
    InvalidTimestampError,
    NotFoundError,
    SchemaConflictError,
)
from tsdb_lake.storage.base import Storage
from tsdb_lake.storage.layout import CATALOG_LAST_CHECKPOINT, catalog_checkpoint_key, catalog_log_key

F = FieldSpec("float64")


def test_create_then_open(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        Catalog.open(storage)
    cat = Catalog.create_or_open(storage)
    snap = cat.snapshot()
    assert snap.version == 0 and snap.by_path == {}
    assert snap.tiers_for("acme", "cpu") == DEFAULT_TIERS
    again = Catalog.create_or_open(storage)  # opening does not write a second version 0
    assert again.version == 0
    assert [o.key for o in storage.list("_catalog/")] == [catalog_log_key(0)]
    assert cat.history()[0].operation == "create"
    assert assert_catalog_valid(storage) == 1


def test_commit_snapshot_and_other_catalog_sees_it_after_refresh(storage: Storage) -> None:
    a = Catalog.create_or_open(storage)
    b = Catalog.open(storage)
    f1, f2 = make_file(), make_file(start=T0 + HOUR)
    schema = MetricSchema(("host",), {"usage": F})
    s1 = a.commit(
        [SetSchema("acme", "cpu", schema), AddFile(f1), AddFile(f2), WriterProgress("w1", 7)],
        operation="write",
        writer="w1",
    )
    assert s1.version == 1 and set(s1.by_path) == {f1.path, f2.path}
    assert s1.schema("acme", "cpu") == schema and s1.progress("w1") == 7
    assert b.snapshot().version == 0  # pinned until refresh
    assert b.refresh().by_path == s1.by_path
    s2 = b.commit([RemoveFile(f1.path, "compact")], operation="compact", reads=[f1.path, f2.path])
    assert set(s2.by_path) == {f2.path}
    assert s1.by_path.keys() == {f1.path, f2.path}  # old snapshots never change
    info = a.history()
    assert [(e.version, e.operation) for e in info] == [(0, "create"), (1, "write"), (2, "compact")]
    assert info[1].summary["add_file"] == 2 and info[1].summary["points_added"] == f1.points + f2.points
    assert info[1].writer == "w1" and info[2].base_version == 1
    assert assert_catalog_valid(storage) == 3


def test_time_travel(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage, checkpoint_interval=4)
    files = []
    for i in range(10):
        f = make_file(start=T0 + i * HOUR)
        files.append(f)
        cat.commit([AddFile(f)], operation="write")
    fresh = Catalog.open(storage, checkpoint_interval=4)
    for v in range(11):
        assert set(fresh.snapshot(v).by_path) == {f.path for f in files[:v]}
    with pytest.raises(NotFoundError):
        fresh.snapshot(11)
    with pytest.raises(NotFoundError):
        fresh.snapshot(-1)
    stamps = [e.timestamp_ms for e in fresh.history()]
    assert stamps == sorted(stamps)
    assert fresh.version_as_of(stamps[5]) >= 5
    assert fresh.version_as_of(stamps[-1] + 10_000) == 10
    with pytest.raises(NotFoundError):
        fresh.version_as_of(stamps[0] - 1)
    assert fresh.referenced_paths(3) == {f.path for f in files}
    cat.commit([RemoveFile(files[0].path, "retention")], operation="retention")
    assert files[0].path in cat.referenced_paths(3)
    assert files[0].path not in cat.referenced_paths(11)
    assert assert_catalog_valid(storage) == 12 + 2 + 1  # entries, checkpoints at 4 and 8, pointer


def test_checkpoint_makes_open_read_few_objects(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage, checkpoint_interval=5)
    paths = set()
    for _ in range(13):
        fs = [make_file() for _ in range(3)]
        paths.update(f.path for f in fs)
        cat.commit([AddFile(f) for f in fs], operation="write")
    assert json.loads(storage.read_bytes(CATALOG_LAST_CHECKPOINT))["version"] == 10
    counting = CountingStorage(storage)
    reopened = Catalog.open(counting, checkpoint_interval=5)
    assert reopened.version == 13 and set(reopened.snapshot().by_path) == paths
    # pointer, checkpoint 10, entries 11..13 and the missing 14
    assert counting.reads == [
        CATALOG_LAST_CHECKPOINT,
        catalog_checkpoint_key(10),
        *(catalog_log_key(v) for v in (11, 12, 13, 14)),
    ]
    assert counting.lists == []
    # A missing pointer falls back to listing the checkpoints; a stale one just replays more.
    storage.delete([CATALOG_LAST_CHECKPOINT])
    counting.reads.clear()
    assert set(Catalog.open(counting).snapshot().by_path) == paths
    assert counting.lists == ["_catalog/checkpoints/"] and len(counting.reads) == 6
    storage.write_bytes(CATALOG_LAST_CHECKPOINT, b'{"format_version": 1, "version": 5}')
    assert set(Catalog.open(storage).snapshot().by_path) == paths
    storage.write_bytes(CATALOG_LAST_CHECKPOINT, b'{"format_version": 1, "version": 95}')  # points nowhere
    assert set(Catalog.open(storage).snapshot().by_path) == paths
    assert assert_catalog_valid(storage) == 14 + 2 + 1


def test_refresh_jumps_to_checkpoint_when_far_behind(storage: Storage) -> None:
    slow = Catalog.create_or_open(storage, checkpoint_interval=5)
    fast = Catalog.open(storage, checkpoint_interval=5)
    for _ in range(17):
        fast.commit([AddFile(make_file())], operation="write")
    counting = CountingStorage(storage)
    slow.storage = counting
    assert slow.refresh().by_path == fast.snapshot().by_path
    assert catalog_checkpoint_key(15) in counting.reads and catalog_log_key(8) not in counting.reads


def test_checkpoint_failure_does_not_fail_the_commit(storage: Storage) -> None:
    class NoCheckpoints(CountingStorage):
        def write_bytes(self, key: str, data: bytes) -> None:
            raise OSError("disk full")

    cat = Catalog.create_or_open(NoCheckpoints(storage), checkpoint_interval=2)
    for _ in range(4):
        cat.commit([AddFile(make_file())], operation="write")
    assert cat.version == 4 and storage.list("_catalog/checkpoints/") == []
    assert len(Catalog.open(storage).snapshot().by_path) == 4


def test_corrupt_entry_names_the_key(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    cat.commit([AddFile(make_file())], operation="write")
    storage.write_bytes(catalog_log_key(2), b'{"format_version": 1, "version": 2, "actions": [')
    with pytest.raises(CorruptBlockError) as info:
        Catalog.open(storage)
    assert info.value.path == catalog_log_key(2)
    assert catalog_log_key(2) in str(info.value)


def test_schema_evolution_and_conflict_through_commits(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    base = cat.snapshot()
    cat.commit([SetSchema("acme", "cpu", MetricSchema(("host",), {"usage": F}))], operation="write")
    # A concurrent writer computed from version 0 and adds another field: merged, not lost.
    s = cat.commit(
        [SetSchema("acme", "cpu", MetricSchema(("dc",), {"idle": F}))], operation="write", base=base
    )
    schema = s.schema("acme", "cpu")
    assert schema == MetricSchema(("dc", "host"), {"idle": F, "usage": F})
    # A concurrent writer that thinks "usage" is an int: a schema conflict, nothing applied.
    with pytest.raises(SchemaConflictError, match="usage"):
        cat.commit(
            [AddFile(make_file()), SetSchema("acme", "cpu", MetricSchema((), {"usage": FieldSpec("int64")}))],
            operation="write",
            base=base,
        )
    assert cat.refresh().version == 2 and len(cat.snapshot().by_path) == 0
    assert assert_catalog_valid(storage) == 3


def test_retention_watermarks_and_dirty_through_commits(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    cat.commit(
        [SetRetention(None, None, "raw", 30 * 24 * HOUR), SetRetention("acme", "cpu", "raw", 2 * 24 * HOUR)],
        operation="retention",
    )
    rollup_base = cat.snapshot()
    cat.commit([SetWatermark("acme", "cpu", "1m", T0 + 24 * HOUR)], operation="rollup")
    cat.commit([MarkDirty("acme", "cpu", "1m", T0, T0 + HOUR)], operation="write")
    rebuild_base = cat.snapshot()
    cat.commit([MarkDirty("acme", "cpu", "1m", T0 + 3 * HOUR, T0 + 4 * HOUR)], operation="write")
    s = cat.commit(
        [ClearDirty("acme", "cpu", "1m", T0, T0 + 24 * HOUR)], operation="rollup", base=rebuild_base
    )
    assert s.dirty("acme", "cpu", "1m") == [(T0 + 3 * HOUR, T0 + 4 * HOUR)]
    # Two rollups computed from the same snapshot must not both move the watermark.
    with pytest.raises(CommitConflictError, match="watermark"):
        cat.commit([SetWatermark("acme", "cpu", "1m", T0 + 48 * HOUR)], operation="rollup", base=rollup_base)
    reopened = Catalog.open(storage).snapshot()
    assert reopened.retention_for("acme", "cpu", "raw") == 2 * 24 * HOUR
    assert reopened.retention_for("acme", "mem", "raw") == 30 * 24 * HOUR
    assert reopened.watermark("acme", "cpu", "1m") == T0 + 24 * HOUR
    assert reopened.dirty("acme", "cpu", "1m") == [(T0 + 3 * HOUR, T0 + 4 * HOUR)]
    assert assert_catalog_valid(storage) == 6


def test_validate_callback_sees_the_head_and_can_abort(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    seen: list[int] = []

    def guard(head: Snapshot, actions: list[object]) -> None:
        seen.append(head.version)
        if head.properties.get("frozen"):
            raise CommitConflictError("lake is frozen", retryable=False)

    base = cat.snapshot()
    cat.commit([SetProperty("frozen", True)], operation="config")
    with pytest.raises(CommitConflictError, match="frozen"):
        cat.commit([AddFile(make_file())], operation="write", base=base, validate=guard)
    assert seen == [1] and cat.refresh().version == 1


def test_remove_remove_race_exactly_one_wins(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    victim, keep = make_file(), make_file()
    cat.commit([AddFile(victim), AddFile(keep)], operation="write")
    barrier = threading.Barrier(2)
    results: list[object] = []
    outputs = [make_file(), make_file()]

    def compact(i: int) -> None:
        mine = Catalog.open(storage)
        base = mine.snapshot()
        barrier.wait()
        try:
            mine.commit(
                [RemoveFile(victim.path, "compact"), AddFile(outputs[i])],
                operation="compact",
                base=base,
                reads=[victim.path],
            )
            results.append(i)
        except CommitConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=compact, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, CommitConflictError)]
    assert len(winners) == 1 and len(losers) == 1 and losers[0].retryable
    final = Catalog.open(storage).snapshot()
    assert final.version == 2
    assert set(final.by_path) == {keep.path, outputs[winners[0]].path}
    assert assert_catalog_valid(storage) == 3


def test_commit_reading_a_removed_file_conflicts(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    a, b = make_file(), make_file()
    cat.commit([AddFile(a), AddFile(b)], operation="write")
    base = cat.snapshot()
    cat.commit([RemoveFile(a.path, "retention")], operation="retention")
    with pytest.raises(CommitConflictError, match="no longer live"):  # a rollup that read a
        cat.commit([AddFile(make_file(tier="1m"))], operation="rollup", base=base, reads=[a.path, b.path])
    # an unrelated concurrent write rebases fine
    c = make_file()
    s = cat.commit([AddFile(c)], operation="write", base=base)
    assert set(s.by_path) == {b.path, c.path} and s.version == 3


def test_bad_input_is_rejected_with_typed_errors_and_writes_nothing(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage)
    good = make_file()
    bad_path = DataFile(
        **{**{k: getattr(good, k) for k in good.__dataclass_fields__}, "path": "data/../../etc/x"}
    )
    bad_time = DataFile(
        **{**{k: getattr(good, k) for k in good.__dataclass_fields__}, "max_time": good.min_time - 1}
    )
    with pytest.raises(InvalidNameError):
        cat.commit([AddFile(bad_path)], operation="write")
    with pytest.raises(InvalidTimestampError):
        cat.commit([AddFile(bad_time)], operation="write")
    with pytest.raises(InvalidNameError):
        cat.commit([RemoveFile("_catalog/log/00000000000000000000.json", "x")], operation="vacuum")
    with pytest.raises(InvalidNameError):
        cat.commit([AddFile(good)], operation="Write Now")
    with pytest.raises(InvalidNameError):
        cat.commit([SetRetention("../acme", None, "raw", 1)], operation="retention")
    with pytest.raises(InvalidNameError):
        cat.commit([SetProperty("x", [1, 2])], operation="config")  # type: ignore[arg-type]
    assert cat.refresh().version == 0 and [o.key for o in storage.list("_catalog/")] == [catalog_log_key(0)]
