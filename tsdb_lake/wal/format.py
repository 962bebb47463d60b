"""WAL segment framing: the byte layout of segment headers and records, and a validating segment scanner.

Pure functions over bytes (no file handles), specified byte for byte in ``catalog/WAL.md``. All integers are
little-endian. A segment is a 22-byte header followed by records; a record is a 16-byte frame header
(u32 payload length, u32 CRC, u64 LSN) followed by the payload. The CRC is ``zlib.crc32`` (CRC-32/ISO-HDLC)
over ``u64 lsn || u32 length || payload``.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from tsdb_lake.errors import CorruptBlockError

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "RECORD_HEADER_SIZE",
    "SEGMENT_NAME_RE",
    "ScanResult",
    "encode_header",
    "find_valid_record_after",
    "frame_records",
    "parse_segment_name",
    "scan_segment",
    "segment_name",
]

MAGIC: Final = b"TSLWAL\x00\x01"
FORMAT_VERSION: Final = 1
_HEADER = struct.Struct("<8sHQ")  # magic, format_version, first_lsn; followed by u32 CRC of these 18 bytes
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE: Final = _HEADER.size + _HEADER_CRC.size  # 22
_RECORD = struct.Struct("<IIQ")  # payload length, crc, lsn
RECORD_HEADER_SIZE: Final = _RECORD.size  # 16
_CRC_PREFIX = struct.Struct("<QI")  # lsn, length: the bytes the CRC covers before the payload
#: A record longer than this is garbage, whatever the segment size the WAL was opened with.
MAX_RECORD_BYTES: Final = 1 << 30
SEGMENT_NAME_RE: Final = re.compile(r"^(\d{20})\.wal$")


def segment_name(first_lsn: int) -> str:
    """The file name of the segment whose first record has ``first_lsn``."""
    return f"{first_lsn:020d}.wal"


def parse_segment_name(name: str) -> int | None:
    """The first LSN encoded in a segment file name, or None if ``name`` is not a segment file."""
    m = SEGMENT_NAME_RE.match(name)
    return int(m.group(1)) if m else None


def encode_header(first_lsn: int) -> bytes:
    """The 22-byte segment header for a segment starting at ``first_lsn``."""
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, first_lsn)
    return head + _HEADER_CRC.pack(zlib.crc32(head))


def record_crc(lsn: int, payload: bytes | memoryview) -> int:
    """CRC-32 of ``u64 lsn || u32 len(payload) || payload``."""
    return zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(lsn, len(payload))))


#: Payloads at least this large are handed to ``writev`` as their own buffer instead of being copied.
_ZERO_COPY_BYTES: Final = 64 << 10


def frame_records(first_lsn: int, payloads: list[memoryview]) -> list[bytes | bytearray | memoryview]:
    """Frame ``payloads`` with consecutive LSNs from ``first_lsn``: the buffers to write, in order.

    Small records are packed into shared ``bytearray`` buffers (header and payload together); a large
    payload is not copied at all but returned as its own buffer after its 16-byte frame header, ready for
    one ``os.writev``. The concatenation of the buffers is the exact on-disk byte sequence.
    """
    parts: list[bytes | bytearray | memoryview] = []
    small = bytearray()
    lsn = first_lsn
    for mv in payloads:
        n = len(mv)
        head = _RECORD.pack(n, record_crc(lsn, mv), lsn)
        if n >= _ZERO_COPY_BYTES:
            small += head
            parts.append(small)
            parts.append(mv)
            small = bytearray()
        else:
            small += head
            small += mv
        lsn += 1
    if small:
        parts.append(small)
    return parts


@dataclass(frozen=True)
class ScanResult:
    """A validated segment: record spans ``(lsn, payload_start, payload_end)`` and where good data ends.

    ``torn`` is True when the last segment has an incomplete or corrupt tail (from ``good_end`` to the end
    of the data) that is followed by no valid record; ``torn_header`` when even the header is incomplete.
    """

    records: list[tuple[int, int, int]]
    good_end: int
    torn: bool
    torn_header: bool = False

    @property
    def next_lsn(self) -> int | None:
        """The LSN after the last record, or None when the segment holds no record."""
        return self.records[-1][0] + 1 if self.records else None


def _check_header(data: memoryview, path: str, first_lsn: int) -> None:
    magic, version, lsn = _HEADER.unpack_from(data, 0)
    (crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
    if magic != MAGIC:
        raise CorruptBlockError(f"WAL segment header has bad magic {bytes(magic)!r} at offset 0", path=path)
    if crc != zlib.crc32(data[: _HEADER.size]):
        raise CorruptBlockError("WAL segment header CRC mismatch at offset 0", path=path)
    if version != FORMAT_VERSION:
        raise CorruptBlockError(f"unsupported WAL format_version {version} at offset 8", path=path)
    if lsn != first_lsn:
        raise CorruptBlockError(
            f"WAL segment header first_lsn {lsn} does not match its file name ({first_lsn}) at offset 10",
            path=path,
        )


def scan_segment(data: bytes | memoryview, path: str, first_lsn: int, *, is_last: bool) -> ScanResult:
    """Validate one segment's bytes and return its record spans.

    Every record's CRC is checked and LSNs must run consecutively from ``first_lsn``. A problem in a
    segment that is not the last, a record with a valid CRC but the wrong LSN, or a bad record followed by
    a valid one raises :class:`CorruptBlockError` naming ``path`` and the byte offset. In the last segment,
    a bad record with nothing valid after it is a torn tail: reported through ``torn`` and ``good_end``.
    """
    mv = memoryview(data)
    size = len(mv)
    if size < HEADER_SIZE:
        if is_last:
            return ScanResult([], 0, torn=True, torn_header=True)
        raise CorruptBlockError(
            f"WAL segment is {size} bytes, shorter than its header, at offset 0", path=path
        )
    _check_header(mv, path, first_lsn)
    records: list[tuple[int, int, int]] = []
    pos = HEADER_SIZE
    expected = first_lsn
    unpack = _RECORD.unpack_from
    crc32 = zlib.crc32
    prefix = _CRC_PREFIX.pack
    while pos < size:
        problem: str
        if size - pos < RECORD_HEADER_SIZE:
            problem = f"incomplete record header ({size - pos} of {RECORD_HEADER_SIZE} bytes)"
        else:
            n, crc, lsn = unpack(mv, pos)
            start = pos + RECORD_HEADER_SIZE
            end = start + n
            if n > MAX_RECORD_BYTES:
                problem = f"absurd record length {n}"
            elif end > size:
                problem = f"record length {n} runs past the end of the segment ({size - start} bytes left)"
            elif crc != crc32(mv[start:end], crc32(prefix(lsn, n))):
                problem = f"record CRC mismatch (lsn field {lsn})"
            elif lsn != expected:
                raise CorruptBlockError(
                    f"WAL record has lsn {lsn} where {expected} was expected (LSN gap) at offset {pos}",
                    path=path,
                )
            else:
                records.append((lsn, start, end))
                pos = end
                expected += 1
                continue
        if not is_last:
            raise CorruptBlockError(
                f"WAL corruption in a sealed segment: {problem} at offset {pos}", path=path
            )
        later = find_valid_record_after(mv, pos, expected)
        if later is not None:
            raise CorruptBlockError(
                f"WAL corruption followed by valid records: {problem} at offset {pos}, "
                f"next valid record at offset {later}",
                path=path,
            )
        return ScanResult(records, pos, torn=True)
    return ScanResult(records, pos, torn=False)


def find_valid_record_after(data: bytes | memoryview, start: int, expected_lsn: int) -> int | None:
    """The offset of the first valid record after ``start`` (a bad record expected to hold ``expected_lsn``).

    Used to tell a torn tail (nothing valid follows) from corruption in the middle (valid data follows). A
    candidate at offset ``p`` with LSN ``L`` counts when ``expected_lsn <= L <= expected_lsn + (p - start)
    / 16`` (records are at least 16 bytes), its payload fits, what follows it is the end of the data, an
    incomplete record header, or a record header carrying ``L + 1``, and its CRC is correct. All but the
    CRC are checked vectorised (numpy), so the cost stays linear even when payloads hold small integers.
    """
    import numpy as np  # deferred: only needed when a segment has a bad record

    mv = memoryview(data)
    size = len(mv)
    if size - start <= RECORD_HEADER_SIZE:
        return None
    raw = np.frombuffer(mv, dtype=np.uint8)

    lanes = {
        (w, a): raw[a : a + (size - a) // w * w].view("<u8" if w == 8 else "<u4")
        for w in (4, 8)
        for a in range(w)
    }

    def gather(positions: np.ndarray, width: int) -> np.ndarray:
        """Little-endian u32 / u64 values at arbitrary byte offsets (each offset + width <= size)."""
        out = np.empty(len(positions), dtype=np.int64)
        rem = positions % width
        for a in range(width):
            sel = rem == a
            out[sel] = lanes[width, a][(positions[sel] - a) // width]
        return out

    hi = expected_lsn + (size - start) // RECORD_HEADER_SIZE
    found: list[np.ndarray] = []
    for align in range(8):
        # u64 values at byte offsets base, base+8, ...: the LSN field sits at record offset + 8.
        base = start + 1 + 8 + align
        count = (size - base) // 8
        if count <= 0:
            continue
        vals = raw[base : base + count * 8].view("<u8")
        hits = np.nonzero((vals >= expected_lsn) & (vals <= hi))[0]
        found.append(base - 8 + 8 * hits.astype(np.int64))
    if not found:
        return None
    pos = np.sort(np.concatenate(found))
    lsn = gather(pos + 8, 8)
    pos = pos[(lsn - expected_lsn) * RECORD_HEADER_SIZE <= pos - start]
    lengths = gather(pos, 4)
    ends = pos + RECORD_HEADER_SIZE + lengths
    fits = (lengths <= MAX_RECORD_BYTES) & (ends <= size)
    pos, ends = pos[fits], ends[fits]
    lsn = gather(pos + 8, 8)
    followed = ends + RECORD_HEADER_SIZE <= size
    next_lsn = np.zeros(len(pos), dtype=np.int64)
    if followed.any():
        next_lsn[followed] = gather(ends[followed] + 8, 8)
    chained = ~followed | (next_lsn == lsn + 1)
    for p in pos[chained].tolist():
        n, crc, got = _RECORD.unpack_from(mv, p)
        if crc == record_crc(got, mv[p + RECORD_HEADER_SIZE : p + RECORD_HEADER_SIZE + n]):
            return int(p)
    return None
