"""open_storage dispatch and S3 storage_options normalisation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsdb_lake.errors import InvalidNameError, InvalidQueryError, NotFoundError
from tsdb_lake.storage import BACKENDS, LocalStorage, S3Storage, open_storage, parse_s3_options


def test_local_paths_and_file_uris(tmp_path: Path) -> None:
    a = open_storage(tmp_path / "lake")
    b = open_storage(str(tmp_path / "lake"))
    c = open_storage((tmp_path / "lake").as_uri())
    assert isinstance(a, LocalStorage) and isinstance(b, LocalStorage) and isinstance(c, LocalStorage)
    assert a.root == b.root == c.root == str(tmp_path / "lake")
    a.write_bytes("k", b"v")
    assert c.read_bytes("k") == b"v"
    rel = open_storage("relative/lake")
    assert isinstance(rel, LocalStorage) and rel.root == os.path.abspath("relative/lake")
    with pytest.raises(InvalidQueryError):
        open_storage(tmp_path, {"key": "x"})
    with pytest.raises(InvalidQueryError):
        open_storage("file://remotehost/lake")


def test_s3_uris() -> None:
    st = open_storage("s3://bucket/some/prefix/", {"endpoint_url": "http://127.0.0.1:1"})
    assert isinstance(st, S3Storage)
    assert (st.bucket, st.prefix, st.uri) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    assert st.arrow_path("a/b") == "bucket/some/prefix/a/b"
    bare = open_storage("s3a://bucket")
    assert isinstance(bare, S3Storage) and bare.prefix == "" and bare.arrow_path("k") == "bucket/k"
    with pytest.raises(InvalidQueryError):
        open_storage("s3:///no-bucket")
    with pytest.raises(InvalidNameError):
        open_storage("s3://bucket/../up")


def test_unknown_scheme_and_registry() -> None:
    with pytest.raises(NotFoundError, match="gs"):
        open_storage("gs://bucket/lake")
    with pytest.raises(InvalidQueryError):
        open_storage("")
    assert {"", "file", "s3", "s3a"} <= set(BACKENDS)


def test_option_spellings_normalise() -> None:
    spellings = [
        {"endpoint_url": "http://h:9000", "key": "K", "secret": "S", "region": "r", "token": "T"},
        {
            "endpoint": "http://h:9000/",
            "aws_access_key_id": "K",
            "aws_secret_access_key": "S",
            "region_name": "r",
            "session_token": "T",
        },
        {
            "aws_endpoint_url": "http://h:9000",
            "access_key_id": "K",
            "secret_access_key": "S",
            "aws_region": "r",
            "token": "T",
        },
        {
            "client_kwargs": {"endpoint_url": "http://h:9000", "region_name": "r"},
            "key": "K",
            "secret": "S",
            "token": "T",
        },
    ]
    parsed = [parse_s3_options(s) for s in spellings]
    for p in parsed:
        assert (p.endpoint_url, p.key, p.secret, p.region, p.token, p.anon) == (
            "http://h:9000",
            "K",
            "S",
            "r",
            "T",
            False,
        )
        assert dict(p.client_kwargs) == {}
    assert parse_s3_options({"endpoint": "minio.local:9000"}).endpoint_url == "https://minio.local:9000"
    assert parse_s3_options({"anon": "true"}).anon is True
    assert parse_s3_options(None) == parse_s3_options({})
    kept = parse_s3_options({"client_kwargs": {"verify": False}})
    assert dict(kept.client_kwargs) == {"verify": False}


def test_bad_options_are_typed_errors() -> None:
    with pytest.raises(InvalidQueryError, match="unknown"):
        parse_s3_options({"endpont_url": "http://x"})
    with pytest.raises(InvalidQueryError, match="twice"):
        parse_s3_options({"key": "a", "aws_access_key_id": "b"})
    with pytest.raises(InvalidQueryError):
        parse_s3_options({"endpoint_url": "ftp://x"})
    with pytest.raises(InvalidQueryError):
        parse_s3_options({"key": 3})
    assert parse_s3_options({"key": "a", "aws_access_key_id": "a"}).key == "a"  # same value twice is fine


@pytest.mark.s3
def test_alternative_spellings_reach_the_endpoint(s3_lake: tuple[str, dict[str, object]]) -> None:
    uri, options = s3_lake
    st = open_storage(
        uri,
        {
            "endpoint": options["endpoint_url"],
            "aws_access_key_id": options["key"],
            "aws_secret_access_key": options["secret"],
            "region_name": options["region"],
        },
    )
    st.write_bytes("k", b"v")
    assert open_storage(uri, options).read_bytes("k") == b"v"


@pytest.mark.s3
def test_credentials_fall_back_to_environment(s3_lake: tuple[str, dict[str, object]]) -> None:
    # The session fixture exports AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION.
    uri, options = s3_lake
    st = open_storage(uri, {"endpoint_url": options["endpoint_url"]})
    st.write_bytes("data/x", b"env")
    assert st.read_bytes("data/x") == b"env"
    with st.arrow_fs().open_input_stream(st.arrow_path("data/x")) as f:
        assert f.read() == b"env"


@pytest.mark.s3
def test_endpoint_falls_back_to_environment(
    s3_lake: tuple[str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = s3_lake
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(options["endpoint_url"]))
    st = open_storage(uri)  # endpoint, credentials and region all from AWS_* variables
    assert isinstance(st, S3Storage) and st.options.endpoint_url == options["endpoint_url"]
    st.write_bytes("k", b"env")
    info = st.arrow_fs().get_file_info(st.arrow_path("k"))
    assert info.size == 3
