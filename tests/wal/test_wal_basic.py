"""WAL behaviour on healthy logs: round-trip, rotation, truncation, LSN continuity, durability, lock, writer id."""

from __future__ import annotations

import array
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from wal_crash_child import LIGHT_IMPORT

from tsdb_lake.errors import BackendWriteError, CorruptBlockError, InvalidFrameError, TsdbLakeError
from tsdb_lake.wal import WAL, WalRecord, wal_writer_id
from tsdb_lake.wal.format import HEADER_SIZE, RECORD_HEADER_SIZE, segment_name

REPO = Path(__file__).resolve().parents[2]


def payload(lsn: int, size: int | None = None) -> bytes:
    n = (lsn * 7919) % 500 if size is None else size
    seed = hashlib.sha256(str(lsn).encode()).digest()
    return (seed * (n // 32 + 1))[:n]


def test_round_trip_in_order(tmp_path: Path) -> None:
    with WAL(tmp_path) as wal:
        assert list(wal.replay()) == []
        assert wal.last_lsn == 0
        lsns = [wal.append(payload(i)) for i in range(1, 51)]
        assert lsns == list(range(1, 51))
        assert wal.append(b"") == 51
        assert wal.append_many([b"x", bytearray(b"yy"), memoryview(b"zzz")]) == [52, 53, 54]
        assert wal.append_many([]) == []
    with WAL(tmp_path) as wal:
        records = list(wal.replay())
        assert [r.lsn for r in records] == list(range(1, 55))
        assert all(r.payload == payload(r.lsn) for r in records[:50])
        assert records[50] == WalRecord(51, b"")
        assert [r.payload for r in records[51:]] == [b"x", b"yy", b"zzz"]
        assert wal.last_replay is not None
        assert wal.last_replay.records == 54
        assert wal.last_replay.truncated_bytes == 0
        assert wal.last_replay.truncated_segment is None


def test_large_payload_and_non_byte_buffers(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    floats = array.array("d", [1.5, 2.5, -3.0])
    with WAL(tmp_path) as wal:
        assert wal.append(big) == 1
        assert wal.append(memoryview(floats)) == 2
        with pytest.raises(InvalidFrameError):
            wal.append("not bytes")  # type: ignore[arg-type]
    with WAL(tmp_path) as wal:
        records = list(wal.replay())
        assert records[0].payload == big
        assert records[1].payload == floats.tobytes()


def test_rotation_by_size_and_explicit(tmp_path: Path) -> None:
    with WAL(tmp_path, segment_bytes=1024) as wal:
        for i in range(1, 41):
            wal.append(payload(i, 100))
        segs = wal.segments()
        assert len(segs) > 3
        for s in segs[:-1]:
            assert s.bytes <= 1024
            assert Path(s.path).name == segment_name(s.first_lsn)
            assert s.bytes == os.path.getsize(s.path)
        assert [s.first_lsn for s in segs[1:]] == [s.last_lsn + 1 for s in segs[:-1]]
        assert segs[-1].last_lsn == 40
        # a record larger than a segment gets a segment of its own
        assert wal.append(payload(41, 5000)) == 41
        assert wal.segments()[-1].first_lsn == 41
        n = len(wal.segments())
        wal.rotate()
        wal.rotate()  # no-op: the new segment is empty
        assert len(wal.segments()) == n + 1
        assert wal.segments()[-1].first_lsn == 42
        assert wal.segments()[-1].last_lsn == 41
        assert wal.segments()[-1].bytes == HEADER_SIZE
        # a group spanning several segments keeps consecutive LSNs
        assert wal.append_many([payload(i, 300) for i in range(42, 52)]) == list(range(42, 52))
    with WAL(tmp_path, segment_bytes=1024) as wal:
        records = list(wal.replay())
        assert [r.lsn for r in records] == list(range(1, 52))
        sizes = {41: 5000, **{i: 300 for i in range(42, 52)}}
        assert all(r.payload == payload(r.lsn, sizes.get(r.lsn, 100)) for r in records)


def test_truncate_removes_only_covered_segments(tmp_path: Path) -> None:
    record = RECORD_HEADER_SIZE + 100
    seg_bytes = HEADER_SIZE + 4 * record  # exactly four records per segment
    with WAL(tmp_path, segment_bytes=seg_bytes) as wal:
        for i in range(1, 15):
            wal.append(payload(i, 100))
        assert [(s.first_lsn, s.last_lsn) for s in wal.segments()] == [(1, 4), (5, 8), (9, 12), (13, 14)]
        assert wal.truncate(0) == 0
        assert wal.truncate(3) == 0  # segment 1..4 is not fully covered
        assert wal.truncate(4) == 1
        assert wal.truncate(10) == 1
        assert [(s.first_lsn, s.last_lsn) for s in wal.segments()] == [(9, 12), (13, 14)]
        assert not (tmp_path / segment_name(1)).exists()
        # the open segment goes only when fully covered, after rotating
        assert wal.truncate(13) == 1
        assert wal.truncate(14) == 1
        segs = wal.segments()
        assert [(s.first_lsn, s.last_lsn) for s in segs] == [(15, 14)]
        assert wal.truncate(10**9) == 0  # never the (empty) anchor segment
        assert wal.last_lsn == 14
    with WAL(tmp_path, segment_bytes=seg_bytes) as wal:
        assert list(wal.replay()) == []
        assert wal.last_lsn == 14
        assert wal.append(b"after") == 15
    with WAL(tmp_path) as wal:
        assert list(wal.replay()) == [WalRecord(15, b"after")]


def test_lsn_continuity_across_reopen_without_explicit_replay(tmp_path: Path) -> None:
    expected: list[int] = []
    for round_ in range(5):
        with WAL(tmp_path, segment_bytes=512) as wal:
            # no replay(): the first append recovers implicitly
            lsns = wal.append_many([payload(round_ * 10 + k) for k in range(7)])
            assert lsns[0] == len(expected) + 1
            expected += lsns
            assert wal.last_replay is not None
            assert wal.last_replay.last_lsn == len(expected) - 7
    with WAL(tmp_path) as wal:
        assert [r.lsn for r in wal.replay()] == expected == list(range(1, 36))


def test_replay_after_recovery_rereads_including_new_records(tmp_path: Path) -> None:
    with WAL(tmp_path, durability="none") as wal:
        wal.append(b"a")
        assert [r.payload for r in wal.replay()] == [b"a"]
        wal.append(b"b")
        assert [r.payload for r in wal.replay()] == [b"a", b"b"]


def test_durability_batch_fsyncs_per_call(tmp_path: Path) -> None:
    with WAL(tmp_path, durability="batch") as wal:
        for i in range(5):
            wal.append(payload(i))
        assert wal.fsync_count == 5
        wal.append_many([payload(i) for i in range(20)])
        assert wal.fsync_count == 6


def test_deferred_sync_leaves_the_fsync_to_the_caller(tmp_path: Path) -> None:
    with WAL(tmp_path, durability="batch") as wal:
        assert wal.append_many([payload(1), payload(2)], defer_sync=True) == [1, 2]
        assert wal.fsync_count == 0
        assert wal.append_many([payload(3)], defer_sync=True) == [3]
        wal.sync()  # one fsync covers every deferred append
        assert wal.fsync_count == 1
        wal.sync()
        assert wal.fsync_count == 1
        wal.append(payload(4))
        assert wal.fsync_count == 2
    with WAL(tmp_path) as wal:
        assert [r.payload for r in wal.replay()] == [payload(i) for i in range(1, 5)]


def test_durability_none_never_fsyncs_records(tmp_path: Path) -> None:
    with WAL(tmp_path, durability="none") as wal:
        for i in range(20):
            wal.append(payload(i))
        assert wal.fsync_count == 0
        wal.sync()
        assert wal.fsync_count == 1
        wal.sync()  # nothing new: nothing to do
        assert wal.fsync_count == 1


def test_durability_interval_background_thread(tmp_path: Path) -> None:
    wal = WAL(tmp_path, durability="interval", sync_interval_s=0.05)
    try:
        wal.append(b"one")
        deadline = time.monotonic() + 5
        while wal.fsync_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.fsync_count >= 1
        settled = wal.fsync_count
        time.sleep(0.2)
        assert wal.fsync_count == settled  # idle: no redundant fsyncs
        wal.append(b"two")
    finally:
        wal.close()
    assert not any(t.name.startswith("wal-sync") and t.is_alive() for t in threading.enumerate())
    with WAL(tmp_path) as wal:
        assert [r.payload for r in wal.replay()] == [b"one", b"two"]


def test_closed_wal_refuses_work(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(BackendWriteError, match="closed"):
        wal.append(b"x")
    with pytest.raises(BackendWriteError, match="closed"):
        list(wal.replay())


def test_bad_configuration_is_typed(tmp_path: Path) -> None:
    with pytest.raises(TsdbLakeError):
        WAL(tmp_path, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TsdbLakeError):
        WAL(tmp_path, segment_bytes=10)
    with pytest.raises(TsdbLakeError):
        WAL(tmp_path, sync_interval_s=0)
    with WAL(tmp_path) as wal:  # the failed constructions left no lock behind
        assert wal.append(b"ok") == 1


def test_second_writer_in_same_process_is_refused(tmp_path: Path) -> None:
    with WAL(tmp_path):
        with pytest.raises(
            BackendWriteError, match=rf"in use by another writer \(pid {os.getpid()}\)"
        ) as info:
            WAL(tmp_path)
        assert info.value.retryable is False
    with WAL(tmp_path):  # released on close
        pass


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_lock_against_another_process(tmp_path: Path) -> None:
    code = LIGHT_IMPORT + (
        "import sys\n"
        "from tsdb_lake.wal import WAL\n"
        "from tsdb_lake.errors import BackendWriteError\n"
        "try:\n"
        "    WAL(sys.argv[1])\n"
        "except BackendWriteError as e:\n"
        "    print(e.code.value, e.retryable, e.message)\n"
        "    sys.exit(3)\n"
    )
    with WAL(tmp_path):
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=_child_env()
        )
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("backend_write False ")
    assert f"in use by another writer (pid {os.getpid()})" in done.stdout

    holder = subprocess.Popen(
        [sys.executable, "-c", LIGHT_IMPORT + "import sys\nfrom tsdb_lake.wal import WAL\nw = WAL(sys.argv[1])\n"
         "print('ready', flush=True)\nsys.stdin.read()\n", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env(),
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(BackendWriteError, match=rf"pid {holder.pid}\)"):
            WAL(tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    with WAL(tmp_path) as wal:  # the holder exited: the lock is free
        assert wal.append(b"x") == 1


def test_writer_id_is_stable_and_atomic(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    first = wal_writer_id(d)
    assert len(first) == 32 and int(first, 16) >= 0
    assert wal_writer_id(d) == first
    with WAL(d) as wal:
        assert wal.writer_id == first
    assert (d / "WRITER_ID").read_text().strip() == first
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []

    d2 = tmp_path / "race"
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(wal_writer_id(d2))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8

    (d2 / "WRITER_ID").write_text("not-an-id\n")
    with pytest.raises(CorruptBlockError, match="WRITER_ID"):
        wal_writer_id(d2)


def test_stale_segment_tmp_files_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f".{segment_name(1)}.{'ab' * 16}.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"partial")
    with WAL(tmp_path) as wal:
        assert not stale.exists()
        assert wal.append(b"x") == 1


def test_golden_bytes_match_the_spec(tmp_path: Path) -> None:
    """The example in catalog/WAL.md, byte for byte."""
    with WAL(tmp_path) as wal:
        wal.append(b"hi")
    data = (tmp_path / segment_name(1)).read_bytes()
    assert data.hex() == (
        "54534c57414c0001" "0100" "0100000000000000" "93d7b364"
        "02000000" "e9013698" "0100000000000000" "6869"
    )  # fmt: skip
