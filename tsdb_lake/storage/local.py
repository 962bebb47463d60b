"""A lake root in a local folder: atomic writes by rename, exclusive create by hard link.

Every write goes to a temp file in the destination folder (``.<name>.tmp-<uuid>``, skipped by ``list`` and
ignored by Hive-style readers), is fsynced, and is then moved into place: ``os.replace`` for overwrites,
``os.link`` for :meth:`LocalStorage.put_if_absent` (which fails atomically if the key exists, so a reader
never sees a partial entry and exactly one racing writer wins). The folder is fsynced after each rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from tsdb_lake.errors import BackendReadError, BackendWriteError, NotFoundError
from tsdb_lake.storage.base import ObjectInfo, Storage
from tsdb_lake.storage.layout import is_temp_name, temp_name, validate_key, validate_prefix

__all__ = ["LocalStorage"]


def _fsync_dir(path: str) -> None:
    """Make a rename/link inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class LocalStorage(Storage):
    """A lake in the folder ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.uri = Path(self.root).as_uri()
        self._fs = pafs.LocalFileSystem()

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalStorage, (self.root,))

    # -- paths ----------------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def arrow_fs(self) -> pafs.FileSystem:
        """A :class:`pyarrow.fs.LocalFileSystem`; paths are absolute (see :meth:`arrow_path`)."""
        return self._fs

    def arrow_path(self, key: str) -> str:
        """The absolute path of ``key``."""
        return self._path(key)

    # -- small objects --------------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        """The whole object; ``NotFoundError`` if absent."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"object {key!r} not found in {self.uri}") from exc
        except IsADirectoryError as exc:
            raise NotFoundError(f"{key!r} is a folder, not an object, in {self.uri}") from exc
        except OSError as exc:
            raise BackendReadError(f"cannot read {key!r} in {self.uri}: {exc}") from exc

    def _write_temp(self, key: str, path: str, data: bytes) -> str:
        """Write ``data`` to a fsynced temp file beside ``path``; return the temp path."""
        folder, name = os.path.split(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise BackendWriteError(f"cannot create the folder of {key!r} in {self.uri}: {exc}") from exc
        tmp = os.path.join(folder, temp_name(name))
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            _remove_quietly(tmp)
            raise BackendWriteError(f"cannot write {key!r} in {self.uri}: {exc}") from exc
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or overwrite atomically (temp file, fsync, ``os.replace``, fsync folder)."""
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _remove_quietly(tmp)
            raise BackendWriteError(f"cannot write {key!r} in {self.uri}: {exc}") from exc
        _fsync_dir(os.path.dirname(path))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Exclusive create: a complete fsynced temp file is hard-linked to the key (atomic, fails if present).

        If the key exists, True only if it already holds exactly ``data`` (idempotent, as on S3).
        """
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            try:
                with open(path, "rb") as f:
                    return f.read() == data
            except OSError:
                return False
        except OSError as exc:
            raise BackendWriteError(f"cannot create {key!r} in {self.uri}: {exc}") from exc
        finally:
            _remove_quietly(tmp)
        _fsync_dir(os.path.dirname(path))
        return True

    def exists(self, key: str) -> bool:
        """Whether a file (not a folder) has this key."""
        return os.path.isfile(self._path(key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (plain string prefix, recursive), sorted by key."""
        validate_prefix(prefix)
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = os.path.join(self.root, *folder_key.split("/")) if folder_key else self.root
        out = [info for info in self._walk(top, folder_key) if info.key.startswith(prefix)]
        out.sort(key=lambda info: info.key)
        return out

    def _walk(self, folder: str, folder_key: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise BackendReadError(f"cannot list {folder_key!r} in {self.uri}: {exc}") from exc
        for entry in entries:
            key = f"{folder_key}/{entry.name}" if folder_key else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path, key)
                elif not is_temp_name(entry.name):
                    st = entry.stat()
                    yield ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)
            except FileNotFoundError:  # removed while listing
                continue

    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects; missing keys are ignored. Empty folders are left in place."""
        for key in keys:
            path = self._path(key)
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EISDIR, errno.EPERM) and os.path.isdir(path):
                    continue  # a folder is not an object
                raise BackendWriteError(f"cannot delete {key!r} in {self.uri}: {exc}") from exc

    # -- data files -----------------------------------------------------------------------------------

    @contextmanager
    def open_output(self, key: str) -> Iterator[pa.NativeFile]:
        """Write a data file to a temp name beside ``key``; fsync and rename it into place on success."""
        path = self._path(key)
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, temp_name(name))
        try:
            os.makedirs(folder, exist_ok=True)
            sink = self._fs.open_output_stream(tmp)
        except OSError as exc:
            raise BackendWriteError(f"cannot create {key!r} in {self.uri}: {exc}") from exc
        try:
            yield sink
        except BaseException:
            with contextlib.suppress(OSError):
                sink.close()
            _remove_quietly(tmp)
            raise
        try:
            sink.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            _remove_quietly(tmp)
            raise BackendWriteError(f"cannot write {key!r} in {self.uri}: {exc}") from exc
        _fsync_dir(folder)
