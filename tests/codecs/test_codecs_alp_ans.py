"""ALP_ANS (codec 7): a pure-Python decoder written from catalog/CODECS.md §9 agrees with the numba one."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from codec_strategies import SPECIAL_FLOAT_BITS, float_series
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake import codecs
from tsdb_lake.codecs import CodecId
from tsdb_lake.errors import CorruptBlockError

M64 = (1 << 64) - 1
WEIGHTS = [4096, 2896, 2048, 1448, 1024, 724, 512, 362, 256, 181, 128, 91, 64, 45, 32]


class Bits:
    """LSB-first bit reader over a blob (CODECS.md §1)."""

    def __init__(self, blob: bytes) -> None:
        self.v = int.from_bytes(blob, "little")
        self.total = 8 * len(blob)
        self.pos = 0

    def get(self, n: int) -> int:
        if self.pos + n > self.total:
            raise ValueError("truncated")
        out = (self.v >> self.pos) & ((1 << n) - 1)
        self.pos += n
        return out

    def varint(self) -> int:
        out = 0
        for k in range(10):
            b = self.get(8)
            out |= (b & 0x7F) << (7 * k)
            if b < 0x80:
                return out
        raise ValueError("varint")


def unzigzag(u: int) -> int:
    return ((u >> 1) ^ -(u & 1)) & M64


def pfor(r: Bits, m: int) -> list[int]:
    out: list[int] = []
    for s in range(0, m, 128):
        n = min(128, m - s)
        if r.get(1):
            out += [0] * n
            continue
        w, e = r.get(7), r.get(8)
        ew = r.get(6) + 1 if e else 0
        block = [r.get(w) for _ in range(n)]
        for _ in range(e):
            p, h = r.get(7), r.get(ew)
            block[p] |= h << w
        out += block
    return out


def reference_decode(blob: bytes) -> np.ndarray:
    """Decode an ALP_ANS blob following the spec text literally (big Python ints, no numba)."""
    r = Bits(blob)
    assert r.get(8) == 7
    n = r.varint()
    if n == 0:
        return np.zeros(0)
    x, c, mode = r.get(6), r.get(1), r.get(1)
    assert x <= 36
    e, f = (x, 0) if x <= 18 else (0, x - 18)
    m = n - 1 if mode == 0 else n
    toks: list[int] = []
    a = None
    b = None if mode == 0 else 0
    if m >= 1:
        k = r.get(4)
        big_k = k + 1 if k < 15 else 16 + r.get(7)
        assert big_k <= 136
        sym = r.get(1)
        ncodes = 1 + big_k // 2 if sym else big_k
        g = [r.get(4) for _ in range(ncodes)]
        codes = [g[(t + 1) // 2] if sym else g[t] for t in range(big_k)]
        present = [t for t in range(big_k) if codes[t] < 15]
        weight = sum(WEIGHTS[codes[t]] for t in present)
        freq = [
            1 + WEIGHTS[codes[t]] * (1024 - len(present)) // weight if codes[t] < 15 else 0
            for t in range(big_k)
        ]
        first = min(present, key=lambda t: (codes[t], t))
        freq[first] += 1024 - sum(freq)
        cum = [sum(freq[:t]) for t in range(big_k + 1)]
        carried, carried_b = r.get(1), r.get(1)
        state = [4096 + r.get(12), 4096 + r.get(12)]
        for j in range(m):
            x = state[j % 2]
            slot = x % 1024
            t = next(t for t in range(big_k) if cum[t] <= slot < cum[t] + freq[t])
            x = freq[t] * (x // 1024) + slot - cum[t]
            ell = 13 - x.bit_length()
            state[j % 2] = (x << ell) + r.get(ell)
            toks.append(t)
        if carried:
            a = unzigzag(state[0] - 4096)
        else:
            assert state[0] == 4096
        if carried_b:
            assert mode == 0
            b = unzigzag(state[1] - 4096)
        else:
            assert state[1] == 4096
    if a is None:
        a = unzigzag(r.varint())
    if b is None:
        b = unzigzag(r.varint())
    us = []
    for t in toks:
        if t < 16:
            us.append(t)
        else:
            j = t - 16
            h = 4 + j // 2
            us.append((2 + j % 2) * (1 << (h - 1)) + r.get(h - 1))
    if mode == 0:
        d = [a]
        for u in us:
            d.append((d[-1] + b + unzigzag(u)) & M64)
    else:
        d = [(a + u) & M64 for u in us]
    corr = pfor(r, n) if c else [0] * n
    assert (r.pos + 7) // 8 == len(blob)
    out = np.empty(n, np.uint64)
    for i in range(n):
        di = d[i] - (1 << 64) if d[i] >> 63 else d[i]
        y = float(di) * (10.0**f) / (10.0**e)
        bits = struct.unpack("<Q", struct.pack("<d", y))[0]
        out[i] = (bits + unzigzag(corr[i])) & M64
    return out.view(np.float64)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def tsbs_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """A TSBS cpu-style field: a clamped N(0, 1) random walk over [0, 100], truncated to integers."""
    x = rng.uniform(0, 100)
    out = np.empty(n)
    for i, step in enumerate(rng.normal(0, 1, n)):
        x = min(100.0, max(0.0, x + step))
        out[i] = x
    return np.trunc(out)


@settings(max_examples=120, deadline=None)
@given(float_series(max_size=300))
def test_round_trip_and_reference_decoder_agree(v: np.ndarray) -> None:
    blob = codecs.encode_floats(v, CodecId.ALP_ANS)
    assert codecs.codec_id(blob) is CodecId.ALP_ANS
    got = codecs.decode_floats(blob)
    assert same_bits(got, v)
    assert same_bits(reference_decode(blob), v)


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.0, 2.0, 2.0, 3.0]),
        np.array([5.0]),
        np.array([7.25] * 50),
        np.arange(300) * 1000.0 + 5,  # constant slope: DELTA with base b, all-zero residuals
        np.random.default_rng(1).integers(0, 1 << 40, 200).astype(np.float64),  # hybrid tokens, extra bits
        np.random.default_rng(2).integers(-(10**6), 10**6, 200) / 100,  # FOR or DELTA, e = 2
        np.array([3e12, -4e12, 1.5, -0.0, np.nan, np.inf] * 20),  # corrections and big anchors
        np.random.default_rng(3).normal(0, 1, 100),  # full doubles, all corrections
        np.array(SPECIAL_FLOAT_BITS * 2, dtype=np.uint64).view(np.float64),
        np.array([1e5, 2e5, 3e5, 7e5]),  # the factor exponent f
    ],
)
def test_examples_round_trip_through_both_decoders(values: np.ndarray) -> None:
    blob = codecs.encode_floats(values, CodecId.ALP_ANS)
    assert same_bits(codecs.decode_floats(blob), values)
    assert same_bits(reference_decode(blob), values)


def test_tsbs_walk_chunks_cost_near_their_entropy() -> None:
    rng = np.random.default_rng(7)
    total = 0
    bits = 0.0
    for _ in range(20):
        v = tsbs_walk(rng, 360)
        blob = codecs.encode_floats(v)
        assert codecs.codec_id(blob) is CodecId.ALP_ANS
        assert len(blob) < len(codecs.encode_floats(v, CodecId.ALP))
        assert same_bits(codecs.decode_floats(blob), v)
        total += len(blob)
        _, counts = np.unique(np.diff(v), return_counts=True)
        p = counts / counts.sum()
        bits += float(-(counts * np.log2(p)).sum())
    # within 3 bytes + 10 % of the empirical entropy of the deltas, per 360-value chunk
    assert total <= 1.10 * bits / 8 + 20 * 12
    assert total / (20 * 360) < 0.31


def test_anchor_is_carried_in_the_state_or_written_as_varint() -> None:
    small = codecs.encode_floats(np.array([3.0, 4.0, 4.0, 5.0, 5.0, 6.0] * 10), CodecId.ALP_ANS)
    big = codecs.encode_floats(np.array([3.0, 4.0, 4.0, 5.0, 5.0, 6.0] * 10) + 1e6, CodecId.ALP_ANS)
    assert len(big) > len(small)  # the large first value needs a varint
    assert same_bits(reference_decode(big), codecs.decode_floats(big))


def _body_patch(blob: bytes, bit: int, value: int, width: int) -> bytes:
    v = int.from_bytes(blob, "little")
    v &= ~(((1 << width) - 1) << bit)
    v |= value << bit
    return v.to_bytes(len(blob), "little")


def test_corrupt_fields_are_rejected() -> None:
    blob = codecs.encode_floats(np.array([1.0, 2.0, 2.0, 3.0]), CodecId.ALP_ANS)
    assert blob.hex(" ") == "07 04 00 01 64 aa 70 55 00"
    body = 16  # bit offset of the body (codec id + 1-byte count)
    with pytest.raises(CorruptBlockError):  # exponent field 37 > 36
        codecs.decode_floats(_body_patch(blob, body, 37, 6))
    with pytest.raises(CorruptBlockError):  # every code 15: no token present
        codecs.decode_floats(_body_patch(blob, body + 13, 0xFF, 8))
    with pytest.raises(CorruptBlockError):  # g = 0 but the final state is not 4096
        codecs.decode_floats(_body_patch(blob, body + 21, 0, 1))
    with pytest.raises(CorruptBlockError):  # h = 0 but the final state of coder 1 is not 4096
        codecs.decode_floats(_body_patch(blob, body + 22, 0, 1))
    with pytest.raises(CorruptBlockError):  # K = 16 + 127 > 136
        codecs.decode_floats(_body_patch(_body_patch(blob, body + 8, 15, 4), body + 12, 0x7F, 7))
    with pytest.raises(CorruptBlockError):
        codecs.decode_floats(blob[:-1])
    with pytest.raises(CorruptBlockError):
        codecs.decode_floats(blob + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.data())
def test_bit_flips_in_walk_blobs_never_crash(seed: int, n: int, data: st.DataObject) -> None:
    v = tsbs_walk(np.random.default_rng(seed), n)
    b = bytearray(codecs.encode_floats(v, CodecId.ALP_ANS))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(16, len(b) * 8 - 1))
        b[i // 8] ^= 1 << (i % 8)
    try:
        out = codecs.decode_floats(bytes(b))
    except CorruptBlockError:
        return
    assert out.shape[0] == codecs.blob_count(bytes(b))
