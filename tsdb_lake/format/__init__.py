"""Reading and writing the lake's data files (raw chunked files and rollup files); never the catalog."""

from tsdb_lake.format.raw import (
    FORMAT_VERSION,
    RawFileInfo,
    chunk_columns_for,
    decode_chunks,
    encode_chunks,
    read_chunks,
    write_raw_file,
)

__all__ = [
    "FORMAT_VERSION",
    "RawFileInfo",
    "chunk_columns_for",
    "decode_chunks",
    "encode_chunks",
    "read_chunks",
    "write_raw_file",
]
