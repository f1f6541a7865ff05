"""The Steam store's ``appdetails`` endpoint and a polite, resumable crawl of it.

:class:`StoreClient` asks ``store.steampowered.com/api/appdetails?appids=N`` for one app at a
time. The store allows about 200 requests in 5 minutes, so the client keeps a gap between
requests (``fetch.store_interval_s``, 1.5 s: 200 requests take at least 300 s) and retries
transient failures like the other clients (:mod:`gamerec.dataio.http_client`), honouring 429 and
``Retry-After``. Answers are kept byte for byte, where the ``store`` input
(:func:`gamerec.dataio.store_records.load_store`) reads them::

    raw/store/APPID.json         {"APPID": {"success": true, "data": {...}}}, as the store answered
    raw/store/_not_found.json    {"appids": [...]}: the store answered "success": false (asked once)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

import pandas as pd

from gamerec.dataio.crawl import ItemList, SavedAnswers
from gamerec.dataio.http_client import ClientOptions, ClosingClient, Fetched, polite_client
from gamerec.dataio.ids import is_appid_text
from gamerec.dataio.store_records import NOT_FOUND_FILE, NOT_IN_STORE
from gamerec.errors import InvalidRequestError

__all__ = [
    "STORE_URL",
    "SavedStoreAnswers",
    "StoreClient",
    "most_owned_appids",
    "parse_appids",
]

STORE_URL = "https://store.steampowered.com/api/appdetails"


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
