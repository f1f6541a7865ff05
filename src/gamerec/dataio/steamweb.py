"""Steam Web API: the game libraries of given players (``IPlayerService/GetOwnedGames/v1``).

The API key travels in the ``x-webapi-key`` header (which Steam accepts in place of the
``key`` parameter), so it is never part of a URL, and with that never in httpx's request log or
an error message; it is never written to disk either.

The crawler writes each public library, byte for byte and atomically, where
:func:`gamerec.dataio.interactions.load_owned_games` reads it::

    raw/steam/owned/STEAMID.json      one GetOwnedGames response
    raw/steam/owned/_private.json     {"steamids": [...]}: private profiles (no games shown)
    raw/steam/_quota.json             {"day": "YYYY-MM-DD", "calls": N}: calls made that UTC day
    raw/steam/_quota.lock             held while a call is counted (concurrent fetches)

Steam allows 100,000 calls a day per key; :class:`DailyQuota` counts every request (retries
included) and stops before the configured limit with a RateLimitError. A damaged count is an
error, never zero. The key is only sent over https (or to a loopback address, for tests and
local proxies), and never across a redirect to another origin.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Unpack

import httpx

from gamerec.atomic import atomic_write_json
from gamerec.dataio.crawl import ItemList, SavedAnswers
from gamerec.dataio.files import read_bytes, read_text
from gamerec.dataio.http_client import (
    ClientOptions,
    ClosingClient,
    Fetched,
    polite_client,
)
from gamerec.dataio.owned import parse_owned_games
from gamerec.errors import (
    ConfigError,
    DataError,
    FetchError,
    InvalidRequestError,
    RateLimitError,
)

__all__ = [
    "PRIVATE_FILE",
    "DailyQuota",
    "SavedLibraries",
    "SteamWebClient",
    "read_steamids",
    "validate_steamid",
    "validate_steamids",
]

PRIVATE_FILE = "_private.json"
KEY_HELP = (
    "set GAMEREC_STEAM_API_KEY to your Steam Web API key "
    "(get one at https://steamcommunity.com/dev/apikey)"
)
_STEAMID64 = re.compile(r"7656119\d{10}")


def validate_steamid(value: str) -> str:
    """A SteamID64 (17 digits starting 7656119), stripped of surrounding spaces."""
    text = value.strip() if isinstance(value, str) else ""
    if not _STEAMID64.fullmatch(text):
        raise InvalidRequestError(
            f"{value!r} is not a SteamID64 (17 digits starting with 7656119, e.g. "
            "76561197960287930); it is the number in a profile URL "
            "https://steamcommunity.com/profiles/<SteamID64>"
        )
    return text


def validate_steamids(values: Iterable[str]) -> list[str]:
    """Every id checked (the first bad one raises), duplicates dropped, order kept."""
    steamids = list(dict.fromkeys(validate_steamid(v) for v in values))
    if not steamids:
        raise InvalidRequestError("no steamids given; pass --steamid ID or --steamids FILE")
    return steamids


def read_steamids(path: str | Path) -> list[str]:
    """One SteamID64 per line; blank lines and ``#`` comments are ignored."""
    steamids = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not _STEAMID64.fullmatch(text):
            raise DataError(
                f"{text!r} is not a SteamID64 (17 digits starting with 7656119)", path, number
            )
        steamids.append(text)
    if not steamids:
        raise DataError("lists no steamids (one SteamID64 per line)", path)
    return steamids


def _utc_today() -> date:
    return datetime.now(UTC).date()


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(text: str) -> date | None:
    """``YYYY-MM-DD`` as a date; None for anything else (a blank, ``2025-13-45``, ``20250101``)."""
    if not _ISO_DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


class DailyQuota:
    """Counts Steam Web API calls per UTC day in a small JSON file; refuses the one too many.

    The count is read, checked and written under an exclusive lock on a lock file beside it, so
    that fetches running at the same time share one count.
    """

    def __init__(self, path: str | Path, limit: int, today: Callable[[], date] = _utc_today):
        self.path = Path(path)
        self.limit = limit
        self._today = today

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _damaged(self, why: str) -> DataError:
        return DataError(
            f"is damaged ({why}), so the Steam Web API calls made today are unknown; fix it to "
            f'{{"day": "{self._today().isoformat()}", "calls": N}} with N the calls made today, '
            "or delete it if you are sure no other fetch ran today (UTC)",
            self.path,
        )

    def used(self) -> int:
        """Calls made so far today (0 on a new day or when there is no file yet).

        A file that cannot be read as a count raises DataError: counting it as 0 could exceed
        the key's limit.
        """
        if not self.path.exists():
            return 0
        try:
            state = json.loads(read_bytes(self.path))
        except (ValueError, RecursionError):
            raise self._damaged("not JSON") from None
        except DataError as error:
            raise self._damaged(error.message) from None
        if not isinstance(state, dict) or not isinstance(state.get("day"), str):
            raise self._damaged('no "day" string')
        day = _iso_day(state["day"])
        if day is None:
            raise self._damaged(f'"day" is {state["day"][:40]!r}, not a date like 2025-01-31')
        today = self._today()
        if day > today:  # written on a day still to come: the count cannot be trusted
            raise self._damaged(f'"day" {day.isoformat()} is after today ({today.isoformat()})')
        if day != today:
            return 0
        calls = state.get("calls")
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 0:
            raise self._damaged(f'"calls" is {calls!r}, not a whole number of calls')
        return calls

    def spend(self) -> None:
        """Count one call, or raise RateLimitError if today's calls have reached the limit."""
        with self._locked():
            used = self.used()
            if used >= self.limit:
                raise RateLimitError(
                    f"the Steam Web API daily limit is reached: {used:,} of {self.limit:,} calls "
                    "made today (UTC; setting fetch.daily_limit); run again after midnight UTC"
                )
            # counted before the request is sent, so a crash never under-counts
            atomic_write_json(self.path, {"day": self._today().isoformat(), "calls": used + 1})


def _require_safe_url(base_url: str) -> None:
    """The key travels only over https, or to this machine (a test server, a local proxy)."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"fetch.steam_api_url {base_url!r} is not a URL ({exc})") from None
    if url.scheme == "https":
        return
    host = url.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if url.scheme == "http" and loopback:
        return
    raise ConfigError(
        f"fetch.steam_api_url {base_url!r} is not https: the Steam Web API key would travel "
        "unencrypted; use https://api.steampowered.com (plain http only to a loopback address)"
    )


def _is_owned_games_response(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("response"), dict):
        return False
    games = data["response"].get("games")
    return games is None or isinstance(games, list)


class SteamWebClient(ClosingClient):
    """The Steam Web API calls gamerec makes, one request per second by default."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.steampowered.com",
        *,
        interval_s: float = 1.0,
        **options: Unpack[ClientOptions],
    ) -> None:
        if not api_key or not api_key.strip():
            raise FetchError(f"no Steam Web API key: {KEY_HELP}")
        _require_safe_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        headers = {"Accept": "application/json", "x-webapi-key": api_key.strip()}
        self.http = polite_client(headers, [api_key, api_key.strip()], **options)

    def __repr__(self) -> str:
        return f"SteamWebClient({self.base_url!r})"

    def close(self) -> None:
        self.http.close()

    def owned_games(self, steamid: str) -> Fetched:
        """``GetOwnedGames`` with app names and free games; ``{"response": {}}`` if private."""
        steamid = validate_steamid(steamid)
        refused = f"the Steam Web API refused the key; {KEY_HELP}"
        return self.http.get_json(
            f"{self.base_url}/IPlayerService/GetOwnedGames/v1/",
            {
                "steamid": steamid,
                "include_appinfo": 1,
                "include_played_free_games": 1,
                "format": "json",
            },
            what=f"Steam GetOwnedGames for {steamid}",
            gaps=[("steam", self.interval_s)],
            expect=_is_owned_games_response,
            advice={
                401: refused,
                403: refused,
                404: f"check fetch.steam_api_url ({self.base_url})",
            },
            where="fetch.steam_api_url",
        )


class SavedLibraries(SavedAnswers[str]):
    """``STEAMID.json`` libraries, and ``_private.json`` for profiles that show no games.

    Crawled with :func:`gamerec.dataio.crawl.crawl_items`: libraries already saved and profiles
    known to be private are skipped; ``fetched``, ``skipped``, ``private`` and ``failed``
    partition the distinct ``requested`` steamids.
    """

    stage = "steam libraries"
    missing_list = ItemList(PRIVATE_FILE, "steamids", str, "known private")

    def is_complete(self, item: str, data: Any) -> bool:
        try:
            return parse_owned_games(data, self.directory / f"{item}.json") is not None
        except DataError:
            return False

    def says_missing(self, data: Any) -> bool:
        return "games" not in data["response"]

    def describe(self, item: str, data: Any, missing: bool) -> str:
        if missing:
            return f"{item}: private profile, skipped"
        return f"{item}: {len(data['response']['games']):,} games"
