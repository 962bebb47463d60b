"""Codecs of tsdb-lake: timestamps (delta-of-delta), Gorilla XOR, adaptive floats, int64 — numba kernels.

numpy in, bytes out; no file or Arrow APIs. Bitstreams are specified in ``catalog/CODECS.md``.
"""

from tsdb_lake.codecs.api import (
    BlobsLike,
    blob_count,
    codec_id,
    decode_floats,
    decode_floats_many,
    decode_gorilla,
    decode_ints,
    decode_timestamps,
    decode_timestamps_many,
    decode_values,
    encode_floats,
    encode_gorilla,
    encode_ints,
    encode_timestamps,
    reduce_floats_many,
)
from tsdb_lake.codecs.batch import (
    decode_ints_many,
    encode_floats_many,
    encode_ints_many,
    encode_timestamps_many,
)
from tsdb_lake.codecs.ids import FLOAT_CODECS, FORMAT_VERSION, INT_CODECS, CodecId

__all__ = [
    "FLOAT_CODECS",
    "FORMAT_VERSION",
    "INT_CODECS",
    "BlobsLike",
    "CodecId",
    "blob_count",
    "codec_id",
    "decode_floats",
    "decode_floats_many",
    "decode_gorilla",
    "decode_ints",
    "decode_ints_many",
    "decode_timestamps",
    "decode_timestamps_many",
    "decode_values",
    "encode_floats",
    "encode_floats_many",
    "encode_gorilla",
    "encode_ints",
    "encode_ints_many",
    "encode_timestamps",
    "encode_timestamps_many",
    "reduce_floats_many",
]
