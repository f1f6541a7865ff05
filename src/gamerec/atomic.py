"""Atomic file writes: a file is either its old self or its new self, never half written.

A leaf module (the standard library and :mod:`gamerec.errors` only), so every layer that writes
files (fetching, training state, indexes, the workspace's stages) shares one implementation. A
full disk, the file size limit or a read-only folder becomes a
:class:`~gamerec.errors.StorageError` naming the file, with what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gamerec.errors import STORAGE_ERRNOS, StorageError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "current_umask",
    "storage_errors",
]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with storage_errors(path):
            try:
                yield tmp
            except Exception:
                # a library may report a failed write as its own error (torch.save: a
                # RuntimeError): a full disk or the file size limit is still the cause to say
                cause = _storage_cause(tmp, path)
                if cause is None:
                    raise
                raise cause from None
            # mkstemp makes 0600 files; a file written in place by open() would follow the umask
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _storage_cause(tmp: Path, path: Path) -> OSError | None:
    """The OSError a write to ``tmp`` (becoming ``path``) met, told from the file and the
    disk: it passed the file size limit (``ulimit -f``), or the disk is full. None when it is
    neither."""
    try:
        size = tmp.stat().st_size
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and size >= limit:
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
        disk = os.statvfs(tmp.parent)
        # root may write into the blocks reserved for it; others stop where they begin
        free = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail
        if free * disk.f_frsize < _FULL_BELOW_BYTES:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    except (OSError, AttributeError):
        pass
    return None


#: a disk with less free space than this is full (no file gamerec writes is smaller)
_FULL_BELOW_BYTES = 64 * 1024


@contextlib.contextmanager
def storage_errors(path: str | Path) -> Iterator[None]:
    """A full disk, the file size limit or a read-only folder while writing ``path``: a
    StorageError saying so (``path`` when the error names no file), not an OSError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise StorageError.from_os_error(exc, path) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def current_umask() -> int:
    # os.umask is the only portable way to read it; set it straight back
    current = os.umask(0o022)
    os.umask(current)
    return current
