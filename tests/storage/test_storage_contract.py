"""The Storage contract, run on both backends (local folder and the S3 endpoint) via the ``storage`` fixture."""

from __future__ import annotations

import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tsdb_lake.errors import BackendWriteError, InvalidNameError, NotFoundError
from tsdb_lake.storage import LocalStorage, ObjectInfo, S3Storage, Storage, open_storage

BAD_KEYS = ["", "/abs", "a//b", "a/./b", "../x", "a/../b", "a/", "a\\b", "a/\x00b", "a/.b.tmp-" + "0" * 32]


def test_round_trip_and_overwrite(storage: Storage) -> None:
    payload = os.urandom(1 << 20)
    storage.write_bytes("x/blob.bin", payload)
    assert storage.read_bytes("x/blob.bin") == payload
    storage.write_bytes("x/blob.bin", b"second")
    assert storage.read_bytes("x/blob.bin") == b"second"
    storage.write_bytes("empty", b"")
    assert storage.read_bytes("empty") == b""
    assert storage.exists("empty")


def test_missing_objects(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        storage.read_bytes("nope/never.json")
    assert not storage.exists("nope/never.json")
    storage.write_bytes("dir/file", b"1")
    # A "folder" is not an object on either backend.
    assert not storage.exists("dir")
    with pytest.raises(NotFoundError):
        storage.read_bytes("dir")


def test_list_prefix_semantics(storage: Storage) -> None:
    keys = ["a/b/c", "a/bc", "a/b/d/e", "ab", "z", "_catalog/log/00000000000000000001.json"]
    for i, key in enumerate(keys):
        storage.write_bytes(key, b"x" * i)
    everything = storage.list("")
    assert [o.key for o in everything] == sorted(keys)
    assert {o.key: o.size for o in everything} == {k: i for i, k in enumerate(keys)}
    assert all(isinstance(o, ObjectInfo) and o.mtime > 0 for o in everything)
    assert [o.key for o in storage.list("a/b")] == ["a/b/c", "a/b/d/e", "a/bc"]
    assert [o.key for o in storage.list("a/b/")] == ["a/b/c", "a/b/d/e"]
    assert [o.key for o in storage.list("a")] == ["a/b/c", "a/b/d/e", "a/bc", "ab"]
    assert [o.key for o in storage.list("_catalog/log/0000")] == ["_catalog/log/00000000000000000001.json"]
    assert storage.list("missing/") == []
    assert storage.list("z/") == []


def test_delete(storage: Storage) -> None:
    storage.write_bytes("d/1", b"1")
    storage.write_bytes("d/2", b"2")
    storage.delete(["d/1", "d/never", "also/never"])
    assert [o.key for o in storage.list("d/")] == ["d/2"]
    storage.delete([])
    storage.delete(iter(["d/2"]))
    assert storage.list("") == []


def test_put_if_absent(storage: Storage) -> None:
    key = "_catalog/log/00000000000000000000.json"
    assert storage.put_if_absent(key, b"first") is True
    assert storage.put_if_absent(key, b"second") is False
    assert storage.put_if_absent(key, b"first") is True  # idempotent: the key holds exactly these bytes
    assert storage.read_bytes(key) == b"first"
    assert storage.put_if_absent("empty", b"") is True
    assert storage.put_if_absent("empty", b"x") is False
    assert storage.read_bytes("empty") == b""
    assert [o.key for o in storage.list("")] == ["_catalog/log/00000000000000000000.json", "empty"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_rejected(storage: Storage, key: str) -> None:
    for call in (
        lambda: storage.read_bytes(key),
        lambda: storage.write_bytes(key, b"x"),
        lambda: storage.put_if_absent(key, b"x"),
        lambda: storage.exists(key),
        lambda: storage.delete([key]),
        lambda: storage.arrow_path(key),
    ):
        with pytest.raises(InvalidNameError):
            call()
    assert storage.list("") == []


def test_invalid_prefixes_rejected(storage: Storage) -> None:
    for prefix in ["/", "/a", "../", "a/../", "a//"]:
        with pytest.raises(InvalidNameError):
            storage.list(prefix)


def test_parquet_through_arrow_fs(storage: Storage) -> None:
    table = pa.table({"time": pa.array(range(1000), pa.int64()), "v": pa.array([1.5] * 1000)})
    key = "data/tenant=t/metric=m/tier=raw/hour=2024-01-02T03/part-abc.parquet"
    with storage.open_output(key) as sink:
        pq.write_table(table, sink)
    assert pq.read_table(storage.arrow_path(key), filesystem=storage.arrow_fs()).equals(table)
    with storage.open_input_file(key) as f:
        assert pq.ParquetFile(f).read().equals(table)
    (info,) = storage.list("data/")
    assert info.key == key and info.size > 0
    # A file written directly through arrow_fs / arrow_path is listed too (parents exist now).
    key2 = key.replace("part-abc", "part-def")
    pq.write_table(table, storage.arrow_path(key2), filesystem=storage.arrow_fs())
    assert [o.key for o in storage.list("data/")] == sorted([key, key2])


def test_open_output_failure_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="boom"), storage.open_output("data/x/part-1.parquet") as sink:
        sink.write(b"partial")
        raise RuntimeError("boom")
    assert storage.list("") == []
    with pytest.raises(NotFoundError):
        storage.open_input_file("data/x/part-1.parquet")


def test_pickle_round_trip(storage: Storage) -> None:
    storage.write_bytes("k", b"v")
    clone = pickle.loads(pickle.dumps(storage))
    assert type(clone) is type(storage) and clone.uri == storage.uri
    assert clone.read_bytes("k") == b"v"


# -- backend specifics ------------------------------------------------------------------------------


def test_local_writes_leave_no_temp_files(tmp_path: str) -> None:
    root = os.path.join(tmp_path, "lake")
    st = open_storage(root)
    assert isinstance(st, LocalStorage) and st.uri.startswith("file://")
    st.write_bytes("a/b", b"1")
    st.put_if_absent("a/c", b"2")
    st.put_if_absent("a/c", b"3")
    with st.open_output("a/d.parquet") as sink:
        sink.write(b"x")
    assert sorted(os.listdir(os.path.join(root, "a"))) == ["b", "c", "d.parquet"]
    # A temp file left by a crash is invisible to list().
    with open(os.path.join(root, "a", ".e.tmp-" + "ab" * 16), "wb") as f:
        f.write(b"partial")
    assert [o.key for o in st.list("")] == ["a/b", "a/c", "a/d.parquet"]
    assert st.arrow_path("a/b") == os.path.join(root, "a", "b")


@pytest.mark.s3
def test_s3_prefixes_are_isolated(s3_lake: tuple[str, dict[str, object]]) -> None:
    uri, options = s3_lake
    a = open_storage(uri, options)
    b = open_storage(uri + "-other", options)
    root = open_storage(uri.rsplit("/", 1)[0], options)
    assert isinstance(a, S3Storage)
    a.write_bytes("k", b"a")
    b.write_bytes("k", b"b")
    assert [o.key for o in a.list("")] == ["k"]
    assert a.read_bytes("k") == b"a" and b.read_bytes("k") == b"b"
    assert [o.key for o in root.list("")] == ["lake-other/k", "lake/k"]
    assert a.arrow_path("x/y") == f"{a.bucket}/lake/x/y"
    assert a.arrow_fs() is a.arrow_fs()


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_backend_error(s3_lake: tuple[str, dict[str, object]]) -> None:
    _, options = s3_lake  # the endpoint's options; the bucket below does not exist
    st = open_storage("s3://no-such-bucket-tsdb/lake", options)
    with pytest.raises(BackendWriteError, match="no-such-bucket-tsdb") as info:
        st.write_bytes("k", b"1")
    assert info.value.retryable is False
    with pytest.raises(BackendWriteError):
        st.put_if_absent("k", b"1")


@pytest.mark.s3
def test_s3_list_and_delete_paginate(s3_lake: tuple[str, dict[str, object]]) -> None:
    st = open_storage(*s3_lake)
    assert isinstance(st, S3Storage)
    st.list_page_size = 7  # exercise continuation tokens and delete batches against the real endpoint
    st.delete_batch_size = 4
    keys = [f"p/{i:03d}" for i in range(30)]
    for k in keys:
        st.write_bytes(k, b".")
    st.write_bytes("q", b".")
    assert [o.key for o in st.list("p/")] == keys
    st.delete(keys)
    assert [o.key for o in st.list("")] == ["q"]
