"""Golden blobs from catalog/CODECS.md: pins the bitstream byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId

GOLDEN = [
    (
        lambda: codecs.encode_timestamps(np.array([1000, 2000, 3000])),
        "01 03 02 e8 03 00 00 00 00 00 00 d0 0f 01",
    ),
    (
        lambda: codecs.encode_gorilla(np.array([1.0, 1.0, 2.0, 3.0])),
        "03 04 00 00 00 00 00 00 f0 3f 0e cb ff 67 41",
    ),
    (
        lambda: codecs.encode_floats(np.array([1.5, 1.5, 1.5]), CodecId.RLE),
        "05 03 01 03 00 00 00 00 00 00 f8 3f",
    ),
    (lambda: codecs.encode_ints(np.array([7, 7, 7, 7])), "02 04 00 07 00 00 00 00 00 00 00 01"),
    (lambda: codecs.encode_floats(np.array([]), CodecId.RAW), "04 00"),
    (
        lambda: codecs.encode_floats(np.array([1.0, 2.0, 2.0, 3.0]), CodecId.ALP_ANS),
        "07 04 00 01 64 aa 70 55 00",
    ),
]


@pytest.mark.parametrize(("make", "hexed"), GOLDEN)
def test_golden_blob(make: object, hexed: str) -> None:
    blob = make()  # type: ignore[operator]
    assert blob.hex(" ") == hexed
    assert codecs.decode_values(bytes.fromhex(hexed)).shape[0] == codecs.blob_count(blob)


def test_spec_lists_every_codec_id() -> None:
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[2] / "catalog" / "CODECS.md").read_text(encoding="utf-8")
    assert f"`format_version` {codecs.FORMAT_VERSION}" in spec
    for cid in CodecId:
        assert f"| {int(cid)} | `{cid.name}` |" in spec
    for _, hexed in GOLDEN:
        assert hexed in spec


def test_gorilla_control_bits_by_hand() -> None:
    # 1.0, 1.0: after the 64 raw bits a single 0 bit; 1.0 -> 2.0 opens a window: '11', lead=1, len=11
    blob = codecs.encode_gorilla(np.array([1.0, 1.0, 2.0]))
    bits = int.from_bytes(blob[10:], "little")
    assert bits & 1 == 0
    assert (bits >> 1) & 1 == 1 and (bits >> 2) & 1 == 1
    assert (bits >> 3) & 31 == 1
    assert (bits >> 8) & 63 == 11
    assert (bits >> 14) & 0x7FF == 0x7FF
