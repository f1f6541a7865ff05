"""The Steam store's ``appdetails``: what an app is, its base game and its release date.

:class:`StoreClient` asks ``store.steampowered.com/api/appdetails?appids=N`` for one app at a
time. The store allows about 200 requests in 5 minutes, so the client keeps a gap between
requests (``fetch.store_interval_s``, 1.5 s: 200 requests take at least 300 s) and retries
transient failures like the other clients (:mod:`gamerec.dataio.http_client`), honouring 429 and
``Retry-After``. Answers are kept byte for byte, where the ``store`` input reads them::

    raw/store/APPID.json         {"APPID": {"success": true, "data": {...}}}, as the store answered
    raw/store/_not_found.json    {"appids": [...]}: the store answered "success": false (asked once)

:func:`load_store` reads such a folder, or files of bare records keyed by appid (the shards of the
BlueBoxWare/steamdb collection), into a metadata frame; :func:`parse_store_record` reads one
record and :func:`parse_release_date` its date. A record gamerec cannot use is not fatal: the
frame keeps a row for it with ``store_note`` saying why, and the preprocess summary reports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Unpack

import pandas as pd

from gamerec.dataio.catalog import CATALOG_COLUMNS, metadata_frame
from gamerec.dataio.crawl import ItemList, SavedAnswers
from gamerec.dataio.files import read_text
from gamerec.dataio.http_client import ClientOptions, ClosingClient, Fetched, polite_client
from gamerec.dataio.ids import appid_or_none, is_appid_text
from gamerec.errors import DataError, InvalidRequestError

__all__ = [
    "NOT_FOUND_FILE",
    "STORE_COLUMNS",
    "STORE_GENRES",
    "STORE_URL",
    "ReleaseDate",
    "SavedStoreAnswers",
    "StoreClient",
    "load_store",
    "most_owned_appids",
    "parse_appids",
    "parse_release_date",
    "parse_store_record",
    "store_report",
]

STORE_URL = "https://store.steampowered.com/api/appdetails"
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


# -- fetching -------------------------------------------------------------------------------


def _entry(data: Any, appid: int | None = None) -> dict[str, Any] | None:
    """The ``{"success": ..., "data": ...}`` entry of a one-app answer (for ``appid`` if given)."""
    if not isinstance(data, dict) or len(data) != 1:
        return None
    key, entry = next(iter(data.items()))
    if appid is not None and key != str(appid):
        return None
    return entry if isinstance(entry, dict) else None


def _is_found(entry: dict[str, Any] | None) -> bool:
    return (
        entry is not None and entry.get("success") is True and isinstance(entry.get("data"), dict)
    )


def _is_not_found(entry: dict[str, Any] | None) -> bool:
    return entry is not None and entry.get("success") is False


class StoreClient(ClosingClient):
    """The Steam store's ``appdetails`` endpoint, one app a request."""

    def __init__(
        self,
        base_url: str = STORE_URL,
        *,
        interval_s: float = 1.5,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.http = polite_client({"Accept": "application/json"}, **options)

    def __repr__(self) -> str:
        return f"StoreClient({self.base_url!r})"

    def close(self) -> None:
        self.http.close()

    def appdetails(self, appid: int) -> Fetched:
        """``{"APPID": {"success": true, "data": {...}}}``, or ``"success": false`` for an app the
        store does not show. English names and dates (``l=english``), whatever the server guesses
        of the client's language."""

        def expect(data: Any) -> bool:
            entry = _entry(data, appid)
            return _is_found(entry) or _is_not_found(entry)

        return self.http.get_json(
            self.base_url,
            {"appids": appid, "l": "english"},
            what=f"Steam store appdetails appids={appid}",
            gaps=[("store", self.interval_s)],
            expect=expect,
            advice={
                403: "the store refuses requests for a while after too many: wait a few minutes, "
                "raise fetch.store_interval_s and run the command again",
                404: f"check fetch.store_url ({self.base_url})",
            },
            where="fetch.store_url",
        )


class SavedStoreAnswers(SavedAnswers[int]):
    """``APPID.json`` answers of the store's ``appdetails``, and ``_not_found.json`` for the
    appids it answered ``"success": false`` (asked once, never again).

    Crawled with :func:`gamerec.dataio.crawl.crawl_items`; ``fetched``, ``skipped``,
    ``not_found`` and ``failed`` partition the distinct ``requested`` appids.
    """

    stage = "store appdetails"
    missing_list = ItemList(NOT_FOUND_FILE, "appids", int, "not in the store")

    def is_complete(self, item: int, data: Any) -> bool:
        return _is_found(_entry(data, item))

    def says_missing(self, data: Any) -> bool:
        return _is_not_found(_entry(data))

    def describe(self, item: int, data: Any, missing: bool) -> str:
        if missing:
            return f"appid {item}: {NOT_IN_STORE}"
        record = (_entry(data) or {}).get("data") or {}
        return f"appid {item}: {record.get('name')} ({record.get('type')})"


def parse_appids(values: Iterable[str]) -> list[int]:
    """Appids from texts such as ``"1086940,1245620"``: each checked (the first bad one raises),
    duplicates dropped, order kept."""
    appids: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            if not is_appid_text(text):
                raise InvalidRequestError(
                    f"{text!r} is not an appid (a positive whole number such as 1086940); "
                    "pass --appids 1086940,1245620"
                )
            appids.append(int(text))
    if not appids:
        raise InvalidRequestError("no appids given; pass --appids 1086940,1245620")
    return list(dict.fromkeys(appids))


def most_owned_appids(items: pd.DataFrame, n: int) -> list[int]:
    """The ``n`` appids of a catalog frame with most SteamSpy owners, most reviewed first on ties,
    then the lowest appid; apps without an owners figure come last."""
    frame = items[items["appid"].notna()]
    reviews = frame["positive"].fillna(0).astype("int64") + frame["negative"].fillna(0).astype(
        "int64"
    )
    ranked = pd.DataFrame(
        {
            "appid": frame["appid"].astype("int64"),
            "low": frame["owners_low"].fillna(-1).astype("int64"),
            "high": frame["owners_high"].fillna(-1).astype("int64"),
            "reviews": reviews,
        }
    ).drop_duplicates("appid")
    ranked = ranked.sort_values(
        ["low", "high", "reviews", "appid"], ascending=[False, False, False, True]
    )
    return [int(appid) for appid in ranked["appid"].head(max(n, 0))]


# -- reading records ------------------------------------------------------------------------

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
    not_found = path / NOT_FOUND_FILE if path.is_dir() else None
    if not_found is not None and not_found.is_file():
        for appid in ItemList(NOT_FOUND_FILE, "appids", int, NOT_IN_STORE).read(path):
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
