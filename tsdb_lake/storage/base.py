"""The object-store contract every backend implements.

Keys are ``/``-separated paths relative to the lake root (never starting with ``/``, never containing
``..``). Small objects (catalog entries) go through ``read_bytes`` / ``put_if_absent``; data files are read and
written by ``format/`` through the native :mod:`pyarrow.fs` filesystem returned by :meth:`Storage.arrow_fs`
(see the exit-abort note in ARCHITECTURE.md). This room knows nothing about tables, catalogs or queries.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from tsdb_lake.errors import BackendReadError, BackendWriteError, NotFoundError

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
        The call is idempotent: if the key already holds exactly ``data`` it returns True (on S3 a request
        whose response was lost is retried and meets its own object), so racing writers must send distinct
        payloads (a catalog entry carries its commit id).
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

    # -- data-file helpers (added by the storage room; concrete, built on arrow_fs / arrow_path) ----------

    def open_input_file(self, key: str) -> pa.NativeFile:
        """A native random-access file for reading ``key`` (hand it to ``pyarrow.parquet.ParquetFile``).

        Raises ``NotFoundError`` if absent, ``BackendReadError`` on backend failure.
        """
        path = self.arrow_path(key)
        try:
            return self.arrow_fs().open_input_file(path)
        except FileNotFoundError as exc:
            raise NotFoundError(f"object {key!r} not found in {self.uri}") from exc
        except OSError as exc:
            raise BackendReadError(f"cannot open {key!r} in {self.uri}: {exc}") from exc

    @contextlib.contextmanager
    def open_output(self, key: str) -> Iterator[pa.NativeFile]:
        """Write a (data) file with the native filesystem; the object appears complete or not at all.

        ``with storage.open_output(key) as sink: pq.write_table(table, sink)``. Parent folders are created
        as needed; on a local folder the file is written to a temp name, fsynced and renamed on success; on
        S3 the upload completes on close. If the block raises, nothing is left at ``key`` (best effort).
        Backend failures raise ``BackendWriteError``.
        """
        path = self.arrow_path(key)
        fs = self.arrow_fs()
        try:
            sink = fs.open_output_stream(path)
        except OSError as exc:
            raise BackendWriteError(f"cannot create {key!r} in {self.uri}: {exc}") from exc
        try:
            yield sink
        except BaseException:
            self._discard_output(sink, key)
            raise
        try:
            sink.close()
        except OSError as exc:
            self._discard_output(sink, key)
            raise BackendWriteError(f"cannot write {key!r} in {self.uri}: {exc}") from exc

    def _discard_output(self, sink: pa.NativeFile, key: str) -> None:
        """Best-effort cleanup of a failed :meth:`open_output`: close the stream, delete what it left."""
        with contextlib.suppress(OSError):
            if not sink.closed:
                sink.close()
        with contextlib.suppress(Exception):  # cleanup must not mask the original error
            self.delete([key])
