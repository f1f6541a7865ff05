"""Reading input files, gzip or not, with errors that name the file (and line)."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

from gamerec.errors import DataError

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "NESTED_TOO_DEEPLY",
    "normalise_title",
    "read_bytes",
    "read_json",
    "read_text",
]

_GZIP_MAGIC = b"\x1f\x8b"
#: the most a gzip input may expand to: the largest real input is ~41 MB, and a few MB of
#: crafted gzip can otherwise expand to gigabytes in memory
MAX_DECOMPRESSED_BYTES = 512 * 1024**2
_CHUNK = 1024**2
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
#: why a JSON document deeper than Python's recursion limit (``[[[[...``) cannot be read
NESTED_TOO_DEEPLY = "is nested too deeply to be read (thousands of levels of [ or {)"


def _gunzip(raw: bytes, path: Path, max_bytes: int) -> bytes:
    """Every gzip member of ``raw`` decompressed, a chunk at a time, stopping past ``max_bytes``."""
    parts: list[bytes] = []
    total = 0
    data = raw
    while data:
        member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        while data and not member.eof:
            chunk = member.decompress(data, _CHUNK)
            data = member.unconsumed_tail
            total += len(chunk)
            if total > max_bytes:
                raise DataError(
                    f"decompresses to more than {max_bytes:,} bytes (the cap on gzip input); "
                    "it is damaged or not the data expected: check or replace the file",
                    path,
                )
            parts.append(chunk)
        if not member.eof:
            raise zlib.error("the compressed data ends early")
        data = member.unused_data
        if data and data[:2] != _GZIP_MAGIC:
            break  # trailing padding after the last member, as gzip(1) tolerates
    return b"".join(parts)


def read_bytes(path: str | Path, *, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """The file's bytes, decompressed if it is gzip (by content, not by name).

    Decompression stops with a DataError once the output passes ``max_bytes``.
    """
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
            raw = _gunzip(raw, path, max_bytes)
        except zlib.error as exc:
            raise DataError(
                f"is a damaged or truncated gzip file ({exc}); download it again", path
            ) from None
    if not raw or raw.isspace():  # (no raw.strip(): that would copy the whole file)
        raise DataError("is empty", path)
    return raw


def read_text(path: str | Path, *, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> str:
    raw = read_bytes(path, max_bytes=max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError("is not UTF-8 text", path, line) from None


def read_json(path: str | Path, *, advice: str = "") -> Any:
    """A JSON file (gzip or not), parsed; a DataError naming the file (and line) when it is not
    JSON or is nested too deeply to parse. ``advice`` ends each message (``"; fetch it again"``).
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON ({exc.msg}){advice}", path, exc.lineno) from None
    except RecursionError:
        raise DataError(f"{NESTED_TOO_DEEPLY}; it is not the data expected{advice}", path) from None


def normalise_title(title: object) -> str:
    """Lower-case ASCII letters and digits only: ``"The Elder Scrolls V: Skyrim"`` becomes
    ``theelderscrollsvskyrim``.

    steam-200k strips punctuation from titles; this key makes them meet the store's names.
    """
    if not isinstance(title, str):
        return ""
    return _NON_ALNUM.sub("", title.lower())
