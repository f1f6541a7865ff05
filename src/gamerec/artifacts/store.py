"""Atomic writes, staged stage directories, and the manifests that tie stages together.

A stage writes its whole output directory under a temporary name and swaps it in only when
everything succeeded, so a failed or interrupted run leaves the last good output untouched. The
swap is one atomic exchange of the two folders where the system has one (``renameat2`` with
``RENAME_EXCHANGE`` on Linux), so there is no moment without a readable stage; elsewhere it is
two renames, and a swap cut short between them is undone by the next reader or writer.
Every stage directory has a ``manifest.json``: format version, settings snapshot, fingerprints of
its inputs, and counts. A later stage checks the manifest of its inputs and refuses stale or
mismatched ones with an error naming the command to run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.atomic import atomic_write_json, current_umask, storage_errors
from gamerec.errors import ArtifactError

#: every stage folder's manifest
MANIFEST_FILE = "manifest.json"
#: bumped when any stage's on-disk format changes incompatibly
FORMAT_VERSION = 1

_STAGE_COMMANDS = {
    "processed": "gamerec preprocess",
    "model": "gamerec train",
    "index": "gamerec index",
    "eval": "gamerec eval",
}


_held_locks: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, depth)
_held_guard = threading.Lock()


@contextlib.contextmanager
def stage_lock(final: str | Path) -> Iterator[None]:
    """Hold the workspace lock of the stage directory ``final`` (re-entrant in one process).

    Two processes writing one stage (two ``gamerec train`` runs sharing ``.train-state/``,
    racing swaps) get an :class:`ArtifactError` at once instead of corrupting each other.
    """
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.with_name(f".{final.name}.lock")
    with _held_guard:
        held = _held_locks.get(lock_path)
        if held is not None:
            _held_locks[lock_path] = (held[0], held[1] + 1)
        else:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise ArtifactError(
                    f"another gamerec is writing {final} (it holds {lock_path}); wait for it "
                    "to finish, or stop it, then run this again"
                ) from None
            _held_locks[lock_path] = (descriptor, 1)
    try:
        yield
    finally:
        with _held_guard:
            descriptor, depth = _held_locks[lock_path]
            if depth > 1:
                _held_locks[lock_path] = (descriptor, depth - 1)
            else:
                del _held_locks[lock_path]
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                os.close(descriptor)


def _remove_stale_staging(final: Path) -> None:
    """Staging folders of a run killed before it could clean up (the stage lock is held)."""
    for stale in final.parent.glob(f".{final.name}.*.staging"):
        shutil.rmtree(stale, ignore_errors=True)


#: renameat2(2)'s flag that swaps two existing paths in one step, and "relative to the cwd"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: the renameat2 system call, for a C library too old to wrap it (glibc before 2.28)
_RENAMEAT2_SYSCALL = {"x86_64": 316, "aarch64": 276}
#: what renameat2 answers where the kernel or the filesystem cannot exchange
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    wrapped = getattr(libc, "renameat2", None)
    if wrapped is not None:
        return wrapped
    number = _RENAMEAT2_SYSCALL.get(platform.machine())
    if number is None or not hasattr(libc, "syscall"):
        return None
    return lambda *arguments: libc.syscall(number, *arguments)


_renameat2 = _load_renameat2()


def exchange_paths(first: str | Path, second: str | Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot (no change).

    Linux's ``renameat2(RENAME_EXCHANGE)`` (3.15+, on ext4, XFS, Btrfs, tmpfs and most local
    filesystems); any other OSError is raised.
    """
    if _renameat2 is None:
        return False
    done = _renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _backup_of(final: Path) -> Path:
    return final.with_name(final.name + ".old")


def _swap_in(staging: Path, final: Path) -> None:
    """Put ``staging`` at ``final`` (the stage lock held); the previous output is removed.

    One exchange where the system has it: ``final`` is the old folder, then the new one,
    never missing. Otherwise two renames (old aside, new in); a crash between them leaves the
    old output in ``<final>.old``, which :func:`restore_interrupted_swap` puts back.
    """
    backup = _backup_of(final)
    if backup.exists():
        shutil.rmtree(backup)
    if not final.exists():
        os.replace(staging, final)
    elif exchange_paths(staging, final):
        shutil.rmtree(staging, ignore_errors=True)  # the previous output, now at staging
    else:
        os.replace(final, backup)
        os.replace(staging, final)
        shutil.rmtree(backup, ignore_errors=True)


def restore_interrupted_swap(final: str | Path, wait_s: float = 2.0) -> bool:
    """Put back the output a two-rename swap left in ``<final>.old`` when it was cut short
    between its renames; True when ``final`` exists afterwards.

    Takes the stage lock; while another process holds it (a swap in progress) it waits up to
    ``wait_s`` for that swap to finish. Without the rights to take the lock, nothing changes.
    """
    final = Path(final)
    backup = _backup_of(final)
    deadline = time.monotonic() + wait_s
    while not final.exists() and backup.is_dir():
        try:
            with stage_lock(final):
                if not final.exists() and backup.is_dir():
                    os.replace(backup, final)
        except ArtifactError:  # another process is writing the stage: let it finish
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        except OSError:
            break
    return final.exists()


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty directory to fill; it replaces ``final`` only if the block succeeds.

    The swap never leaves a moment without ``final`` where the system can exchange two
    folders atomically (see :func:`_swap_in`), and an interrupted two-rename swap is undone
    first. The stage's lock is held throughout, and staging folders left by a killed run are
    removed first.
    """
    final = Path(final)
    with storage_errors(final), stage_lock(final):
        restore_interrupted_swap(final)
        _remove_stale_staging(final)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent)
        )
        try:
            yield staging
            # mkdtemp makes 0700 folders: a server running as another user could not read them
            os.chmod(staging, 0o777 & ~current_umask())
            _swap_in(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits are plenty to tell versions apart)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def write_manifest(
    directory: str | Path,
    stage: str,
    *,
    settings: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    counts: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` with fingerprints of every file already in ``directory``."""
    directory = Path(directory)
    files = {
        entry.name: fingerprint(entry)
        for entry in sorted(directory.iterdir())
        if entry.is_file() and entry.name != MANIFEST_FILE
    }
    manifest = {
        "stage": stage,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": dict(settings or {}),
        "inputs": dict(inputs or {}),
        "counts": dict(counts or {}),
        "files": files,
        **dict(extra or {}),
    }
    atomic_write_json(directory / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(directory: str | Path, stage: str, *, verify: bool = False) -> dict[str, Any]:
    """Read and check a stage's manifest; raise ArtifactError naming the command to run."""
    directory = Path(directory)
    command = _STAGE_COMMANDS.get(stage, f"gamerec {stage}")
    path = directory / MANIFEST_FILE
    if not path.is_file() and not directory.exists():
        restore_interrupted_swap(directory)
    if not path.is_file():
        raise ArtifactError(f"no {stage} output in {directory}; run `{command}` first")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); run `{command}` again") from None
    if not isinstance(manifest, dict) or manifest.get("stage") != stage:
        raise ArtifactError(f"{path} is not a {stage} manifest; run `{command}` again")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory} was written by an incompatible gamerec (format "
            f"{manifest.get('format_version')}, this version reads {FORMAT_VERSION}); "
            f"run `{command}` again"
        )
    if verify:
        for name, expected in manifest.get("files", {}).items():
            file = directory / name
            if not file.is_file() or fingerprint(file) != expected:
                raise ArtifactError(
                    f"{file} is missing or changed since it was written; run `{command}` again"
                )
    return manifest


def has_manifest(directory: str | Path) -> bool:
    """Whether a stage folder has been written (its manifest exists)."""
    return (Path(directory) / MANIFEST_FILE).is_file()


def check_array(path: Path, array: np.ndarray, expected: Any, *, owner: str, remedy: str) -> None:
    """Refuse ``array`` unless it has the shape and dtype ``owner``'s manifest lists for it
    (``expected``: ``{"shape": [...], "dtype": "..."}``); ``remedy`` says what to run."""
    if not isinstance(expected, dict):
        raise ArtifactError(f"{path} is not listed in the {owner}'s manifest; {remedy}")
    if list(array.shape) != list(expected.get("shape", [])) or str(array.dtype) != expected.get(
        "dtype"
    ):
        raise ArtifactError(
            f"{path} holds a {array.dtype} array of shape {tuple(array.shape)}, not what the "
            f"{owner}'s manifest lists ({expected.get('dtype')} "
            f"{tuple(expected.get('shape', []))}); {remedy}"
        )


def load_npz(
    path: Path, expected: Any, *, owner: str, remedy: str, skip: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` but those in ``skip`` (each member is read on access), each
    checked by :func:`check_array` against ``expected`` (name -> shape and dtype), which must
    name exactly the archive's arrays."""
    if not isinstance(expected, dict):
        raise ArtifactError(f"{path} is not listed in the {owner}'s manifest; {remedy}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            arrays = {name: archive[name] for name in names if name not in skip}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); {remedy}") from None
    if sorted(names) != sorted(expected):
        raise ArtifactError(f"{path} does not hold the arrays its manifest lists; {remedy}")
    for name, array in arrays.items():
        check_array(path, array, expected[name], owner=owner, remedy=remedy)
    return arrays
