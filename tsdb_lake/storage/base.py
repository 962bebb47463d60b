"""The object-store contract every backend implements.

Keys are ``/``-separated paths relative to the lake root (never starting with ``/``, never containing
``..``). Small objects (catalog entries) go through ``read_bytes`` / ``put_if_absent``; data files are read and
written by ``format/`` through the native :mod:`pyarrow.fs` filesystem returned by :meth:`Storage.arrow_fs`
(see the exit-abort note in ARCHITECTURE.md). This room knows nothing about tables, catalogs or queries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.fs as pafs

__all__ = ["ObjectInfo", "Storage"]


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key relative to the lake root, size in bytes and modification time (epoch s)."""

    key: str
    size: int
    mtime: float


class Storage(ABC):
    """A lake root on some object store. Implementations: local folder, S3 (and S3-compatible)."""

    #: The URI the storage was opened with, e.g. ``file:///tmp/lake`` or ``s3://bucket/prefix``.
    uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object; raises ``NotFoundError`` if absent, ``BackendReadError`` on backend failure."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or overwrite an object atomically (readers see the old or the new bytes, never a mix)."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has the key; True if created, False if it already existed.

        This is the commit primitive of the catalog: exactly one of several racing writers gets True.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object has this key."""

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursively), sorted by key."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects; keys that do not exist are ignored."""

    @abstractmethod
    def arrow_fs(self) -> pafs.FileSystem:
        """The native pyarrow filesystem used for data-file I/O."""

    @abstractmethod
    def arrow_path(self, key: str) -> str:
        """The path of ``key`` inside :meth:`arrow_fs`."""
