"""Influx line protocol parsing (tsdb_lake.ingest.lineprotocol)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.datagen import generate_cpu_only, to_line_protocol
from tsdb_lake.errors import ErrorCode, InvalidFrameError, LineProtocolError
from tsdb_lake.ingest.lineprotocol import parse_lines
from tsdb_lake.schema import normalize_frame


def rows(data: bytes | str, metric: str = "cpu", **kw: Any) -> list[dict[str, Any]]:
    frames = parse_lines(data, **kw)
    return frames[metric].table.to_pylist()


def errors(data: bytes | str, **kw: Any) -> list[tuple[int, str]]:
    with pytest.raises(LineProtocolError) as info:
        parse_lines(data, **kw)
    assert info.value.code is ErrorCode.LINE_PROTOCOL
    return [(r.row, r.reason) for r in info.value.rows]


def test_basic_line_and_normal_form() -> None:
    frames = parse_lines(b"cpu,host=a,region=us usage=1.5,n=3i 1700000000000000000\n")
    nf = frames["cpu"]
    assert nf.labels == ("host", "region")
    assert nf.fields == {"n": "int64", "usage": "float64"}
    assert nf.table.schema.names == ["time", "host", "region", "n", "usage"]
    assert nf.table.to_pylist() == [
        {"time": 1700000000000000000, "host": "a", "region": "us", "n": 3, "usage": 1.5}
    ]


def test_matches_normalize_frame_of_same_data() -> None:
    frame = {"time": [1, 2], "host": ["a", None], "usage": [1.5, 2.0], "n": [3, None]}
    lp = b"cpu,host=a usage=1.5,n=3i 1\ncpu usage=2 2\n"
    assert parse_lines(lp)["cpu"].table.equals(normalize_frame(frame, metric="cpu").table)


def test_multiple_metrics_and_sparse_columns() -> None:
    frames = parse_lines("a,x=1 v=1 1\nb w=2i 2\na,y=2 u=3 3\n")
    assert set(frames) == {"a", "b"}
    assert frames["a"].table.to_pylist() == [
        {"time": 1, "x": "1", "y": None, "u": None, "v": 1.0},
        {"time": 3, "x": None, "y": "2", "u": 3.0, "v": None},
    ]
    assert frames["b"].table.to_pylist() == [{"time": 2, "w": 2}]


def test_comments_blank_lines_crlf_and_whitespace() -> None:
    data = b"# header\n\n   \ncpu v=1 1\r\n  cpu v=2 2  \n#cpu v=3 3\n\tcpu v=4 4\n"
    assert [r["v"] for r in rows(data)] == [1.0, 2.0, 4.0]
    assert parse_lines(b"# only comments\n\n") == {}
    assert parse_lines(b"") == {}


@pytest.mark.parametrize(
    ("line", "metric", "tags", "field"),
    [
        (r"my\ metric v=1 1", "my metric", {}, "v"),
        (r"cpu\,x v=1 1", "cpu,x", {}, "v"),
        (r"cpu,ho\ st=a v=1 1", "cpu", {"ho st": "a"}, "v"),
        (r"cpu,h=a\ b\,c\=d v=1 1", "cpu", {"h": "a b,c=d"}, "v"),
        (r"cpu,h=a\\ v=1 1", "cpu", {"h": "a\\"}, "v"),
        (r"cpu,h=a\b v=1 1", "cpu", {"h": "a\\b"}, "v"),
        (r"cpu,h=a\\\,b v=1 1", "cpu", {"h": "a\\,b"}, "v"),
        (r"cpu,h=x\=y v=1 1", "cpu", {"h": "x=y"}, "v"),
    ],
)
def test_escapes(line: str, metric: str, tags: dict[str, str], field: str) -> None:
    if " " in metric or "," in metric:  # escaped characters the naming rules refuse
        assert any("invalid" in reason for _, reason in errors(line))
        return
    if any(" " in k for k in tags):
        assert any("label name" in reason for _, reason in errors(line))
        return
    (row,) = rows(line, metric)
    assert {k: row[k] for k in tags} == tags
    assert row[field] == 1.0


def test_escaped_field_key_and_metric_with_equals() -> None:
    assert any("field name" in r for _, r in errors(r"cpu a\=b=1 1"))
    assert any("metric name" in r for _, r in errors("c=pu v=1 1"))


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("1", 1.0, "float64"),
        ("-1.5", -1.5, "float64"),
        ("+2.", 2.0, "float64"),
        (".5", 0.5, "float64"),
        ("1e3", 1000.0, "float64"),
        ("-1.5E-3", -0.0015, "float64"),
        ("1.7976931348623157e308", 1.7976931348623157e308, "float64"),
        ("42i", 42, "int64"),
        ("-42i", -42, "int64"),
        ("9223372036854775807i", 2**63 - 1, "int64"),
        ("-9223372036854775808i", -(2**63), "int64"),
        ("7u", 7, "int64"),
        ("9223372036854775807u", 2**63 - 1, "int64"),
        ("t", 1, "int64"),
        ("T", 1, "int64"),
        ("true", 1, "int64"),
        ("True", 1, "int64"),
        ("TRUE", 1, "int64"),
        ("f", 0, "int64"),
        ("F", 0, "int64"),
        ("false", 0, "int64"),
        ("False", 0, "int64"),
        ("FALSE", 0, "int64"),
    ],
)
def test_field_values(text: str, value: float, kind: str) -> None:
    for line in (f"cpu v={text} 1", f"cpu v={text} 1\t"):  # fast path, then the per-line parser
        frames = parse_lines(line)
        assert frames["cpu"].fields == {"v": kind}
        assert frames["cpu"].table.column("v").to_pylist() == [value]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"hello"', "string"),
        ('"a b,c=d"', "string"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("1e400", "float64 range"),
        ("abc", "not a number"),
        ("", "no value"),
        ("1.5i", "integer"),
        ("+5i", "integer"),
        ("9223372036854775808i", "int64"),
        ("-1u", "unsigned"),
        ("18446744073709551615u", "int64"),
        ("yes", "not a number"),
    ],
)
def test_bad_field_values(text: str, reason: str) -> None:
    for line in (f"cpu v={text} 1", f"cpu v={text} 1\t"):
        ((line_no, message),) = errors(line)
        assert line_no == 1
        assert reason in message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("cpu", "missing field set"),
        ("cpu ", "missing field set"),
        ("cpu,host=a", "missing field set"),
        (",host=a v=1", "missing measurement"),
        ("cpu,host v=1", "key=value"),
        ("cpu,host= v=1", "empty value"),
        ("cpu,=a v=1", "empty key"),
        ("cpu,h=a,h=b v=1", "more than once"),
        ("cpu v=1,v=2", "more than once"),
        ("cpu v", "key=value"),
        ("cpu =1", "empty key"),
        ("cpu v=1 12x", "not an integer"),
        ("cpu v=1 1 2", "unexpected text"),
        ("cpu v=1,", "key=value"),
        ("cpu a=1=2", "more than one"),
        ("cpu v=1 99999999999999999999", "range"),
        ('cpu s="unterminated 1', "unterminated"),
        ("cpu,h=a\x00 v=1", "NUL"),
        ("cpu time=1", "reserved"),
        ("cpu,time=x v=1", "reserved"),
    ],
)
def test_malformed_lines(line: str, reason: str) -> None:
    for variant in (line, line + "\t"):
        ((line_no, message),) = errors(variant)
        assert line_no == 1
        assert reason in message, message


def test_all_bad_lines_reported_with_line_numbers() -> None:
    data = b"cpu v=1 1\nbad\ncpu v=1 2\ncpu v=x 3\n# fine\ncpu v=2 4\ncpu,h= v=1 5\n"
    assert [n for n, _ in errors(data)] == [2, 4, 7]


def test_line_numbers_count_comments_and_blank_lines() -> None:
    assert [n for n, _ in errors(b"\n\n# c\n\ncpu v=1 1\nnope\n")] == [6]


def test_type_conflict_names_the_lines() -> None:
    result = errors(b"cpu v=1 1\ncpu v=2i 2\ncpu v=3 3\ncpu v=t 4\nmem v=5i 5\n")
    assert [n for n, _ in result] == [2, 4]
    assert "integer here but float on line 1" in result[0][1]


def test_non_utf8_lines() -> None:
    result = errors(b"cpu v=1 1\ncpu,h=\xff\xfe v=1 2\ncpu v=1 3\n\xc3 v=1\n")
    assert [n for n, _ in result] == [2, 4]
    assert "UTF-8" in result[0][1]


def test_precision_scaling_and_overflow() -> None:
    assert rows(b"cpu v=1 5", precision="s")[0]["time"] == 5_000_000_000
    assert rows(b"cpu v=1 5", precision="ms")[0]["time"] == 5_000_000
    assert rows(b"cpu v=1 5", precision="us")[0]["time"] == 5_000
    assert rows(b"cpu v=1 -5", precision="s")[0]["time"] == -5_000_000_000
    assert rows(b"cpu v=1 9223372036", precision="s")[0]["time"] == 9_223_372_036_000_000_000
    assert "range" in errors(b"cpu v=1 9223372037", precision="s")[0][1]
    assert "range" in errors(b"cpu v=1 -9223372037", precision="s")[0][1]
    assert "range" in errors(b"cpu v=1 -9223372036854775808")[0][1]
    with pytest.raises(InvalidFrameError):
        parse_lines(b"cpu v=1", precision="h")  # type: ignore[arg-type]


def test_missing_timestamp_uses_default_or_now() -> None:
    assert rows(b"cpu v=1", default_time_ns=42)[0]["time"] == 42
    import time

    before = time.time_ns()
    stamp = rows(b"cpu v=1\n")[0]["time"]
    assert before <= stamp <= time.time_ns()


def test_str_and_bytes_inputs_agree() -> None:
    text = "cpu,host=é v=1 1\n"
    assert parse_lines(text)["cpu"].table.equals(parse_lines(text.encode())["cpu"].table)
    with pytest.raises(InvalidFrameError):
        parse_lines(123)  # type: ignore[arg-type]


def test_tsbs_batch_equals_normalized_frame() -> None:
    table = generate_cpu_only(20, "2016-01-01", "2016-01-01T00:10")
    assert parse_lines(to_line_protocol(table))["cpu"].table.equals(
        normalize_frame(table, metric="cpu").table
    )


# ------------------------------------------------------------------------------------------- properties

_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"time", "tenant", "metric", "tier", "hour", "day", "month", "year"} and "__" not in s
)
_label_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\n\r"),
    min_size=1,
    max_size=8,
)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    label_keys = draw(st.lists(_names, max_size=3, unique=True))
    field_keys = draw(
        st.lists(_names.filter(lambda k: k not in label_keys), min_size=1, max_size=3, unique=True)
    )
    frame: dict[str, Any] = {
        "time": pa.array(
            draw(st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=n, max_size=n)), pa.int64()
        )
    }
    for key in label_keys:
        frame[key] = pa.array(draw(st.lists(st.none() | _label_values, min_size=n, max_size=n)), pa.string())
    for i, key in enumerate(field_keys):
        if draw(st.booleans()):
            values = draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
            if i == 0:
                values = [0 if v is None else v for v in values]  # every row needs one field
            frame[key] = pa.array(values, pa.int64())
        else:
            floats = st.floats(allow_nan=False, allow_infinity=False)
            values = draw(st.lists(st.none() | floats, min_size=n, max_size=n))
            if i == 0:
                values = [0.5 if v is None else v for v in values]
            frame[key] = pa.array(values, pa.float64())
    return frame


@settings(max_examples=150, deadline=None)
@given(frames())
def test_round_trip_through_line_protocol(frame: dict[str, Any]) -> None:
    expected = normalize_frame(frame, metric="m")
    data = to_line_protocol(pa.table(frame), metric="m")
    got = parse_lines(data)["m"]
    assert got.labels == expected.labels
    assert got.fields == expected.fields
    assert got.table.equals(expected.table)
    # the per-line parser agrees with the bulk path (a trailing tab forces every line onto it)
    slow = parse_lines(b"\n".join(line + b"\t" for line in data.split(b"\n") if line))["m"]
    assert slow.table.equals(expected.table)


_tokens = st.sampled_from(
    ["1", "-1", "+1", "1.", ".5", "-.5", "1e5", "1E+5", "1e-5", "1e", "e1", ".", "-", "+", "1i", "-1i",
     "+1i", "1u", "-1u", "i", "u", "t", "true", "TRUE", "tRUE", "nan", "inf", "-inf", "0x1", "1_0", "01",
     "1.5.5", "1e400", "99999999999999999999i", "9223372036854775808u", "", "é"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_tokens, min_size=1, max_size=4))
def test_bulk_and_per_line_parsers_agree_on_any_value(tokens: list[str]) -> None:
    lines = [f"cpu v={tok} {i}" for i, tok in enumerate(tokens)]

    def outcome(text: str) -> Any:
        try:
            nf = parse_lines(text)["cpu"]
            return [
                (v if not (isinstance(v, float) and math.isnan(v)) else "nan")
                for v in nf.table.column("v").to_pylist()
            ]
        except LineProtocolError as exc:
            return [(r.row, r.reason) for r in exc.rows]

    assert outcome("\n".join(lines)) == outcome("\n".join(line + "\t" for line in lines))


def test_bulk_parse_speed_smoke() -> None:
    table = generate_cpu_only(50, "2016-01-01", "2016-01-01T01:00")
    frames = parse_lines(to_line_protocol(table))
    assert frames["cpu"].num_rows == table.num_rows == 50 * 360
    assert np.array_equal(
        frames["cpu"].table.column("usage_user").to_numpy(), table.column("usage_user").to_numpy()
    )
