"""Reading input files, gzip or not, with errors that name the file (and line)."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

from gamerec.errors import DataError

__all__ = ["normalise_title", "read_bytes", "read_text"]

_GZIP_MAGIC = b"\x1f\x8b"
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed if it is gzip (by content, not by name)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found; check the path in your settings", path)
    if path.is_dir():
        raise DataError("is a folder, expected a file", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot be read ({exc.strerror})", path) from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(
                f"is a damaged or truncated gzip file ({exc}); download it again", path
            ) from None
    if not raw or raw.isspace():  # (no raw.strip(): that would copy the whole file)
        raise DataError("is empty", path)
    return raw


def read_text(path: str | Path) -> str:
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError("is not UTF-8 text", path, line) from None


def text_stream(path: str | Path) -> io.BytesIO:
    return io.BytesIO(read_bytes(path))


def normalise_title(title: object) -> str:
    """Lower-case ASCII letters and digits only: ``"The Elder Scrolls V: Skyrim"`` becomes
    ``theelderscrollsvskyrim``.

    steam-200k strips punctuation from titles; this key makes them meet the store's names.
    """
    if not isinstance(title, str):
        return ""
    return _NON_ALNUM.sub("", title.lower())
