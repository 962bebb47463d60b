"""Real data: every NAB series round-trips bit for bit through every codec, chunked like the store."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
FILES = sorted(NAB.glob("*.csv"))


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ts = np.array([r["timestamp"].replace(" ", "T") for r in rows], dtype="datetime64[ns]").view(np.int64)
    return ts, np.array([float(r["value"]) for r in rows])


@pytest.mark.skipif(not FILES, reason="NAB data not present")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_nab_series_round_trip(path: Path) -> None:
    ts, vals = _load(path)
    tblobs, fblobs = [], []
    for s in range(0, len(ts), 4096):
        t, v = ts[s : s + 4096], vals[s : s + 4096]
        tblobs.append(codecs.encode_timestamps(t))
        fblobs.append(codecs.encode_floats(v))
        assert np.array_equal(codecs.decode_timestamps(tblobs[-1]), t)
        g = codecs.encode_gorilla(v)
        assert np.array_equal(codecs.decode_gorilla(g).view(np.uint64), v.view(np.uint64))
        a = codecs.encode_floats(v, CodecId.ALP)
        assert np.array_equal(codecs.decode_floats(a).view(np.uint64), v.view(np.uint64))
        assert len(fblobs[-1]) <= len(g)
    got_t, _ = codecs.decode_timestamps_many(tblobs)
    got_v, counts = codecs.decode_floats_many(fblobs, parallel=False)
    assert np.array_equal(got_t, ts)
    assert np.array_equal(got_v.view(np.uint64), vals.view(np.uint64))
    assert counts.sum() == len(vals)
    # real series compress well below raw doubles
    assert sum(map(len, fblobs)) < 0.6 * 8 * len(vals)
