"""Every failure a user can cause or meet, as one exception hierarchy.

Each message says what went wrong *and what to do next*; the CLI prints it as
``Error: <message>`` without a traceback and exits 1 (2 for a :class:`UsageError`).

    GamerecError
    ├── ConfigError          invalid settings: a bad value, an unknown key, an unreadable file
    ├── DataError            an input file is missing, empty or malformed (names the file and line)
    ├── ArtifactError        a stage's inputs are missing, stale or from another catalog/version
    ├── FetchError           an HTTP request failed for good (after retries), or cannot be made
    │   ├── RateLimitError   the remote API's quota is spent (e.g. the Steam Web API's daily limit)
    │   └── ServerUnreachableError   no connection to the server at all (refused, DNS, offline)
    ├── TrainingError        training cannot start or cannot continue
    ├── NotFoundError        an unknown user, game, genre or appid
    │   └── AmbiguousNameError   a game name matches several games (lists the candidates)
    ├── InvalidRequestError  an argument is out of range (top-k <= 0, an empty query, ...)
    │   └── UsageError       a command-line option is malformed (exit code 2, as for usage)
    ├── StorageError         a file cannot be written: the disk is full, the file size limit
    │                        (ulimit -f) is reached, the folder is read-only or not ours
    └── RequestError         an HTTP request ``gamerec serve`` refuses before the recommender
                             sees it (size, framing, type, token, route); carries its status
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AmbiguousNameError",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "FetchError",
    "GamerecError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "RequestError",
    "ServerUnreachableError",
    "StorageError",
    "TrainingError",
    "UsageError",
]


class GamerecError(Exception):
    """Base class of every error gamerec raises on purpose."""

    #: the HTTP status a server answers this error with
    http_status = 400
    #: the command line's exit code
    exit_code = 1
    #: True when the message was already shown (a training worker told to stop says so at once)
    already_reported = False
    #: True when this process holds something whose teardown would hang (a training worker whose
    #: peers are gone: process-group finalizers wait on them): the CLI exits without teardown
    exit_at_once = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(GamerecError):
    """A setting is invalid or the configuration file cannot be read."""


class DataError(GamerecError):
    """An input file cannot be used; the message names the file (and line where it applies)."""

    http_status = 422

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = Path(path) if path is not None else None
        self.line = line


class ArtifactError(GamerecError):
    """A stage's input artifacts are missing, stale, corrupt or mismatched."""

    http_status = 503


class FetchError(GamerecError):
    """A remote request failed for good, or cannot be attempted."""

    http_status = 502


class RateLimitError(FetchError):
    """The remote API said the quota is spent; retrying now will not help."""


class ServerUnreachableError(FetchError):
    """No connection could be made after retries: every other request would fail the same way."""


class TrainingError(GamerecError):
    """Training cannot start or cannot continue."""


class NotFoundError(GamerecError):
    """An unknown user, game, genre or appid."""

    http_status = 404


class AmbiguousNameError(NotFoundError):
    """A game name matches several games."""

    http_status = 422

    def __init__(self, query: str, candidates: Sequence[str]):
        shown = "; ".join(candidates[:10])
        more = f" (and {len(candidates) - 10} more)" if len(candidates) > 10 else ""
        super().__init__(
            f"{query!r} matches {len(candidates)} games: {shown}{more}. "
            "Use the full name or the appid."
        )
        self.candidates = list(candidates)


class InvalidRequestError(GamerecError):
    """An argument is out of range or malformed."""

    http_status = 422


class UsageError(InvalidRequestError):
    """A command-line option is malformed: the command exits 2, as for any usage error."""

    exit_code = 2


_STORAGE_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EFBIG: "a file reached the file size limit (ulimit -f): raise it and run the "
    "command again",
    errno.EROFS: "the filesystem is read-only: choose a writable folder (--data-dir)",
    errno.EACCES: "permission denied: make the folder writable for this user or choose "
    "another (--data-dir)",
    errno.EPERM: "not permitted: make the folder writable for this user or choose another "
    "(--data-dir)",
}


#: the OSErrors of a file that cannot be written: what StorageError stands for
STORAGE_ERRNOS = frozenset(_STORAGE_ADVICE)


class StorageError(GamerecError):
    """A file cannot be written or read for a reason of the system's: a full disk, the file
    size limit, a read-only folder, missing permission. What was written before is intact."""

    http_status = 507

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | Path | None = None) -> StorageError:
        """``<path>: <reason>; <what to do>`` for ``exc``; ``path`` when ``exc`` names none."""
        where = exc.filename if exc.filename is not None else path
        code = exc.errno
        reason = os.strerror(code) if code else (exc.strerror or str(exc))
        advice = _STORAGE_ADVICE.get(
            code or 0, "check the path and the disk, then run the command again"
        )
        return cls(f"{where}: {reason}; {advice}" if where is not None else f"{reason}; {advice}")


class RequestError(GamerecError):
    """An HTTP request the server refuses before the recommender sees it (size, type, token, route).

    ``http_status`` is the answer's status; ``headers`` are sent with it (``Retry-After``, ...).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.http_status = status
        self.headers = dict(headers or {})
