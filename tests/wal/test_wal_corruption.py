"""WAL recovery from damage: torn tails are repaired at every byte offset, corruption elsewhere is refused."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tsdb_lake.errors import CorruptBlockError
from tsdb_lake.wal import WAL, WalRecord
from tsdb_lake.wal.format import HEADER_SIZE, RECORD_HEADER_SIZE, encode_header, frame_records, segment_name


def payload(lsn: int, size: int | None = None) -> bytes:
    n = 20 + (lsn * 37) % 90 if size is None else size
    seed = hashlib.sha256(str(lsn).encode()).digest()
    return (seed * (n // 32 + 1))[:n]


def build(directory: Path, n: int, *, segment_bytes: int = 1 << 20, rotate_after: int | None = None) -> None:
    with WAL(directory, segment_bytes=segment_bytes, durability="none") as wal:
        for lsn in range(1, n + 1):
            wal.append(payload(lsn))
            if lsn == rotate_after:
                wal.rotate()


def record_offsets(first_lsn: int, lsns: range) -> dict[int, tuple[int, int]]:
    """Byte span (start, end) of each record in a segment starting at ``first_lsn``."""
    spans = {}
    pos = HEADER_SIZE
    for lsn in lsns:
        end = pos + RECORD_HEADER_SIZE + len(payload(lsn))
        spans[lsn] = (pos, end)
        pos = end
    return spans


def replay_all(directory: Path) -> tuple[list[WalRecord], WAL]:
    wal = WAL(directory, durability="none")
    try:
        return list(wal.replay()), wal
    except BaseException:
        wal.close()
        raise


def test_torn_tail_at_every_byte_offset_of_last_record(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, 8, rotate_after=3)  # segments 1..3 (sealed) and 4..8 (open)
    last = src / segment_name(4)
    full = last.read_bytes()
    spans = record_offsets(4, range(4, 9))
    start, end = spans[8]
    assert end == len(full)
    work = tmp_path / "work"
    for cut in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        (work / last.name).write_bytes(full[:cut])
        records, wal = replay_all(work)
        try:
            assert [r.lsn for r in records] == list(range(1, 8)), cut
            assert all(r.payload == payload(r.lsn) for r in records)
            report = wal.last_replay
            assert report is not None
            assert report.truncated_bytes == cut - start
            assert report.truncated_segment == (str(work / last.name) if cut > start else None)
            assert os.path.getsize(work / last.name) == start  # repaired to the last good record
            assert wal.append(b"next") == 8
        finally:
            wal.close()
        records, wal = replay_all(work)
        wal.close()
        assert [r.lsn for r in records] == list(range(1, 9))
        assert records[-1].payload == b"next"


def test_torn_tail_down_into_the_only_record_and_the_header(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, 4, rotate_after=3)  # last segment holds only lsn 4
    last = src / segment_name(4)
    full = last.read_bytes()
    work = tmp_path / "work"
    for cut in range(len(full)):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        (work / last.name).write_bytes(full[:cut])
        records, wal = replay_all(work)
        try:
            assert [r.lsn for r in records] == [1, 2, 3], cut
            assert wal.last_lsn == 3
            assert (work / last.name).read_bytes() == encode_header(4)  # header rewritten if torn
            assert wal.append(b"again") == 4
        finally:
            wal.close()


def test_zero_filled_and_garbage_tails_are_torn(tmp_path: Path) -> None:
    for junk in (bytes(4096), b"\xff" * 7, os.urandom(3000)):
        d = tmp_path / str(len(junk))
        build(d, 5)
        seg = d / segment_name(1)
        good = seg.stat().st_size
        with seg.open("ab") as f:
            f.write(junk)
        records, wal = replay_all(d)
        wal.close()
        assert [r.lsn for r in records] == [1, 2, 3, 4, 5]
        assert wal.last_replay is not None and wal.last_replay.truncated_bytes == len(junk)
        assert seg.stat().st_size == good


def flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_flipped_bit_in_a_middle_record_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, 6)
    seg_name = segment_name(1)
    start, end = record_offsets(1, range(1, 7))[3]
    work = tmp_path / "work"
    original = (src / seg_name).read_bytes()
    for offset in range(start, end):
        for bit in (0, 3, 7):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(src, work)
            flip(work / seg_name, offset, bit)
            with pytest.raises(CorruptBlockError, match=seg_name) as info:
                replay_all(work)
            assert info.value.path == str(work / seg_name)
            assert f"offset {start}" in info.value.message
            # nothing was repaired behind our back
            assert len((work / seg_name).read_bytes()) == len(original)


def test_corruption_in_a_sealed_segment_is_refused_even_at_its_end(tmp_path: Path) -> None:
    build(tmp_path, 6, rotate_after=3)
    seg = tmp_path / segment_name(1)
    flip(seg, seg.stat().st_size - 1, 2)  # last byte of the sealed segment's last record
    with pytest.raises(CorruptBlockError, match="sealed segment") as info:
        replay_all(tmp_path)
    assert info.value.path == str(seg)


def test_truncated_sealed_segment_is_refused(tmp_path: Path) -> None:
    build(tmp_path, 6, rotate_after=3)
    seg = tmp_path / segment_name(1)
    seg.write_bytes(seg.read_bytes()[:-5])
    with pytest.raises(CorruptBlockError, match=segment_name(1)):
        replay_all(tmp_path)


def test_bad_header_is_refused(tmp_path: Path) -> None:
    for offset in range(HEADER_SIZE):
        d = tmp_path / f"h{offset}"
        build(d, 6, rotate_after=3)
        flip(d / segment_name(4), offset, 1)  # even the last segment's header
        with pytest.raises(CorruptBlockError, match=segment_name(4)):
            replay_all(d)


def test_missing_middle_segment_is_refused(tmp_path: Path) -> None:
    with WAL(tmp_path, durability="none") as wal:
        for lsn in range(1, 10):
            wal.append(payload(lsn))
            if lsn % 3 == 0:
                wal.rotate()
    (tmp_path / segment_name(4)).unlink()
    with pytest.raises(CorruptBlockError, match="missing") as info:
        replay_all(tmp_path)
    assert info.value.path == str(tmp_path / segment_name(7))


def test_lsn_gap_with_valid_crcs_is_refused(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    body = b"".join(bytes(p) for p in frame_records(1, [memoryview(b"a"), memoryview(b"b")]))
    body += b"".join(bytes(p) for p in frame_records(4, [memoryview(b"d")]))  # 3 is missing
    (tmp_path / segment_name(1)).write_bytes(encode_header(1) + body)
    with pytest.raises(CorruptBlockError, match="LSN gap") as info:
        replay_all(tmp_path)
    assert "offset" in info.value.message


def test_header_lsn_must_match_file_name(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / segment_name(5)).write_bytes(encode_header(6))
    with pytest.raises(CorruptBlockError, match="file name"):
        replay_all(tmp_path)


def test_flipped_bit_in_last_record_of_last_segment_is_a_torn_tail(tmp_path: Path) -> None:
    build(tmp_path, 5)
    seg = tmp_path / segment_name(1)
    start, _ = record_offsets(1, range(1, 6))[5]
    flip(seg, seg.stat().st_size - 1, 0)
    records, wal = replay_all(tmp_path)
    wal.close()
    assert [r.lsn for r in records] == [1, 2, 3, 4]
    assert seg.stat().st_size == start
