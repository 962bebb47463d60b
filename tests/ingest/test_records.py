"""WAL payloads: version 2 (series-grouped) write and carry records round-trip, and damage is detected."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.errors import CorruptBlockError
from tsdb_lake.grouping import GROUP_COLUMN, GroupedBatch
from tsdb_lake.ingest.records import (
    decode_carry,
    decode_record,
    encode_carry,
    encode_carry_v1,
    encode_record,
    encode_record_v1,
    is_carry,
)
from tsdb_lake.schema import normalize_frame

LABEL_VALUES = st.sampled_from([None, "", "a", "host-000000000001", "ü" * 9, "x" * 17])


@st.composite
def frames(draw: st.DrawFn) -> dict[str, pa.Array]:
    """A frame with 0-3 labels (nulls allowed), one float and maybe one int field, 1-40 rows."""
    n = draw(st.integers(1, 40))
    cols: dict[str, pa.Array] = {
        "time": pa.array(draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)))
    }
    for name in draw(st.lists(st.sampled_from(["host", "dc", "rack"]), unique=True, max_size=3)):
        values = draw(st.lists(LABEL_VALUES, min_size=n, max_size=n))
        if all(v is None for v in values):
            values[0] = "only"
        cols[name] = pa.array(values, pa.string())
    cols["v"] = pa.array(draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)), pa.float64())
    if draw(st.booleans()):
        cols["n"] = pa.array(
            draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), pa.int64()
        )
    return cols


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (``Table.equals`` treats NaN as unequal)."""

    def rows(t: pa.Table) -> dict[str, list[object]]:
        return {k: ["NaN" if v != v else v for v in vs] for k, vs in t.to_pydict().items()}

    return a.schema == b.schema and rows(a) == rows(b)


def _batch(cols: dict[str, pa.Array]) -> tuple[pa.Table, GroupedBatch]:
    nf = normalize_frame(cols, metric="cpu")
    return nf.table, nf.batch


@settings(max_examples=120, deadline=None)
@given(frames(), st.sampled_from(["cpu", "m.ü-x", "a" * 300]))
def test_write_record_round_trips(cols: dict[str, pa.Array], metric: str) -> None:
    table, batch = _batch(cols)
    assert _same(batch.expand(), table)  # the grouped form holds exactly the frame's rows
    assert (
        batch.series.num_rows
        == len(set(zip(*(batch.series.column(c).to_pylist() for c in batch.labels), strict=True)))
        or not batch.labels
    )
    payload = encode_record(metric, batch)
    assert bytes(payload[:4]) == b"TSR2" and not is_carry(payload)
    name, decoded = decode_record(payload)
    assert name == metric
    assert decoded.series.equals(batch.series) and _same(decoded.points, batch.points)
    assert _same(decoded.expand(), table)


@settings(max_examples=60, deadline=None)
@given(st.lists(frames(), min_size=0, max_size=3), st.integers(0, 2**63))
def test_carry_record_round_trips(frame_list: list[dict[str, pa.Array]], covers: int) -> None:
    batches = [(f"m{i}", _batch(cols)[1]) for i, cols in enumerate(frame_list)]
    payload = encode_carry(covers, batches)
    assert bytes(payload[:4]) == b"TSC2" and is_carry(payload)
    got_covers, got = decode_carry(payload)
    assert got_covers == covers and [m for m, _ in got] == [m for m, _ in batches]
    for (_, a), (_, b) in zip(got, batches, strict=True):
        assert _same(a.expand(), b.expand())


@settings(max_examples=80, deadline=None)
@given(frames(), st.data())
def test_truncated_or_extended_records_are_detected(cols: dict[str, pa.Array], data: st.DataObject) -> None:
    _, batch = _batch(cols)
    for payload, decode in (
        (bytes(encode_record("cpu", batch)), decode_record),
        (bytes(encode_carry(7, [("cpu", batch), ("mem", batch)])), decode_carry),
    ):
        cut = data.draw(st.integers(0, len(payload) - 1))
        with pytest.raises(CorruptBlockError):
            decode(payload[:cut])
        with pytest.raises(CorruptBlockError):
            decode(payload + b"\x00")


def test_record_layout_is_as_specified() -> None:
    """catalog/WAL.md: magic, u16 name length, name, u32 S, u64 n_s, series stream, u64 n_p, points stream."""
    _, batch = _batch({"time": [3, 1, 2], "host": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
    payload = bytes(encode_record("cpu", batch))
    assert payload[:6] == b"TSR2" + struct.pack("<H", 3) and payload[6:9] == b"cpu"
    count, n_s = struct.unpack_from("<IQ", payload, 9)
    series = pa.ipc.open_stream(payload[21 : 21 + n_s]).read_all()
    (n_p,) = struct.unpack_from("<Q", payload, 21 + n_s)
    points = pa.ipc.open_stream(payload[29 + n_s :]).read_all()
    assert 29 + n_s + n_p == len(payload)
    assert count == 2 and series.to_pydict() == {"host": ["a", "b"]}
    assert points.column_names == ["time", GROUP_COLUMN, "v"]
    assert points.to_pydict() == {"time": [3, 1, 2], GROUP_COLUMN: [0, 1, 0], "v": [1.0, 2.0, 3.0]}


def test_group_index_outside_the_series_table_is_corrupt() -> None:
    _, batch = _batch({"time": [1, 2], "host": ["a", "b"], "v": [1.0, 2.0]})
    points = batch.points.set_column(1, GROUP_COLUMN, pa.array([0, 2], pa.int32()))
    with pytest.raises(CorruptBlockError, match="series it does not hold"):
        decode_record(encode_record("cpu", GroupedBatch(batch.series, points)))
    wrong_type = batch.points.set_column(1, GROUP_COLUMN, pa.array([0, 1], pa.int64()))
    with pytest.raises(CorruptBlockError, match="malformed"):
        decode_record(encode_record("cpu", GroupedBatch(batch.series, wrong_type)))


def test_batch_without_labels_keeps_its_single_series() -> None:
    table, batch = _batch({"time": [1, 2], "v": [1.0, 2.0]})
    assert batch.series.num_rows == 1 and batch.series.num_columns == 0
    _, decoded = decode_record(encode_record("cpu", batch))
    assert decoded.series.num_rows == 1 and _same(decoded.expand(), table)


@settings(max_examples=40, deadline=None)
@given(frames())
def test_version_1_records_still_decode(cols: dict[str, pa.Array]) -> None:
    table, _ = _batch(cols)
    name, batch = decode_record(encode_record_v1("cpu", table))
    assert name == "cpu" and _same(batch.expand(), table)
    covers, got = decode_carry(encode_carry_v1(5, [("cpu", table)]))
    assert covers == 5 and _same(got[0][1].expand(), table)
