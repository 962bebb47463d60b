"""Small local-filesystem durability helpers for the WAL: fsync of files and directories, atomic creation.

Everything here works on a local POSIX directory; object storage is never involved.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from tsdb_lake.errors import CorruptBlockError

__all__ = ["WRITER_ID_FILE", "create_file_atomically", "fdatasync", "fsync_dir", "wal_writer_id"]

WRITER_ID_FILE = "WRITER_ID"


def fdatasync(fd: int) -> None:
    """Flush a file's data (and the size needed to read it back) to stable storage."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make creations, renames and removals of entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file_atomically(path: Path, data: bytes, *, overwrite: bool) -> bool:
    """Write ``data`` to ``path`` so that readers see either nothing or all of it.

    Writes a temporary file, fsyncs it, then publishes it under ``path`` and fsyncs the directory. With
    ``overwrite=False`` the publication is a hard link, which fails if ``path`` already exists: then nothing
    changes and False is returned (another process won the race). Returns True when ``path`` now holds
    ``data``.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return True


def _read_writer_id(path: Path) -> str:
    text = path.read_bytes().decode("ascii", errors="replace").strip()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise CorruptBlockError(
            f"WAL writer id file does not hold a 32-digit hex id: {text[:40]!r}", path=str(path)
        )
    return text


def wal_writer_id(directory: str | os.PathLike[str]) -> str:
    """The stable identity of the writer owning the WAL in ``directory`` (uuid4 hex), created on first use.

    The id lives in ``WRITER_ID`` and is created atomically (temporary file, fsync, link, directory fsync);
    concurrent first calls agree on one id. The ingest layer keys its "highest LSN committed" by this id, so
    the id and the WAL's LSN sequence belong together: delete the whole directory, never only its segments.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    path = root / WRITER_ID_FILE
    if path.exists():
        return _read_writer_id(path)
    candidate = uuid.uuid4().hex
    if create_file_atomically(path, (candidate + "\n").encode("ascii"), overwrite=False):
        return candidate
    return _read_writer_id(path)
