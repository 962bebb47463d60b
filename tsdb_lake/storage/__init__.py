"""The object-store layer: backends, every object key (``layout``), and :func:`open_storage`.

``open_storage("./lake")`` or ``open_storage("file:///abs/lake")`` gives a :class:`LocalStorage`;
``open_storage("s3://bucket/prefix", storage_options={...})`` gives an :class:`S3Storage`. Backends register
a factory per URI scheme in :data:`BACKENDS`, so more can be added without touching callers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from tsdb_lake.errors import InvalidQueryError, NotFoundError
from tsdb_lake.storage.base import ObjectInfo, Storage
from tsdb_lake.storage.local import LocalStorage
from tsdb_lake.storage.s3 import S3Options, S3Storage, parse_s3_options

__all__ = [
    "BACKENDS",
    "LocalStorage",
    "ObjectInfo",
    "S3Options",
    "S3Storage",
    "Storage",
    "open_storage",
    "parse_s3_options",
]

StorageFactory = Callable[[str, Mapping[str, Any]], Storage]


def _open_local(uri: str, storage_options: Mapping[str, Any]) -> Storage:
    if storage_options:
        raise InvalidQueryError(
            f"a local lake takes no storage_options, got {sorted(storage_options)} for {uri!r}"
        )
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise InvalidQueryError(f"file URI {uri!r} names a remote host; use file:///absolute/path")
        path = unquote(parts.path)
        if not path:
            raise InvalidQueryError(f"file URI {uri!r} has no path")
        return LocalStorage(path)
    return LocalStorage(os.path.expanduser(uri))


def _open_s3(uri: str, storage_options: Mapping[str, Any]) -> Storage:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise InvalidQueryError(f"S3 URI {uri!r} has no bucket; use s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise InvalidQueryError(f"S3 URI {uri!r} must not have a query or fragment; use storage_options")
    return S3Storage(parts.netloc, unquote(parts.path).strip("/"), storage_options)


#: URI scheme -> factory. ``""`` is a plain local path.
BACKENDS: dict[str, StorageFactory] = {
    "": _open_local,
    "file": _open_local,
    "s3": _open_s3,
    "s3a": _open_s3,
}


def _scheme(uri: str) -> str:
    head, sep, _ = uri.partition("://")
    if sep:
        return head.lower()
    if uri.startswith("file:"):
        return "file"
    return ""


def open_storage(uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Storage:
    """Open the lake root at ``uri``: a local path, ``file://`` URI, or ``s3://bucket/prefix`` (``s3a://``).

    Raises :class:`NotFoundError` for a scheme no backend handles, :class:`InvalidQueryError` for a
    malformed URI or storage options.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise InvalidQueryError(f"lake URI must be a non-empty path or URL, got {uri!r}")
    scheme = _scheme(text)
    factory = BACKENDS.get(scheme)
    if factory is None:
        raise NotFoundError(f"no storage backend for scheme {scheme!r}; use a local path or s3://")
    return factory(text, dict(storage_options or {}))
