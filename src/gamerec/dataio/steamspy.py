"""SteamSpy API client and a polite, resumable crawler of its catalog.

SteamSpy documents its limits: ``request=all`` at most once per 60 s, every other request at
most once per second. :class:`SteamSpyClient` keeps both gaps (configurable, so tests can run
fast) and retries transient failures (see :mod:`gamerec.dataio.http_client`).

The crawler writes raw responses, byte for byte and atomically, where
:func:`gamerec.dataio.catalog.load_steamspy` reads them::

    raw/steamspy/all/page_N.json          one request=all page (~1,000 apps)
    raw/steamspy/all/_state.json          {"end_page": N}: page N came back empty (the end)
    raw/steamspy/appdetails/APPID.json    one request=appdetails answer (genres and tags)
    raw/steamspy/appdetails/_not_found.json  {"appids": [...]}: SteamSpy knows no such app

A re-run, or a run after Ctrl-C or a crash, skips every file that is complete and valid and
fetches the rest; appids SteamSpy does not know and the end of the catalog are remembered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Unpack

from gamerec.atomic import atomic_write_bytes, atomic_write_json
from gamerec.dataio.crawl import ItemList, SavedAnswers, read_json_or_none
from gamerec.dataio.http_client import (
    ClientOptions,
    ClosingClient,
    FailureBudget,
    Fetched,
    ProgressFn,
    no_progress,
    polite_client,
    retries_reported,
)
from gamerec.dataio.ids import is_appid_text
from gamerec.errors import FetchError

__all__ = [
    "ALL_STATE_FILE",
    "NOT_FOUND_FILE",
    "SavedAppdetails",
    "SteamSpyClient",
    "crawl_all_pages",
    "is_blank_record",
    "page_records",
    "top_appids_by_owners",
]

ALL_STATE_FILE = "_state.json"
NOT_FOUND_FILE = "_not_found.json"
_PAGE_FILE = re.compile(r"^page_(\d+)\.json(?:\.gz)?$")


def _is_page(data: Any) -> bool:
    # a page is an object keyed by appid; the page after the last one is empty ([] or {})
    if data == [] or data == {}:
        return True
    return isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())


def _is_record_object(data: Any) -> bool:
    return isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())


def is_blank_record(record: Any) -> bool:
    """SteamSpy answers an unknown appid with a record whose name is null or empty."""
    if not isinstance(record, dict):
        return False
    name = record.get("name")
    return not (isinstance(name, str) and name.strip())


class SteamSpyClient(ClosingClient):
    """The SteamSpy API (``api.php``): pages, appdetails, top-100 lists, genres and tags."""

    def __init__(
        self,
        base_url: str = "https://steamspy.com/api.php",
        *,
        all_interval_s: float = 60.0,
        request_interval_s: float = 1.0,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.base_url = base_url
        self.all_interval_s = all_interval_s
        self.request_interval_s = request_interval_s
        self.http = polite_client({"Accept": "application/json"}, **options)

    def __repr__(self) -> str:
        return f"SteamSpyClient({self.base_url!r})"

    def close(self) -> None:
        self.http.close()

    def _get(
        self, params: dict[str, str | int], expect: Callable[[Any], bool], *, is_all: bool = False
    ) -> Fetched:
        gaps = [("steamspy", self.request_interval_s)]
        if is_all:
            gaps.append(("steamspy-all", self.all_interval_s))
        described = " ".join(f"{k}={v}" for k, v in params.items())
        return self.http.get_json(
            self.base_url,
            params,
            what=f"SteamSpy {described}",
            gaps=gaps,
            expect=expect,
            advice={404: f"check fetch.steamspy_url ({self.base_url})"},
            where="fetch.steamspy_url",
        )

    def all_page(self, page: int) -> Fetched:
        """One ``request=all`` page (~1,000 apps keyed by appid); empty after the last page."""
        return self._get({"request": "all", "page": page}, _is_page, is_all=True)

    def appdetails(self, appid: int) -> Fetched:
        """``request=appdetails``: the page fields plus languages, genre and tags.

        An unknown appid comes back as a blank record (see :func:`is_blank_record`).
        """

        def expect(data: Any) -> bool:
            if not isinstance(data, dict):
                return False
            return is_blank_record(data) or str(data.get("appid")) == str(appid)

        return self._get({"request": "appdetails", "appid": appid}, expect)

    def top100in2weeks(self) -> dict[str, Any]:
        """The 100 games with most players in the last two weeks, keyed by appid."""
        return dict(self._get({"request": "top100in2weeks"}, _is_record_object).data)

    def top100forever(self) -> dict[str, Any]:
        """The 100 games with most players since March 2009, keyed by appid."""
        return dict(self._get({"request": "top100forever"}, _is_record_object).data)

    def top100owned(self) -> dict[str, Any]:
        """The 100 games with most owners, keyed by appid."""
        return dict(self._get({"request": "top100owned"}, _is_record_object).data)

    def genre(self, name: str) -> dict[str, Any]:
        """Games of one genre (e.g. ``"Early Access"``), keyed by appid."""
        return dict(self._get({"request": "genre", "genre": name}, _is_page).data or {})

    def tag(self, name: str) -> dict[str, Any]:
        """Games with one user tag (e.g. ``"Roguelike"``), keyed by appid."""
        return dict(self._get({"request": "tag", "tag": name}, _is_page).data or {})


def _saved_page(directory: Path, page: int) -> Path | None:
    for name in (f"page_{page}.json", f"page_{page}.json.gz"):
        path = directory / name
        if path.is_file():
            data = read_json_or_none(path)
            if _is_page(data) and data:
                return path
    return None


def _read_end_page(directory: Path) -> int | None:
    state = read_json_or_none(directory / ALL_STATE_FILE)
    end = state.get("end_page") if isinstance(state, dict) else None
    return end if isinstance(end, int) and not isinstance(end, bool) and end >= 0 else None


def crawl_all_pages(
    client: SteamSpyClient,
    directory: str | Path,
    *,
    pages: int | None = None,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Fetch ``request=all`` pages 0, 1, ... into ``directory`` until an empty page.

    ``pages`` limits how many pages (from 0) are wanted. Pages already saved and valid are
    skipped; once the empty page that ends the catalog has been seen it is remembered in
    ``_state.json`` and not asked for again, unless ``pages`` asks for more pages than that
    (the catalog grows). A page that fails after its retries is reported under ``failed`` and
    the crawl moves on (see :class:`FailureBudget`).
    """
    directory = Path(directory)
    stage = "steamspy pages"
    end_page = _read_end_page(directory)
    if pages is not None and end_page is not None and pages > end_page:
        # asked for more pages than the catalog had: it may have grown, so look again
        end_page = None
    fetched: list[int] = []
    skipped: list[int] = []
    failed: dict[str, str] = {}
    budget = FailureBudget()
    page = 0
    with retries_reported(client.http, progress, stage):
        while True:
            limits = [limit for limit in (pages, end_page) if limit is not None]
            total = min(limits) if limits else None
            if total is not None and page >= total:
                break
            if _saved_page(directory, page) is not None:
                skipped.append(page)
                page += 1
                continue
            progress(stage, f"page {page}" + (f" of {total}" if total else ""), None)
            try:
                answer = client.all_page(page)
            except FetchError as error:
                budget.failed(error)
                failed[str(page)] = error.message
                page += 1
                continue
            budget.succeeded()
            if not answer.data:
                end_page = page
                atomic_write_json(directory / ALL_STATE_FILE, {"end_page": page})
                progress(stage, f"page {page} is empty: the catalog ends there", 1.0)
                break
            atomic_write_bytes(directory / f"page_{page}.json", answer.body)
            fetched.append(page)
            done = page + 1
            progress(
                stage,
                f"page {page}: {len(answer.data):,} apps",
                done / total if total else None,
            )
            page += 1
    budget.finish()
    return {
        "fetched": len(fetched),
        "skipped": len(skipped),
        "failed": failed,
        "end_page": end_page,
    }


def page_records(directory: str | Path) -> dict[int, dict[str, Any]]:
    """Every app on the saved pages, by appid (pages overlap: the first record wins)."""
    directory = Path(directory)
    numbered = []
    for path in directory.glob("page_*.json*") if directory.is_dir() else []:
        match = _PAGE_FILE.match(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    records: dict[int, dict[str, Any]] = {}
    for _, path in sorted(numbered):
        data = read_json_or_none(path)
        if not isinstance(data, dict):
            continue
        for key, record in data.items():
            if isinstance(record, dict) and is_appid_text(str(key)):
                records.setdefault(int(key), record)
    return records


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return 0


def top_appids_by_owners(records: dict[int, dict[str, Any]], n: int) -> list[int]:
    """The ``n`` appids with most owners (SteamSpy's range), most reviewed first on ties."""
    from gamerec.dataio.catalog import parse_owners

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int, int]:
        appid, record = item
        low, high = parse_owners(record.get("owners"))
        reviews = _as_int(record.get("positive")) + _as_int(record.get("negative"))
        return (-(low or 0), -(high or 0), -reviews, appid)

    return [appid for appid, _ in sorted(records.items(), key=rank)[: max(n, 0)]]


class SavedAppdetails(SavedAnswers[int]):
    """``APPID.json`` answers of ``request=appdetails``, and ``_not_found.json`` for appids
    SteamSpy does not know (asked once, never again).

    Crawled with :func:`gamerec.dataio.crawl.crawl_items`: appids already saved or known to be
    unknown are skipped; a failure after retries is reported under ``failed``; ``fetched``,
    ``skipped``, ``not_found`` and ``failed`` partition the distinct ``requested`` appids.
    """

    stage = "steamspy appdetails"
    missing_list = ItemList(NOT_FOUND_FILE, "appids", int, "known to be unknown")

    def is_complete(self, item: int, data: Any) -> bool:
        return (
            isinstance(data, dict)
            and not is_blank_record(data)
            and str(data.get("appid")) == str(item)
        )

    def says_missing(self, data: Any) -> bool:
        return is_blank_record(data)

    def describe(self, item: int, data: Any, missing: bool) -> str:
        return f"appid {item}: " + ("unknown to SteamSpy" if missing else f"{data.get('name')}")
