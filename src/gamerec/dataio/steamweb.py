"""Steam Web API: the game libraries of given players (``IPlayerService/GetOwnedGames/v1``).

The API key travels in the ``x-webapi-key`` header (which Steam accepts in place of the
``key`` parameter), so it is never part of a URL, and with that never in httpx's request log or
an error message; it is never written to disk either.

The crawler writes each public library, byte for byte and atomically, where
:func:`gamerec.dataio.interactions.load_owned_games` reads it::

    raw/steam/owned/STEAMID.json      one GetOwnedGames response
    raw/steam/owned/_private.json     {"steamids": [...]}: private profiles (no games shown)
    raw/steam/_quota.json             {"day": "YYYY-MM-DD", "calls": N}: calls made that UTC day

Steam allows 100,000 calls a day per key; :class:`DailyQuota` counts every request (retries
included) and stops before the configured limit with a RateLimitError.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from gamerec.artifacts import atomic_write_bytes, atomic_write_json
from gamerec.dataio.files import read_bytes, read_text
from gamerec.dataio.http_client import (
    FailureBudget,
    Fetched,
    PoliteClient,
    ProgressFn,
    RetryNotice,
    RetryPolicy,
    no_progress,
    retries_reported,
)
from gamerec.dataio.owned import parse_owned_games
from gamerec.errors import (
    DataError,
    FetchError,
    InvalidRequestError,
    RateLimitError,
)

__all__ = [
    "PRIVATE_FILE",
    "DailyQuota",
    "SteamWebClient",
    "crawl_owned",
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


class DailyQuota:
    """Counts Steam Web API calls per UTC day in a small JSON file; refuses the one too many."""

    def __init__(self, path: str | Path, limit: int, today: Callable[[], date] = _utc_today):
        self.path = Path(path)
        self.limit = limit
        self._today = today

    def used(self) -> int:
        """Calls made so far today (0 on a new day or when the file is missing or damaged)."""
        try:
            state = json.loads(read_bytes(self.path))
        except (DataError, ValueError):
            return 0
        if not isinstance(state, dict) or state.get("day") != self._today().isoformat():
            return 0
        calls = state.get("calls")
        return calls if isinstance(calls, int) and calls >= 0 else 0

    def spend(self) -> None:
        """Count one call, or raise RateLimitError if today's calls have reached the limit."""
        used = self.used()
        if used >= self.limit:
            raise RateLimitError(
                f"the Steam Web API daily limit is reached: {used:,} of {self.limit:,} calls "
                "made today (UTC; setting fetch.daily_limit); run again after midnight UTC"
            )
        # counted before the request is sent, so a crash never under-counts
        atomic_write_json(self.path, {"day": self._today().isoformat(), "calls": used + 1})


def _is_owned_games_response(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("response"), dict):
        return False
    games = data["response"].get("games")
    return games is None or isinstance(games, list)


class SteamWebClient:
    """The Steam Web API calls gamerec makes, one request per second by default."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.steampowered.com",
        *,
        interval_s: float = 1.0,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[RetryNotice], None] | None = None,
        before_request: Callable[[], None] | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise FetchError(f"no Steam Web API key: {KEY_HELP}")
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        self.http = PoliteClient(
            timeout_s=timeout_s,
            retry=RetryPolicy(max_retries, backoff_base_s, backoff_max_s),
            headers={"Accept": "application/json", "x-webapi-key": api_key.strip()},
            transport=transport,
            client=client,
            sleep=sleep,
            clock=clock,
            on_retry=on_retry,
            before_request=before_request,
            secrets=[api_key, api_key.strip()],
        )

    def __repr__(self) -> str:
        return f"SteamWebClient({self.base_url!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SteamWebClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        )


def _read_private(directory: Path) -> set[str]:
    try:
        state = json.loads(read_bytes(directory / PRIVATE_FILE))
    except (DataError, ValueError):
        return set()
    steamids = state.get("steamids") if isinstance(state, dict) else None
    if not isinstance(steamids, list):
        return set()
    return {s for s in steamids if isinstance(s, str)}


def _saved_library(directory: Path, steamid: str) -> bool:
    path = directory / f"{steamid}.json"
    if not path.is_file():
        return False
    try:
        return parse_owned_games(json.loads(read_bytes(path)), path) is not None
    except (DataError, ValueError):
        return False


def crawl_owned(
    client: SteamWebClient,
    directory: str | Path,
    steamids: Sequence[str],
    *,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Fetch each player's library into ``directory/STEAMID.json``.

    Libraries already saved and profiles known to be private are skipped; newly private ones
    are recorded in ``_private.json``. ``fetched``, ``skipped`` (saved before), ``private`` and
    ``failed`` partition the distinct ``requested`` steamids.
    """
    directory = Path(directory)
    stage = "steam libraries"
    wanted = validate_steamids(steamids)
    private = _read_private(directory)
    known_private = [s for s in wanted if s in private]
    saved = {s for s in wanted if s not in private and _saved_library(directory, s)}
    todo = [s for s in wanted if s not in private and s not in saved]
    if saved or known_private:
        progress(
            stage,
            f"{len(saved):,} already saved, {len(known_private):,} known private; "
            f"{len(todo):,} to fetch",
            0.0 if todo else 1.0,
        )
    fetched: list[str] = []
    newly_private: list[str] = []
    failed: dict[str, str] = {}
    budget = FailureBudget()
    with retries_reported(client.http, progress, stage):
        for done, steamid in enumerate(todo, start=1):
            try:
                answer = client.owned_games(steamid)
            except RateLimitError as error:
                raise RateLimitError(
                    f"{error.message} ({len(fetched):,} libraries fetched in this run are "
                    f"saved; {len(todo) - done + 1:,} remain)"
                ) from None
            except FetchError as error:
                budget.failed(error)
                failed[steamid] = error.message
                continue
            budget.succeeded()
            if "games" not in answer.data["response"]:
                private.add(steamid)
                newly_private.append(steamid)
                atomic_write_json(directory / PRIVATE_FILE, {"steamids": sorted(private)})
                message = f"{steamid}: private profile, skipped"
            else:
                atomic_write_bytes(directory / f"{steamid}.json", answer.body)
                fetched.append(steamid)
                message = f"{steamid}: {len(answer.data['response']['games']):,} games"
            progress(stage, f"{message} ({done:,}/{len(todo):,})", done / len(todo))
    budget.finish()
    return {
        "requested": len(wanted),
        "fetched": len(fetched),
        "skipped": len(saved),
        "private": len(newly_private) + len(known_private),
        "private_steamids": sorted(set(newly_private) | set(known_private)),
        "failed": failed,
    }
