"""Hypothesis state machine: random appends, rotations, truncations, reopens and torn tails vs. a tiny model."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tsdb_lake.wal import WAL
from tsdb_lake.wal.format import HEADER_SIZE, RECORD_HEADER_SIZE

SEGMENT_BYTES = 1024


def make_payload(seed: int, size: int) -> bytes:
    block = hashlib.blake2b(seed.to_bytes(8, "little")).digest()
    return (block * (size // len(block) + 1))[:size]


@dataclass
class ModelSegment:
    first: int
    records: list[tuple[int, bytes]] = field(default_factory=list)
    size: int = HEADER_SIZE

    @property
    def last(self) -> int:
        return self.records[-1][0] if self.records else self.first - 1


class Model:
    """What the WAL should hold, derived from the documented rules alone."""

    def __init__(self) -> None:
        self.segments = [ModelSegment(1)]
        self.next_lsn = 1

    def append(self, payload: bytes) -> int:
        cur = self.segments[-1]
        size = RECORD_HEADER_SIZE + len(payload)
        if cur.records and cur.size + size > SEGMENT_BYTES:
            self.rotate()
            cur = self.segments[-1]
        lsn = self.next_lsn
        cur.records.append((lsn, payload))
        cur.size += size
        self.next_lsn += 1
        return lsn

    def rotate(self) -> None:
        if self.segments[-1].records:
            self.segments.append(ModelSegment(self.next_lsn))

    def truncate(self, upto: int) -> int:
        cur = self.segments[-1]
        if cur.records and cur.last <= upto:
            self.rotate()
        removed = 0
        while len(self.segments) > 1 and self.segments[0].last <= upto:
            self.segments.pop(0)
            removed += 1
        return removed

    def cut_tail(self, new_size: int) -> None:
        cur = self.segments[-1]
        pos = HEADER_SIZE
        kept = []
        for lsn, p in cur.records:
            end = pos + RECORD_HEADER_SIZE + len(p)
            if end > new_size:
                break
            kept.append((lsn, p))
            pos = end
        cur.records = kept
        cur.size = pos
        self.next_lsn = cur.last + 1

    def records(self) -> list[tuple[int, bytes]]:
        return [r for s in self.segments for r in s.records]


class WalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="walprop-"))
        self.model = Model()
        self.wal = WAL(self.dir, segment_bytes=SEGMENT_BYTES, durability="none")
        self.seed = 0

    def _payload(self, size: int) -> bytes:
        self.seed += 1
        return make_payload(self.seed, size)

    def _reopen(self, *, replay: bool) -> None:
        self.wal.close()
        self.wal = WAL(self.dir, segment_bytes=SEGMENT_BYTES, durability="none")
        if replay:
            got = [(r.lsn, r.payload) for r in self.wal.replay()]
            assert got == self.model.records()

    @rule(size=st.one_of(st.integers(0, 64), st.integers(0, 1500)))
    def append(self, size: int) -> None:
        p = self._payload(size)
        assert self.wal.append(p) == self.model.append(p)

    @rule(sizes=st.lists(st.integers(0, 400), max_size=6))
    def append_many(self, sizes: list[int]) -> None:
        ps = [self._payload(s) for s in sizes]
        assert self.wal.append_many(ps) == [self.model.append(p) for p in ps]

    @rule()
    def rotate(self) -> None:
        self.wal.rotate()
        self.model.rotate()

    @rule(back=st.integers(-3, 25))
    def truncate(self, back: int) -> None:
        upto = self.model.next_lsn - 1 - back
        assert self.wal.truncate(upto) == self.model.truncate(upto)

    @rule(replay=st.booleans())
    def reopen(self, replay: bool) -> None:
        self._reopen(replay=replay)

    @precondition(lambda self: self.model.segments[-1].records)
    @rule(cut=st.integers(1, 2000))
    def crash_with_torn_tail(self, cut: int) -> None:
        self.wal.close()
        path = self.dir / f"{self.model.segments[-1].first:020d}.wal"
        data = path.read_bytes()
        new_size = max(HEADER_SIZE, len(data) - cut)
        path.write_bytes(data[:new_size])
        self.model.cut_tail(new_size)
        self._reopen(replay=True)
        report = self.wal.last_replay
        assert report is not None
        assert report.truncated_bytes == new_size - self.model.segments[-1].size

    @rule(zeros=st.booleans(), n=st.integers(1, 300))
    def crash_with_junk_tail(self, zeros: bool, n: int) -> None:
        self.wal.close()
        path = self.dir / f"{self.model.segments[-1].first:020d}.wal"
        with path.open("ab") as f:
            f.write(bytes(n) if zeros else b"\xa5" * n)
        self._reopen(replay=True)
        report = self.wal.last_replay
        assert report is not None and report.truncated_bytes == n

    @invariant()
    def same_shape(self) -> None:
        assert self.wal.last_lsn == self.model.next_lsn - 1
        got = [(s.first_lsn, s.last_lsn, s.bytes) for s in self.wal.segments()]
        assert got == [(s.first, s.last, s.size) for s in self.model.segments]

    def teardown(self) -> None:
        try:
            self._reopen(replay=True)
            self.wal.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


TestWalStateMachine = WalMachine.TestCase
TestWalStateMachine.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
