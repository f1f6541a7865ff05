"""Steam store ``appdetails`` records as catalog rows: what an app is, its base game, its date.

:func:`load_store` reads the ``store`` input: a ``raw/store`` folder of answers saved by ``gamerec
fetch store`` (:mod:`gamerec.dataio.steamstore`), ``{"APPID": {"success": true, "data": {...}}}``
each, with ``_not_found.json`` listing the apps the store does not show, or files of bare records
keyed by appid (the shards of the BlueBoxWare/steamdb collection). :func:`parse_store_record`
reads one record, :func:`parse_release_date` its date. Genres and categories come as id lists in
recorded records and as ``{id, description}`` objects from the live API; both are read.

A record gamerec cannot use is not fatal: the frame keeps a row for it whose ``store_note`` says
why, and the preprocess summary reports it (:func:`store_report`). How the records are merged with
the other sources is :func:`gamerec.dataio.catalog.merge_metadata`'s business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from gamerec.dataio.catalog import CATALOG_COLUMNS, metadata_frame
from gamerec.dataio.files import read_bytes, read_text
from gamerec.dataio.ids import appid_or_none, is_appid_text
from gamerec.errors import DataError

__all__ = [
    "NOT_FOUND_FILE",
    "NOT_IN_STORE",
    "STORE_COLUMNS",
    "STORE_GENRES",
    "ReleaseDate",
    "load_store",
    "parse_release_date",
    "parse_store_record",
    "read_not_found",
    "store_report",
]

#: the apps the store answered ``"success": false`` for, in a ``raw/store`` folder
NOT_FOUND_FILE = "_not_found.json"
#: what a store frame adds to the catalog columns: the store's ``type``, its ``coming_soon``
#: flag, and why a record was not used (None for a used record)
STORE_COLUMNS = ["store_type", "coming_soon", "store_note"]
NOT_IN_STORE = "not in the store"

#: the store's genre ids (the live API sends ``{"id": "1", "description": "Action"}``; recorded
#: records keep only the id), named as the store and the other sources name them
STORE_GENRES: dict[int, str] = {
    1: "Action",
    2: "Strategy",
    3: "RPG",
    4: "Casual",
    9: "Racing",
    18: "Sports",
    23: "Indie",
    25: "Adventure",
    28: "Simulation",
    29: "Massively Multiplayer",
    37: "Free to Play",
    50: "Accounting",
    51: "Animation & Modeling",
    52: "Audio Production",
    53: "Design & Illustration",
    54: "Education",
    55: "Photo Editing",
    56: "Software Training",
    57: "Utilities",
    58: "Video Production",
    59: "Web Publishing",
    60: "Game Development",
    70: "Early Access",
    71: "Sexual Content",
    72: "Nudity",
}


_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
#: what the store shows instead of a date
_NO_DATE = frozenset({"", "coming soon", "to be announced", "tba", "tbd", "to be determined"})
#: words before a year that name no month ("Early 2026", "Spring 2025"): the year alone is known
_YEAR_WORDS = frozenset({"early", "mid", "late", "spring", "summer", "autumn", "fall", "winter"})
_DAY_MONTH_YEAR = re.compile(r"([0-9]{1,2}) ([a-z]+)\.?,? ([0-9]{4})", re.ASCII)  # 8 Jul, 2019
_MONTH_DAY_YEAR = re.compile(r"([a-z]+)\.? ([0-9]{1,2}),? ([0-9]{4})", re.ASCII)  # Jul 8, 2019
_MONTH_YEAR = re.compile(r"([a-z]+)\.?,? ([0-9]{4})", re.ASCII)  # Sep 2017, Early 2026
_QUARTER_YEAR = re.compile(r"q[1-4],? ([0-9]{4})", re.ASCII)  # Q3 2025
_YEAR_ONLY = re.compile(r"([0-9]{4})", re.ASCII)  # 2024
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_SPACES = re.compile(r"\s+")
#: the years a catalog may hold (``load_catalog_table`` refuses others)
FIRST_YEAR, LAST_YEAR = 1970, 2100


@dataclass(frozen=True)
class ReleaseDate:
    """A release date as precise as the store gives it: a day, a month or only a year."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def iso(self) -> str:
        """``2023-08-03``, ``2017-09`` or ``2024`` (ISO 8601 at the precision known)."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
            if self.day is not None:
                text += f"-{self.day:02d}"
        return text


def _record_error(message: str, path: str | Path, record: Any) -> DataError:
    return DataError(f"record {record}: {message}", path)


def parse_release_date(text: Any, *, path: str | Path, record: Any) -> ReleaseDate | None:
    """The date of a ``release_date.date`` text; None where the store shows none ("Coming soon",
    "To be announced", "").

    Reads "8 Jul, 2019", "Jul 8, 2019", "Sep 2017", "Q3 2025", "Early 2026", "2024" and ISO dates.
    Anything else, an impossible day or a year outside 1970-2100 is a DataError naming ``path``
    and ``record``.
    """
    if not isinstance(text, str):
        raise _record_error(f"release_date.date {text!r} is not text", path, record)
    clean = _SPACES.sub(" ", text).strip().lower()
    if clean in _NO_DATE:
        return None
    year: str
    month: str | int | None = None
    day: str | None = None
    if match := _DAY_MONTH_YEAR.fullmatch(clean):
        day, month, year = match.groups()
    elif match := _MONTH_DAY_YEAR.fullmatch(clean):
        month, day, year = match.groups()
    elif (match := _MONTH_YEAR.fullmatch(clean)) and match.group(1) in _YEAR_WORDS:
        year = match.group(2)
    elif match := _MONTH_YEAR.fullmatch(clean):
        month, year = match.groups()
    elif (match := _QUARTER_YEAR.fullmatch(clean)) or (match := _YEAR_ONLY.fullmatch(clean)):
        year = match.group(1)
    elif match := _ISO_DATE.fullmatch(clean):
        year, month_digits, day = match.groups()
        month = int(month_digits)
    else:
        raise _record_error(
            f"release_date.date {text!r} is not a date gamerec reads (such as '8 Jul, 2019', "
            "'Sep 2017', '2024' or 'Coming soon')",
            path,
            record,
        )
    month_number = _MONTHS.get(month) if isinstance(month, str) else month
    if month is not None and month_number is None:
        raise _record_error(f"release_date.date {text!r} names no month ({month!r})", path, record)
    try:
        # checks the day against the month (and leap years) and the month against 1-12
        date(int(year), month_number or 1, int(day) if day is not None else 1)
    except ValueError:
        raise _record_error(
            f"release_date.date {text!r} is not a day of the calendar", path, record
        ) from None
    if not FIRST_YEAR <= int(year) <= LAST_YEAR:
        raise _record_error(
            f"release_date.date {text!r} is not a year from {FIRST_YEAR} to {LAST_YEAR}",
            path,
            record,
        )
    return ReleaseDate(int(year), month_number, int(day) if day is not None else None)


def _text_list(value: Any, field: str, path: str | Path, record: Any) -> list[str]:
    """A list of names (``developers``, ``publishers``), blanks dropped; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _record_error(f"{field} {value!r} is not a list of names", path, record)
    return [v.strip() for v in value if v.strip()]


def _labels(
    value: Any, field: str, names: dict[int, str], path: str | Path, record: Any
) -> tuple[list[str], list[int]]:
    """``genres``/``categories`` as names: from ``{id, description}`` objects (the live API) or
    from integer ids (recorded records) through ``names``; also the ids ``names`` lacks."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _record_error(f"{field} {value!r} is not a list", path, record)
    labels: list[str] = []
    unknown: list[int] = []
    for item in value:
        if isinstance(item, dict):
            number = appid_or_none(item.get("id"))  # the live API sends genre ids as text
            description = item.get("description")
            if number is None or not isinstance(description, str) or not description.strip():
                raise _record_error(
                    f"{field} entry {item!r} is not an {{id, description}} object", path, record
                )
            labels.append(description.strip())
        elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
            if item in names:
                labels.append(names[item])
            else:
                unknown.append(item)
        else:
            raise _record_error(
                f"{field} entry {item!r} is neither an id nor an {{id, description}} object",
                path,
                record,
            )
    return list(dict.fromkeys(labels)), unknown


def parse_store_record(data: Any, *, appid: int, path: str | Path) -> dict[str, Any]:
    """One store record (the ``data`` of an answer) as a catalog row plus :data:`STORE_COLUMNS`.

    The row has the store's name, genres (from either form), developers and publishers (joined
    with ", "), price 0 when the app is free, release date (ISO, see :class:`ReleaseDate`) and year,
    and the base game of a DLC, demo or soundtrack (``fullgame.appid``, a string in the data).
    ``kind`` stays empty: it needs the merged name and genres (:func:`gamerec.dataio.catalog.
    merge_metadata`). Anything malformed is a DataError naming ``path`` and the record.
    """
    if not isinstance(data, dict):
        raise _record_error("is not an object", path, appid)
    store_type = data.get("type")
    if not isinstance(store_type, str) or not store_type.strip():
        raise _record_error(f"type {store_type!r} is not a type such as 'game'", path, appid)
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise _record_error(f"name {name!r} is not text", path, appid)
    released = data.get("release_date")
    when: ReleaseDate | None = None
    coming_soon: bool | None = None
    if released is not None:
        if not isinstance(released, dict):
            raise _record_error(f"release_date {released!r} is not an object", path, appid)
        coming_soon = released.get("coming_soon")
        if coming_soon is not None and not isinstance(coming_soon, bool):
            raise _record_error(
                f"release_date.coming_soon {coming_soon!r} is not true or false", path, appid
            )
        when = parse_release_date(released.get("date", ""), path=path, record=appid)
    fullgame = data.get("fullgame")
    base: int | None = None
    if fullgame is not None:
        base = appid_or_none(fullgame.get("appid")) if isinstance(fullgame, dict) else None
        if base is None:
            raise _record_error(f"fullgame {fullgame!r} names no appid", path, appid)
    is_free = data.get("is_free")
    if is_free is not None and not isinstance(is_free, bool):
        raise _record_error(f"is_free {is_free!r} is not true or false", path, appid)
    genres, unknown_genres = _labels(data.get("genres"), "genres", STORE_GENRES, path, appid)
    # categories (single-player, co-op, ...) have no catalog column yet; both forms are checked
    _labels(data.get("categories"), "categories", {}, path, appid)
    developers = _text_list(data.get("developers"), "developers", path, appid)
    publishers = _text_list(data.get("publishers"), "publishers", path, appid)
    unknown = f"genre id(s) {unknown_genres} unknown to gamerec (left out)"
    return {
        "appid": appid,
        "name": (name.strip() or None) if isinstance(name, str) else None,
        "genres": genres,
        "tags": [],
        "developer": ", ".join(developers) or None,
        "publisher": ", ".join(publishers) or None,
        "price_cents": 0 if is_free else None,
        "owners_low": None,
        "owners_high": None,
        "positive": None,
        "negative": None,
        "release_date": when.iso if when else None,
        "release_year": when.year if when else None,
        "kind": None,
        "base_appid": base,
        "aliases": [],
        "store_type": store_type.strip().lower(),
        "coming_soon": coming_soon,
        "store_note": unknown if unknown_genres else None,
    }


def _store_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(
            "not found; point a store input at raw/store (run `gamerec fetch store`) or at "
            "files of store records",
            path,
        )
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.name.endswith((".json", ".json.gz")) and p.name[0] not in "._"
    )
    if not files:
        raise DataError(
            "holds no store answers (APPID.json) or record files; run `gamerec fetch store`", path
        )
    return files


def _entries(path: Path) -> Iterator[tuple[str, Any]]:
    """(appid text, entry) of a store file: an answer ``{"N": {"success", "data"}}`` or records
    ``{"N": {...}, ...}`` (the envelope left out)."""
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"is not valid JSON ({exc.msg}); delete it and run `gamerec fetch store` again",
            path,
            exc.lineno,
        ) from None
    if not isinstance(document, dict):
        raise DataError(
            "is not a store answer or a set of records (an object keyed by appid)", path
        )
    yield from document.items()


def read_not_found(directory: Path) -> list[int]:
    """The appids ``_not_found.json`` lists (``{"appids": [...]}``); none when it is missing or
    damaged, as the fetcher reads it: such an app is then asked for again."""
    try:
        state = json.loads(read_bytes(directory / NOT_FOUND_FILE))
    except (DataError, ValueError):
        return []
    appids = state.get("appids") if isinstance(state, dict) else None
    if not isinstance(appids, list):
        return []
    return sorted({a for a in appids if type(a) is int and appid_or_none(a) is not None})


def _problem_row(appid: int | None, note: str) -> dict[str, Any]:
    return {"appid": appid, "genres": [], "tags": [], "aliases": [], "store_note": note}


def load_store(path: str | Path) -> pd.DataFrame:
    """A ``raw/store`` folder (or one file) of store answers or records, as a catalog frame.

    Returns :data:`gamerec.dataio.catalog.CATALOG_COLUMNS` plus :data:`STORE_COLUMNS`, one row
    per appid: a used record (``store_type`` set; ``store_note`` may name genre ids left out),
    an app the store does not show (``store_note`` "not in the store", from ``"success": false``
    answers and ``_not_found.json``), or a record gamerec cannot use (``store_type`` empty,
    ``store_note`` the reason). An appid met again in a later file keeps its first record.
    """
    path = Path(path)
    rows: dict[int, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    for file in _store_files(path):
        for key, value in _entries(file):
            appid = appid_or_none(key) if is_appid_text(str(key).strip()) else None
            if appid is None:
                problems.append(_problem_row(None, f"{file}: key {key!r} is not an appid"))
                continue
            if appid in rows:
                note = f"{file}: record {appid} appears again (the first one read is used)"
                problems.append(_problem_row(appid, note))
                continue
            data = value
            if isinstance(value, dict) and "success" in value:  # an answer's envelope
                if value.get("success") is False:
                    rows[appid] = _problem_row(appid, NOT_IN_STORE)
                    continue
                data = value.get("data") if value.get("success") is True else None
            try:
                rows[appid] = parse_store_record(data, appid=appid, path=file)
            except DataError as error:
                rows[appid] = _problem_row(appid, error.message)
    for appid in read_not_found(path) if path.is_dir() else ():
        rows.setdefault(appid, _problem_row(appid, NOT_IN_STORE))
    frame = metadata_frame([*rows.values(), *problems], [*CATALOG_COLUMNS, *STORE_COLUMNS])
    frame["coming_soon"] = frame["coming_soon"].astype("boolean")
    # decided when merged: it needs the other sources' names and genres
    frame["kind"] = pd.Series(None, index=frame.index, dtype=object)
    return frame


def store_report(frame: pd.DataFrame) -> dict[str, Any]:
    """What a store frame holds: records used, apps not in the store, records left out (with
    three reasons as examples), types gamerec does not map and genre ids it does not know."""
    from gamerec.dataio.kinds import kind_from_store

    used = frame["store_type"].notna()
    notes = frame["store_note"]
    missing = notes == NOT_IN_STORE
    left_out = ~used & ~missing
    types = frame.loc[used, "store_type"]
    unmapped = types[[kind_from_store(t, None) is None for t in types]].value_counts()
    odd_genres = used & notes.notna()
    return {
        "records": int(used.sum()),
        "not_in_store": int(missing.sum()),
        "left_out": int(left_out.sum()),
        "left_out_examples": notes[left_out].head(3).tolist(),
        "types_not_mapped": {str(k): int(v) for k, v in unmapped.items()},
        "genre_ids_unknown": int(odd_genres.sum()),
        "genre_ids_unknown_examples": notes[odd_genres].head(3).tolist(),
    }
