"""Influx line protocol → normalised frames (one per metric), the same Arrow form as :mod:`tsdb_lake.schema`.

``measurement[,tag=value...] field=value[,field=value...] [timestamp]`` per line. Escapes: ``\\,`` and
``\\ `` in measurements; ``\\,``, ``\\=`` and ``\\ `` in tag keys, tag values and field keys; ``\\\\`` is a
backslash, a backslash before any other character is literal. Field values: floats (``1``, ``-1.5e3``),
integers (``1i``), unsigned (``1u``, must fit int64), booleans (``t``/``true``/``T``/``True``/``TRUE`` and
the ``f`` forms, stored as int64 0/1). Quoted string fields are rejected (numbers only). ``#`` comments and
blank lines are skipped. A missing timestamp takes ``default_time_ns`` (default: now).

A batch is all or nothing: every malformed line is collected and reported together in one
:class:`~tsdb_lake.errors.LineProtocolError` with 1-based line numbers.

Speed: lines without backslashes or quotes go through a vectorised pyarrow path (split, dictionary-encode the
series and field keys, cast values in bulk); the rest, and any line a bulk check flags, go through a
per-line Python parser that is the authority on the grammar and writes the error messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tsdb_lake.errors import (
    InvalidFrameError,
    InvalidNameError,
    LineProtocolError,
    RowError,
    WriteError,
)
from tsdb_lake.model import TIME_COLUMN, validate_label_value, validate_name
from tsdb_lake.schema import MAX_REPORTED_ROW_ERRORS, NormalizedFrame, normalize_columns

__all__ = ["Precision", "parse_lines"]

Precision = Literal["ns", "us", "ms", "s"]
_SCALE: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_TRUE = ("t", "T", "true", "True", "TRUE")
_FALSE = ("f", "F", "false", "False", "FALSE")
_BOOLS = {**dict.fromkeys(_TRUE, 1), **dict.fromkeys(_FALSE, 0)}
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RE = re.compile(r"-?[0-9]+")
_UINT_RE = re.compile(r"[0-9]+")

KIND_FLOAT = 0
KIND_INT = 1


class _LineError(Exception):
    """One line is malformed; carries the reason (internal to this module)."""


# --------------------------------------------------------------------------------------------- results


@dataclass
class _Parsed:
    """Accepted lines in long form: one entry per line and one per field value (parallel arrays/lists)."""

    line_idx: list[Any] = field(default_factory=list)  # 0-based line index of each accepted line
    series: list[Any] = field(default_factory=list)  # global series id of each line
    times: list[Any] = field(default_factory=list)  # int64 ns of each line
    kv_line: list[Any] = field(default_factory=list)  # 0-based line index of each field value
    kv_key: list[Any] = field(default_factory=list)  # global field-key id
    kv_kind: list[Any] = field(default_factory=list)  # KIND_FLOAT / KIND_INT
    kv_float: list[Any] = field(default_factory=list)
    kv_int: list[Any] = field(default_factory=list)


class _Registry:
    """Global ids for series (metric + tags) and field keys shared by both parsing paths."""

    def __init__(self) -> None:
        self.series_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.series: list[tuple[str, dict[str, str]]] = []
        self.key_ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.valid_names: set[tuple[str, str]] = set()

    def series_id(self, metric: str, tags: dict[str, str]) -> int:
        ident = (metric, tuple(sorted(tags.items())))
        sid = self.series_ids.get(ident)
        if sid is None:
            sid = self.series_ids[ident] = len(self.series)
            self.series.append((metric, tags))
        return sid

    def key_id(self, key: str) -> int:
        kid = self.key_ids.get(key)
        if kid is None:
            kid = self.key_ids[key] = len(self.keys)
            self.keys.append(key)
        return kid

    def check_name(self, kind: Literal["metric", "label", "field"], name: str) -> None:
        if (kind, name) in self.valid_names:
            return
        try:
            validate_name(kind, name)
        except InvalidNameError as exc:
            raise _LineError(exc.message) from None
        self.valid_names.add((kind, name))


# --------------------------------------------------------------------------------------------- public


def parse_lines(
    data: bytes | str,
    *,
    precision: Precision = "ns",
    default_time_ns: int | None = None,
) -> dict[str, NormalizedFrame]:
    """Parse a batch of line protocol into ``metric -> NormalizedFrame`` (rows in line order).

    Raises :class:`LineProtocolError` listing every bad line (1-based) if any line is malformed.
    """
    if precision not in _SCALE:
        raise InvalidFrameError(f"precision must be one of {sorted(_SCALE)}, got {precision!r}")
    scale = _SCALE[precision]
    default_ns = time.time_ns() if default_time_ns is None else int(default_time_ns)
    errors: list[RowError] = []
    raw = _to_utf8(data, errors)
    buf = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], newlines + 1]).astype(np.int64)
    ends = np.concatenate([newlines, [len(buf)]]).astype(np.int64)
    n_lines = len(starts)
    registry = _Registry()
    fast = _Parsed()
    slow_lines: list[np.ndarray] = []
    pa_buf = pa.py_buffer(raw)
    for lo in range(0, n_lines, _CHUNK_LINES):
        hi = min(n_lines, lo + _CHUNK_LINES)
        slow_lines.append(
            _fast_chunk(raw, buf, pa_buf, starts[lo:hi], ends[lo:hi], lo, registry, scale, default_ns, fast)
        )
    slow = _Parsed()
    for idx in np.concatenate(slow_lines).tolist():
        line = raw[starts[idx] : ends[idx]].decode("utf-8")
        try:
            _parse_line(line, idx, registry, scale, default_ns, slow)
        except _LineError as exc:
            errors.append(RowError(idx + 1, str(exc)))
    if errors:
        _raise(errors, n_lines)
    return _assemble(fast, slow, registry, n_lines)


# --------------------------------------------------------------------------------------------- decoding


def _to_utf8(data: bytes | str, errors: list[RowError]) -> bytes:
    """The batch as UTF-8 bytes; lines that are not valid UTF-8 are reported and blanked (line count kept)."""
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raw_lines = [line.encode("utf-8", "surrogatepass") for line in data.split("\n")]
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        try:
            raw.decode("utf-8")
            return raw
        except UnicodeDecodeError:
            raw_lines = raw.split(b"\n")
    else:
        raise InvalidFrameError(f"line protocol must be bytes or str, got {type(data).__name__}")
    for no, line in enumerate(raw_lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = line[exc.start : exc.start + 1]
            errors.append(RowError(no + 1, f"line is not valid UTF-8 (byte {exc.start}: {bad!r})"))
            raw_lines[no] = b""
    return b"\n".join(raw_lines)


# --------------------------------------------------------------------------------------------- slow path


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not preceded by an escaping backslash (escapes kept)."""
    parts: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str, specials: str) -> str:
    """Undo backslash escapes of ``specials`` and of the backslash itself; other backslashes are literal."""
    if "\\" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and (text[i + 1] in specials or text[i + 1] == "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_sections(line: str) -> tuple[str, str, str | None]:
    """Split a line into series, field set and timestamp at unescaped, unquoted spaces."""
    sections: list[str] = []
    start = i = 0
    n = len(line)
    quoted = False
    in_fields = False
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"' and in_fields:
            quoted = not quoted
        elif ch == " " and not quoted:
            sections.append(line[start:i])
            while i + 1 < n and line[i + 1] == " ":
                i += 1
            start = i + 1
            in_fields = len(sections) == 1
        i += 1
    if quoted:
        raise _LineError("unterminated quoted string")
    sections.append(line[start:])
    if len(sections) < 2 or not sections[1]:
        raise _LineError("missing field set (expected 'measurement[,tags] field=value [timestamp]')")
    if len(sections) > 3:
        raise _LineError("unexpected text after the timestamp (unescaped space?)")
    return sections[0], sections[1], sections[2] if len(sections) == 3 else None


def _parse_series(series: str, registry: _Registry) -> tuple[str, dict[str, str]]:
    parts = _split_unescaped(series, ",")
    metric = _unescape(parts[0], ", ")
    if not metric:
        raise _LineError("missing measurement name")
    registry.check_name("metric", metric)
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _split_unescaped(part, "=")
        if len(kv) != 2:
            raise _LineError(f"tag {part!r} is not key=value (escape '=' as '\\=')")
        key, value = _unescape(kv[0], ",= "), _unescape(kv[1], ",= ")
        if not key:
            raise _LineError("tag with an empty key")
        if not value:
            raise _LineError(f"tag {key!r} has an empty value")
        registry.check_name("label", key)
        try:
            validate_label_value(key, value)
        except InvalidNameError as exc:
            raise _LineError(exc.message) from None
        if key in tags:
            raise _LineError(f"tag {key!r} appears more than once")
        tags[key] = value
    return metric, tags


def _parse_value(key: str, text: str) -> tuple[int, float | int]:
    if not text:
        raise _LineError(f"field {key!r} has no value")
    if text[0] == '"':
        raise _LineError(f"field {key!r} is a string; only numeric and boolean fields are stored")
    if text in _BOOLS:
        return KIND_INT, _BOOLS[text]
    last = text[-1]
    if last in "iu":
        body = text[:-1]
        if not (_INT_RE if last == "i" else _UINT_RE).fullmatch(body):
            raise _LineError(
                f"field {key!r} value {text!r} is not a valid {'integer' if last == 'i' else 'unsigned'}"
            )
        value = int(body)
        if value > _INT64_MAX or value < _INT64_MIN:
            raise _LineError(f"field {key!r} value {text!r} does not fit in int64")
        return KIND_INT, value
    if not _FLOAT_RE.fullmatch(text):
        raise _LineError(f"field {key!r} value {text!r} is not a number (strings must be quoted)")
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _LineError(f"field {key!r} value {text!r} is out of the float64 range")
    return KIND_FLOAT, number


def _parse_time(text: str | None, scale: int, default_ns: int) -> int:
    if text is None:
        return default_ns
    if not _INT_RE.fullmatch(text):
        raise _LineError(f"timestamp {text!r} is not an integer")
    value = int(text) * scale
    if value > _INT64_MAX or value <= _INT64_MIN:
        raise _LineError(f"timestamp {text!r} is out of the int64 nanosecond range")
    return value


def _parse_line(line: str, idx: int, registry: _Registry, scale: int, default_ns: int, out: _Parsed) -> None:
    """Parse one line (any escapes) into ``out``; raise :class:`_LineError` if it is malformed."""
    line = line.strip(" \t\r")
    if not line or line.startswith("#"):
        return
    series, fields, ts = _split_sections(line)
    metric, tags = _parse_series(series, registry)
    values: list[tuple[int, int, float | int]] = []
    seen: set[str] = set()
    for part in _split_unescaped(fields, ","):
        kv = _split_unescaped(part, "=")
        if len(kv) < 2:
            raise _LineError(f"field {part!r} is not key=value")
        if len(kv) > 2 and not kv[1].startswith('"'):
            raise _LineError(f"field {part!r} has more than one '=' (escape it in keys as '\\=')")
        key = _unescape(kv[0], ",= ")
        if not key:
            raise _LineError("field with an empty key")
        registry.check_name("field", key)
        if key in seen:
            raise _LineError(f"field {key!r} appears more than once")
        seen.add(key)
        kind, value = _parse_value(key, "=".join(kv[1:]))
        values.append((registry.key_id(key), kind, value))
    timestamp = _parse_time(ts, scale, default_ns)
    out.line_idx.append(idx)
    out.series.append(registry.series_id(metric, tags))
    out.times.append(timestamp)
    for kid, kind, value in values:
        out.kv_line.append(idx)
        out.kv_key.append(kid)
        out.kv_kind.append(kind)
        out.kv_float.append(float(value) if kind == KIND_FLOAT else 0.0)
        out.kv_int.append(int(value) if kind == KIND_INT else 0)


# --------------------------------------------------------------------------------------------- fast path


_CHUNK_LINES = 1 << 17
_SP, _HASH, _TAB, _CR, _QUOTE, _BSLASH, _COMMA, _EQ = (ord(c) for c in ' #\t\r"\\,=')


def _np(arr: Any) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _segments(pa_buf: pa.Buffer, begin: np.ndarray, end: np.ndarray) -> Any:
    """The strings ``buffer[begin[i]:end[i]]`` (sorted, non-overlapping ranges) as a large_string array.

    A zero-copy array over the buffer partitions it at begin/end; its even elements are the wanted ones.
    """
    if not len(begin):
        return pa.array([], pa.large_string())
    bounds = np.empty(2 * len(begin), dtype=np.int64)
    bounds[0::2] = begin
    bounds[1::2] = end
    partition: Any = pa.LargeStringArray.from_buffers(
        len(bounds) - 1, pa.py_buffer(cast(Any, bounds)), pa_buf
    )
    return partition.take(pa.array(np.arange(0, len(bounds) - 1, 2, dtype=np.int64)))


def _line_of(positions: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Line number (index into ``starts``) of each sorted byte position at or after ``starts[0]``."""
    first = np.searchsorted(positions, starts, side="left")
    counts = np.diff(np.append(first, len(positions)))
    return np.repeat(np.arange(len(starts), dtype=np.int64), counts)


def _fast_chunk(
    raw: bytes,
    buf: np.ndarray,
    pa_buf: pa.Buffer,
    starts: np.ndarray,
    ends: np.ndarray,
    first_line: int,
    registry: _Registry,
    scale: int,
    default_ns: int,
    parsed: _Parsed,
) -> np.ndarray:
    """Parse lines without escapes or quotes in bulk into ``parsed``; return the line indices left for the
    per-line parser (escaped, quoted, odd whitespace, or flagged by any bulk check)."""
    n = len(starts)
    size = len(buf)
    ends = ends.copy()
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR)
    ends[cr] -= 1
    empty = ends == starts
    head = buf[np.minimum(starts, size - 1)]
    tail = buf[np.maximum(ends - 1, 0)]
    skip = empty | (head == _HASH)
    slow = ~skip & ((head == _SP) | (head == _TAB) | (tail == _SP) | (tail == _TAB))
    lo, hi = int(starts[0]), int(ends[-1])
    seg = buf[lo:hi]
    if any(raw.find(ch, lo, hi) >= 0 for ch in (b"\\", b'"', b"\t")):
        special = np.flatnonzero((seg == _BSLASH) | (seg == _QUOTE) | (seg == _TAB)) + lo
        slow[_line_of(special, starts)] = True
    slow &= ~skip
    bad = np.zeros(n, dtype=bool)

    # sections: exactly one or two spaces, none of the three sections empty
    spaces = np.flatnonzero(seg == _SP) + lo
    sp_line = _line_of(spaces, starts)
    n_sp = np.bincount(sp_line, minlength=n)
    first_sp = np.cumsum(n_sp) - n_sp
    last_sp = max(len(spaces) - 1, 0)
    sp_pad = spaces if len(spaces) else np.zeros(1, dtype=np.int64)
    sp1 = sp_pad[np.minimum(first_sp, last_sp)]
    sp2 = sp_pad[np.minimum(first_sp + 1, last_sp)]
    two = n_sp == 2
    fields_start = sp1 + 1
    fields_end = np.where(two, sp2, ends)
    bad |= (n_sp < 1) | (n_sp > 2)
    bad |= (sp1 <= starts) | (fields_end <= fields_start) | (two & (sp2 + 1 >= ends))
    ok = ~skip & ~slow & ~bad

    # field separators: in a field set they must alternate '=', ',', '=', ... '=' (odd count)
    seps = np.flatnonzero((seg == _EQ) | (seg == _COMMA)) + lo
    sep_line = _line_of(seps, starts)
    keep = ok[sep_line] & (seps >= fields_start[sep_line]) & (seps < fields_end[sep_line])
    seps, sep_line = seps[keep], sep_line[keep]
    is_eq = buf[seps] == _EQ
    per_line = np.bincount(sep_line, minlength=n)
    rank_in_line = np.arange(len(seps)) - (np.cumsum(per_line) - per_line)[sep_line]
    wrong = is_eq != (rank_in_line % 2 == 0)
    bad[sep_line[wrong]] = True
    bad |= ok & (per_line % 2 == 0)
    ok &= ~bad
    keep = ok[sep_line]
    seps, sep_line, is_eq = seps[keep], sep_line[keep], is_eq[keep]
    eqs, kv_line = seps[is_eq], sep_line[is_eq]
    commas = seps[~is_eq]
    ok_lines = np.flatnonzero(ok)
    kv_per_line = np.bincount(kv_line, minlength=n)
    line_rank = np.cumsum(ok) - 1  # rank of each ok line among ok lines
    kv_index = np.arange(len(eqs))
    j = kv_index - (np.cumsum(kv_per_line) - kv_per_line)[kv_line]
    rank = line_rank[kv_line]
    comma_pad = commas if len(commas) else np.zeros(1, dtype=np.int64)
    last_comma = max(len(commas) - 1, 0)
    key_start = np.where(
        j == 0, fields_start[kv_line], comma_pad[np.clip(kv_index - rank - 1, 0, last_comma)] + 1
    )
    is_last = j == kv_per_line[kv_line] - 1
    val_end = np.where(is_last, fields_end[kv_line], comma_pad[np.clip(kv_index - rank, 0, last_comma)])

    # series: parse each distinct series text once
    series_str = _segments(pa_buf, starts[ok_lines], sp1[ok_lines])
    enc: Any = pc.dictionary_encode(series_str)
    local_to_global = np.full(len(enc.dictionary), -1, dtype=np.int64)
    for i, text in enumerate(enc.dictionary.to_pylist()):
        try:
            metric, tags = _parse_series(text, registry)
        except _LineError:
            continue
        local_to_global[i] = registry.series_id(metric, tags)
    line_series = np.full(n, -1, dtype=np.int64)
    line_series[ok_lines] = local_to_global[_np(enc.indices).astype(np.int64)]
    bad |= ok & (line_series < 0)

    # field keys
    kenc: Any = pc.dictionary_encode(_segments(pa_buf, key_start, eqs))
    key_map = np.full(len(kenc.dictionary), -1, dtype=np.int64)
    for i, key in enumerate(kenc.dictionary.to_pylist()):
        try:
            registry.check_name("field", key)
        except _LineError:
            continue
        key_map[i] = registry.key_id(key)
    kv_key = key_map[_np(kenc.indices).astype(np.int64)]
    bad[kv_line[kv_key < 0]] = True

    # values
    vals = _segments(pa_buf, eqs + 1, val_end)
    nkv = len(vals)
    kind = np.full(nkv, KIND_FLOAT, dtype=np.int8)
    fvals = np.zeros(nkv, dtype=np.float64)
    ivals = np.zeros(nkv, dtype=np.int64)
    bad[kv_line[eqs + 1 >= val_end]] = True
    is_bool = _np(pc.is_in(vals, value_set=pa.array(list(_BOOLS))))
    is_int = ~is_bool & _np(pc.ends_with(vals, "i"))
    is_uint = ~is_bool & _np(pc.ends_with(vals, "u"))
    is_float = ~(is_bool | is_int | is_uint)
    if is_bool.any():
        sel = np.flatnonzero(is_bool)
        kind[sel] = KIND_INT
        ivals[sel] = _np(pc.is_in(vals.take(pa.array(sel)), value_set=pa.array(list(_TRUE)))).astype(np.int64)
    for mask, what in ((is_int, "i"), (is_uint, "u")):
        if mask.any():
            sel = np.flatnonzero(mask)
            body = _segments(pa_buf, eqs[sel] + 1, val_end[sel] - 1)
            ok_int, ints = _bulk_cast(body, pa.int64())
            if what == "u":
                ok_int &= ~_np(pc.starts_with(body, "-"))
            kind[sel] = KIND_INT
            ivals[sel] = ints
            bad[kv_line[sel[~ok_int]]] = True
    if is_float.any():
        sel = np.flatnonzero(is_float)
        ok_float, floats = _bulk_cast(vals.take(pa.array(sel)), pa.float64())
        ok_float &= np.isfinite(floats)
        fvals[sel] = floats
        bad[kv_line[sel[~ok_float]]] = True

    # timestamps
    times = np.full(n, default_ns, dtype=np.int64)
    with_ts = np.flatnonzero(ok & two)
    if len(with_ts):
        ok_ts, stamps = _bulk_cast(_segments(pa_buf, sp2[with_ts] + 1, ends[with_ts]), pa.int64())
        if scale != 1:
            lo_ok, hi_ok = -(2**63 // scale), _INT64_MAX // scale
            ok_ts &= (stamps >= lo_ok) & (stamps <= hi_ok)
            stamps = np.where(ok_ts, stamps, 0) * np.int64(scale)
        ok_ts &= stamps != _INT64_MIN
        times[with_ts] = stamps
        bad[with_ts[~ok_ts]] = True

    good = ok & ~bad
    good_lines = np.flatnonzero(good)
    parsed.line_idx.append(good_lines + first_line)
    parsed.series.append(line_series[good_lines])
    parsed.times.append(times[good_lines])
    kv_good = good[kv_line]
    parsed.kv_line.append(kv_line[kv_good] + first_line)
    parsed.kv_key.append(kv_key[kv_good])
    parsed.kv_kind.append(kind[kv_good])
    parsed.kv_float.append(fvals[kv_good])
    parsed.kv_int.append(ivals[kv_good])
    return np.flatnonzero(~skip & (slow | bad | ~ok)) + first_line


def _bulk_cast(strings: Any, target: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """Cast strings to ``target``; returns (ok mask, values) with 0 where a string does not parse."""
    try:
        values = _np(pc.cast(strings, target))
        return np.ones(len(values), dtype=bool), values
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    pattern = (
        r"^-?[0-9]{1,18}$" if target == pa.int64() else r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
    )
    ok = _np(pc.match_substring_regex(strings, pattern))
    values = np.zeros(len(strings), dtype=np.int64 if target == pa.int64() else np.float64)
    sel = np.flatnonzero(ok)
    if len(sel):
        values[sel] = _np(pc.cast(strings.take(pa.array(sel)), target))
    return ok, values  # strings the strict pattern refused go to the slow path, which decides exactly


# --------------------------------------------------------------------------------------------- assembly


def _concat(parts: Iterable[Any], dtype: type) -> np.ndarray:
    arrays: list[np.ndarray] = [np.asarray(p, dtype=dtype) for p in parts]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


def _group(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Positions of each code value, in original order (stable)."""
    if n_groups == 1:
        return [np.arange(len(codes))]
    small = codes.astype(np.uint16) if n_groups < 65536 else codes
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(small[order], np.arange(n_groups + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


def _assemble(fast: _Parsed, slow: _Parsed, registry: _Registry, n_lines: int) -> dict[str, NormalizedFrame]:
    line_idx = _concat([*fast.line_idx, slow.line_idx], np.int64)
    if not len(line_idx):
        return {}
    series = _concat([*fast.series, slow.series], np.int64)
    times = _concat([*fast.times, slow.times], np.int64)
    kv_line = _concat([*fast.kv_line, slow.kv_line], np.int64)
    kv_key = _concat([*fast.kv_key, slow.kv_key], np.int64)
    kv_kind = _concat([*fast.kv_kind, slow.kv_kind], np.int8)
    kv_float = _concat([*fast.kv_float, slow.kv_float], np.float64)
    kv_int = _concat([*fast.kv_int, slow.kv_int], np.int64)
    if slow.line_idx:  # restore line order across the two paths
        order = np.argsort(line_idx, kind="stable")
        line_idx, series, times = line_idx[order], series[order], times[order]
        korder = np.argsort(kv_line, kind="stable")
        kv_line, kv_key, kv_kind = kv_line[korder], kv_key[korder], kv_kind[korder]
        kv_float, kv_int = kv_float[korder], kv_int[korder]

    metric_names = sorted({metric for metric, _ in registry.series})
    metric_number = {name: i for i, name in enumerate(metric_names)}
    metric_of_series = np.array([metric_number[m] for m, _ in registry.series], dtype=np.int64)
    line_metric = metric_of_series[series]
    row_of_line = np.full(n_lines, -1, dtype=np.int64)
    metric_of_line = np.full(n_lines, -1, dtype=np.int64)
    metric_of_line[line_idx] = line_metric
    line_groups = _group(line_metric, len(metric_names))
    for positions in line_groups:
        row_of_line[line_idx[positions]] = np.arange(len(positions))
    kv_metric = metric_of_line[kv_line]
    n_keys = len(registry.keys)
    kv_groups = _group(kv_metric * n_keys + kv_key, len(metric_names) * n_keys)

    errors: list[RowError] = []
    frames: dict[str, NormalizedFrame] = {}
    for m, metric in enumerate(metric_names):
        positions = line_groups[m]
        if not len(positions):
            continue
        m_lines = line_idx[positions]
        m_series = series[positions]
        columns: list[tuple[object, Any]] = [(TIME_COLUMN, pa.array(times[positions]))]
        # labels: one small per-series table, expanded with take
        used, local = np.unique(m_series, return_inverse=True)
        label_keys = sorted({k for s in used.tolist() for k in registry.series[s][1]})
        take_idx: Any = pa.array(local.astype(np.int64))
        for key in label_keys:
            per_series = pa.array([registry.series[s][1].get(key) for s in used.tolist()], pa.string())
            columns.append((key, per_series.take(take_idx)))
        for k, key in enumerate(registry.keys):
            sel = kv_groups[m * n_keys + k]
            if not len(sel):
                continue
            rows = row_of_line[kv_line[sel]]
            kinds = kv_kind[sel]
            first_kind = kinds[0]
            conflict = np.flatnonzero(kinds != first_kind)
            if len(conflict):
                first_line = int(kv_line[sel[0]]) + 1
                have = "integer" if first_kind == KIND_INT else "float"
                other = "float" if first_kind == KIND_INT else "integer"
                for c in conflict[:MAX_REPORTED_ROW_ERRORS].tolist():
                    errors.append(
                        RowError(
                            int(kv_line[sel[c]]) + 1,
                            f"field {key!r} of {metric!r} is {other} here but {have} on line {first_line}",
                            key,
                        )
                    )
                continue
            if len(rows) > 1 and (np.diff(rows) == 0).any():
                for c in np.flatnonzero(np.diff(rows) == 0)[:MAX_REPORTED_ROW_ERRORS].tolist():
                    errors.append(
                        RowError(int(kv_line[sel[c]]) + 1, f"field {key!r} appears more than once", key)
                    )
                continue
            n_rows = len(positions)
            source = kv_int if first_kind == KIND_INT else kv_float
            if len(rows) == n_rows:
                values = source[sel]
                columns.append((key, pa.array(values)))
            else:
                values = np.zeros(n_rows, dtype=source.dtype)
                values[rows] = source[sel]
                mask = np.ones(n_rows, dtype=bool)
                mask[rows] = False
                columns.append((key, pa.array(values, mask=mask)))
        if errors:
            continue
        try:
            frames[metric] = normalize_columns(columns, metric=metric)
        except WriteError as exc:
            errors.extend(RowError(int(m_lines[r.row]) + 1, r.reason, r.column) for r in exc.rows)
    if errors:
        _raise(errors, n_lines)
    return frames


def _raise(errors: list[RowError], n_lines: int) -> None:
    rows = sorted(errors, key=lambda e: e.row)
    shown = rows[:MAX_REPORTED_ROW_ERRORS]
    suffix = f", showing {len(shown)}" if len(rows) > len(shown) else ""
    raise LineProtocolError(f"{len(rows)} of {n_lines} line(s) rejected{suffix}", shown)
