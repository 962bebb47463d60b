"""A lake root in an S3 (or S3-compatible: MinIO, R2, moto) bucket.

Small objects, listings and the exclusive put go through s3fs's aiobotocore client; data files go through a
native :class:`pyarrow.fs.S3FileSystem` (see the exit-abort note in ARCHITECTURE.md). ``put_if_absent`` is one
conditional ``PutObject`` with ``If-None-Match: *`` — the server decides, there is no check-then-put.
Both clients are created lazily, once per process (so a storage object survives fork and pickling).
``storage_options`` spellings are listed in ``infra/README.md``; AWS_* environment variables are the fallback.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from tsdb_lake.errors import BackendReadError, BackendWriteError, InvalidQueryError, NotFoundError
from tsdb_lake.storage.base import ObjectInfo, Storage
from tsdb_lake.storage.layout import validate_key, validate_prefix

__all__ = ["S3Options", "S3Storage", "parse_s3_options"]

#: Accepted spellings of each storage option (first is canonical).
_ALIASES: dict[str, tuple[str, ...]] = {
    "endpoint_url": ("endpoint_url", "endpoint", "aws_endpoint_url", "endpoint_override"),
    "key": ("key", "aws_access_key_id", "access_key_id", "access_key"),
    "secret": ("secret", "aws_secret_access_key", "secret_access_key", "secret_key"),
    "token": ("token", "session_token", "aws_session_token"),
    "region": ("region", "region_name", "aws_region", "aws_default_region"),
    "anon": ("anon", "anonymous"),
    "client_kwargs": ("client_kwargs",),
}
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})

T = TypeVar("T")


@dataclass(frozen=True)
class S3Options:
    """Normalised S3 connection settings (``None`` means: let the SDK use AWS_* env / config files)."""

    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    token: str | None = None
    region: str | None = None
    anon: bool = False
    client_kwargs: Mapping[str, Any] = field(default_factory=dict)


def parse_s3_options(storage_options: Mapping[str, Any] | None) -> S3Options:
    """Normalise user ``storage_options`` (several spellings per option) into :class:`S3Options`.

    Raises :class:`InvalidQueryError` for unknown keys or two spellings of one option with different values.
    """
    given = dict(storage_options or {})
    values: dict[str, Any] = {}
    for canonical, spellings in _ALIASES.items():
        found = {name: given.pop(name) for name in spellings if name in given}
        distinct = {repr(v) for v in found.values()}
        if len(distinct) > 1:
            raise InvalidQueryError(f"storage_options give {canonical} twice with different values: {found}")
        if found:
            values[canonical] = next(iter(found.values()))
    if given:
        known = ", ".join(name for spellings in _ALIASES.values() for name in spellings)
        raise InvalidQueryError(f"unknown storage_options {sorted(given)}; known options: {known}")
    client_kwargs = dict(values.pop("client_kwargs", None) or {})
    if "region" not in values and "region_name" in client_kwargs:
        values["region"] = client_kwargs["region_name"]
    if "endpoint_url" not in values and "endpoint_url" in client_kwargs:
        values["endpoint_url"] = client_kwargs["endpoint_url"]
    client_kwargs.pop("region_name", None)
    client_kwargs.pop("endpoint_url", None)
    for name in ("endpoint_url", "key", "secret", "token", "region"):
        v = values.get(name)
        if v is not None and not isinstance(v, str):
            raise InvalidQueryError(f"storage option {name} must be a string, got {type(v).__name__}")
    endpoint = values.get("endpoint_url")
    if endpoint is not None and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise InvalidQueryError(f"S3 endpoint {endpoint!r} must be an http:// or https:// URL")
    anon = values.get("anon", False)
    if isinstance(anon, str):
        anon = anon.strip().lower() in ("1", "true", "yes")
    return S3Options(
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        key=values.get("key"),
        secret=values.get("secret"),
        token=values.get("token"),
        region=values.get("region"),
        anon=bool(anon),
        client_kwargs=client_kwargs,
    )


def _error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (also when s3fs wrapped it), else ``""``."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, ClientError):
            return str(e.response.get("Error", {}).get("Code", ""))
    return ""


class S3Storage(Storage):
    """A lake at ``s3://bucket/prefix``. The bucket must exist; the prefix may be empty."""

    #: Keys per ``ListObjectsV2`` page (S3's maximum is 1000).
    list_page_size: int = 1000
    #: Keys per ``DeleteObjects`` request (S3's maximum is 1000).
    delete_batch_size: int = 1000

    def __init__(
        self, bucket: str, prefix: str = "", storage_options: Mapping[str, Any] | None = None
    ) -> None:
        if not bucket or "/" in bucket:
            raise InvalidQueryError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.storage_options = dict(storage_options or {})
        options = parse_s3_options(self.storage_options)
        env_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if options.endpoint_url is None and env_endpoint:
            # botocore honours these variables but pyarrow does not: resolve once, use for both clients.
            env_options = parse_s3_options({"endpoint_url": env_endpoint})
            options = dataclasses.replace(options, endpoint_url=env_options.endpoint_url)
        self.options = options
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._base = f"{bucket}/{prefix}" if prefix else bucket
        self._key_root = f"{prefix}/" if prefix else ""
        self._lock = threading.Lock()
        self._pid = -1
        self._s3fs: Any = None
        self._arrow: pafs.S3FileSystem | None = None

    def __repr__(self) -> str:
        return f"S3Storage({self.bucket!r}, {self.prefix!r}, endpoint={self.options.endpoint_url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (S3Storage, (self.bucket, self.prefix, self.storage_options))

    # -- clients (lazy, per process) ------------------------------------------------------------------

    def _reset_if_forked(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._s3fs = None
                    self._arrow = None
                    self._pid = os.getpid()

    @property
    def fs(self) -> Any:
        """The :class:`s3fs.S3FileSystem` (no listing cache; fsspec shares instances with equal options)."""
        self._reset_if_forked()
        if self._s3fs is None:
            with self._lock:
                if self._s3fs is None:
                    import s3fs

                    o = self.options
                    client_kwargs = dict(o.client_kwargs)
                    if o.region:
                        client_kwargs["region_name"] = o.region
                    self._s3fs = s3fs.S3FileSystem(
                        key=o.key,
                        secret=o.secret,
                        token=o.token,
                        anon=o.anon,
                        endpoint_url=o.endpoint_url,
                        client_kwargs=client_kwargs,
                        use_listings_cache=False,
                    )
        return self._s3fs

    def arrow_fs(self) -> pafs.FileSystem:
        """A native :class:`pyarrow.fs.S3FileSystem` for this endpoint (built once per process)."""
        self._reset_if_forked()
        if self._arrow is None:
            with self._lock:
                if self._arrow is None:
                    o = self.options
                    kwargs: dict[str, Any] = {"allow_bucket_creation": False, "allow_bucket_deletion": False}
                    if o.endpoint_url:
                        parts = urlsplit(o.endpoint_url)
                        kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
                        kwargs["scheme"] = parts.scheme
                    if o.anon:
                        kwargs["anonymous"] = True
                    elif o.key and o.secret:
                        kwargs.update(access_key=o.key, secret_key=o.secret)
                        if o.token:
                            kwargs["session_token"] = o.token
                    if o.region:
                        kwargs["region"] = o.region
                    self._arrow = pafs.S3FileSystem(**kwargs)
        return self._arrow

    def arrow_path(self, key: str) -> str:
        """``bucket/prefix/key``: the path of ``key`` inside :meth:`arrow_fs`."""
        return f"{self._base}/{validate_key(key)}"

    def _object_key(self, key: str) -> str:
        return self._key_root + validate_key(key)

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 API call through s3fs's client (retries transient errors; raises translated errors)."""
        return self.fs.call_s3(method, Bucket=self.bucket, **kwargs)

    def _run(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        """Run an async function on s3fs's event-loop thread and return its result."""
        from fsspec.asyn import sync

        result: T = sync(self.fs.loop, coro_fn)
        return result

    def _read_error(self, key: str, exc: BaseException) -> Exception:
        code = _error_code(exc)
        if code in _NO_BUCKET_CODES:
            return BackendReadError(
                f"bucket {self.bucket!r} does not exist (reading {key!r})", retryable=False
            )
        if isinstance(exc, FileNotFoundError) or code in _NOT_FOUND_CODES:
            return NotFoundError(f"object {key!r} not found in {self.uri}")
        if isinstance(exc, PermissionError) or code in _DENIED_CODES:
            return BackendReadError(f"access denied reading {key!r} in {self.uri}: {exc}", retryable=False)
        return BackendReadError(f"cannot read {key!r} in {self.uri}: {exc!r}")

    def _write_error(self, key: str, exc: BaseException) -> Exception:
        code = _error_code(exc)
        if code in _NO_BUCKET_CODES or (isinstance(exc, FileNotFoundError) and not code):
            return BackendWriteError(
                f"bucket {self.bucket!r} does not exist (writing {key!r})", retryable=False
            )
        if isinstance(exc, PermissionError) or code in _DENIED_CODES:
            return BackendWriteError(f"access denied writing {key!r} in {self.uri}: {exc}", retryable=False)
        return BackendWriteError(f"cannot write {key!r} in {self.uri}: {exc!r}")

    # -- small objects --------------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        """The whole object; ``NotFoundError`` if absent, ``BackendReadError`` on backend failure."""
        obj_key = self._object_key(key)
        fs = self.fs

        async def get() -> bytes:
            response = await fs._call_s3("get_object", Bucket=self.bucket, Key=obj_key)
            async with response["Body"] as stream:
                return bytes(await stream.read())

        try:
            return self._run(get)
        except (OSError, ClientError, BotoCoreError) as exc:
            raise self._read_error(key, exc) from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        """One ``PutObject`` (atomic on S3: readers see the old or the new object)."""
        obj_key = self._object_key(key)
        try:
            self._call("put_object", Key=obj_key, Body=bytes(data))
        except (OSError, ClientError, BotoCoreError) as exc:
            raise self._write_error(key, exc) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """One conditional ``PutObject`` with ``If-None-Match: *`` (no check-then-put).

        On ``412 Precondition Failed`` the object is read back: True if it holds exactly ``data``. This makes
        the call idempotent, which matters on S3 because a request whose response was lost is retried
        transparently (by aiohttp for idempotent PUTs, invisible even to botocore's ``RetryAttempts``) and
        the retry then meets the object the first attempt created.
        """
        obj_key = self._object_key(key)
        body = bytes(data)
        fs = self.fs

        async def put() -> bool:
            await fs.set_session()
            client = await fs.get_s3(self.bucket)
            try:
                await client.put_object(Bucket=self.bucket, Key=obj_key, Body=body, IfNoneMatch="*")
            except ClientError as exc:
                if _error_code(exc) not in _PRECONDITION_CODES:
                    raise
                got = await client.get_object(Bucket=self.bucket, Key=obj_key)
                async with got["Body"] as stream:
                    existing = await stream.read()
                return bool(existing == body)
            return True

        try:
            return self._run(put)
        except (OSError, ClientError, BotoCoreError) as exc:
            raise self._write_error(key, exc) from exc

    def exists(self, key: str) -> bool:
        """A ``HeadObject``: True if the object exists, False on 404; other failures raise."""
        obj_key = self._object_key(key)
        try:
            self._call("head_object", Key=obj_key)
        except (OSError, ClientError, BotoCoreError) as exc:
            err = self._read_error(key, exc)
            if isinstance(err, NotFoundError):
                return False
            raise err from exc
        return True

    def list(self, prefix: str) -> list[ObjectInfo]:
        """``ListObjectsV2`` over ``prefix`` (plain string prefix, recursive), sorted by key.

        Folder-marker objects (keys ending in ``/``) are skipped.
        """
        validate_prefix(prefix)
        full = self._key_root + prefix
        out: list[ObjectInfo] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"Prefix": full, "MaxKeys": self.list_page_size}
                if token:
                    kwargs["ContinuationToken"] = token
                page = self._call("list_objects_v2", **kwargs)
                for obj in page.get("Contents", []):
                    name = obj["Key"]
                    if name.endswith("/") or not name.startswith(self._key_root):
                        continue
                    out.append(
                        ObjectInfo(
                            key=name[len(self._key_root) :],
                            size=int(obj.get("Size", 0)),
                            mtime=obj["LastModified"].timestamp() if "LastModified" in obj else 0.0,
                        )
                    )
                if not page.get("IsTruncated"):
                    break
                token = page.get("NextContinuationToken")
        except (OSError, ClientError, BotoCoreError) as exc:
            err = self._read_error(prefix or "/", exc)
            if isinstance(err, NotFoundError):  # a missing bucket is a backend problem, not an empty list
                err = BackendReadError(f"cannot list {prefix!r} in {self.uri}: {exc!r}", retryable=False)
            raise err from exc
        out.sort(key=lambda info: info.key)
        return out

    def delete(self, keys: Iterable[str]) -> None:
        """``DeleteObjects`` in batches of 1000; missing keys are ignored."""
        obj_keys = [self._object_key(k) for k in keys]
        for i in range(0, len(obj_keys), self.delete_batch_size):
            batch = obj_keys[i : i + self.delete_batch_size]
            try:
                result = self._call(
                    "delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (OSError, ClientError, BotoCoreError) as exc:
                raise self._write_error(batch[0], exc) from exc
            errors = [e for e in result.get("Errors", []) if e.get("Code") not in _NOT_FOUND_CODES]
            if errors:
                first = errors[0]
                raise BackendWriteError(
                    f"cannot delete {first.get('Key')!r} in {self.uri}: {first.get('Code')} "
                    f"{first.get('Message', '')} ({len(errors)} keys failed)"
                )
