"""Shared fixtures for the whole test suite.

Lakes:
- ``lake_target`` — parametrised ``["local", "s3"]``: a :class:`LakeTarget` (``uri``, ``storage_options``,
  ``kind``). A test taking it runs once on a fresh local folder and once on a fresh S3 bucket.
- ``storage`` — the same two targets, opened: ``open_storage(target.uri, target.storage_options)``.
- ``s3_lake`` — a fresh bucket on the local S3 endpoint: ``(uri, storage_options)`` with uri
  ``s3://<bucket>/lake``. ``s3_endpoint`` — the endpoint URL (``http://127.0.0.1:<port>``).

The S3 endpoint is a real HTTP server (moto's ``ThreadedMotoServer`` on a free port), started lazily the first
time a test needs it and stopped at the end of the session; while it runs, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` = ``testing`` and ``AWS_DEFAULT_REGION`` = ``us-east-1``. S3 parameters carry the
``s3`` marker (``-m "not s3"`` skips them). Hypothesis runs with the ``ci`` profile (no deadline).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

S3_REGION = "us-east-1"
S3_KEY = "testing"
S3_SECRET = "testing"


@dataclass(frozen=True)
class LakeTarget:
    """Where a test lake lives: ``uri`` and ``storage_options`` for ``connect`` / ``open_storage``."""

    uri: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    kind: str = "local"  # "local" or "s3"


def pytest_configure(config: pytest.Config) -> None:
    # The moto server logs every request through werkzeug; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Start a moto S3 server on 127.0.0.1 (free port) for the session; yield its URL."""
    from moto.server import ThreadedMotoServer

    env = pytest.MonkeyPatch()
    env.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    env.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    env.setenv("AWS_DEFAULT_REGION", S3_REGION)
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        env.undo()


def s3_storage_options(endpoint: str) -> dict[str, Any]:
    """The storage_options that reach the test endpoint."""
    return {"endpoint_url": endpoint, "key": S3_KEY, "secret": S3_SECRET, "region": S3_REGION}


@pytest.fixture
def s3_lake(s3_endpoint: str) -> tuple[str, dict[str, Any]]:
    """A fresh, empty bucket on the test endpoint: ``("s3://<bucket>/lake", storage_options)``."""
    import boto3

    bucket = f"tsdb-{uuid.uuid4().hex[:20]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    )
    client.create_bucket(Bucket=bucket)
    client.close()
    return f"s3://{bucket}/lake", s3_storage_options(s3_endpoint)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake_target(request: pytest.FixtureRequest, tmp_path: Path) -> LakeTarget:
    """A fresh lake location; parametrised over a local folder and an S3 bucket."""
    if request.param == "local":
        return LakeTarget(uri=str(tmp_path / "lake"), storage_options={}, kind="local")
    uri, options = request.getfixturevalue("s3_lake")
    return LakeTarget(uri=uri, storage_options=options, kind="s3")


@pytest.fixture
def storage(lake_target: LakeTarget) -> Any:
    """``open_storage`` on ``lake_target`` (both backends)."""
    from tsdb_lake.storage import open_storage

    return open_storage(lake_target.uri, lake_target.storage_options)
