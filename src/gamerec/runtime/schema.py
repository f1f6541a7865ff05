"""What ``gamerec serve`` accepts: request bodies and query parameters, checked strictly.

Everything here is pure (no sockets, no server state): a decoded JSON body or a query string
goes in, a typed value or an :class:`~gamerec.errors.InvalidRequestError` (422) or
:class:`~gamerec.errors.RequestError` (400) comes out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gamerec.dataio.history import MAX_GAMES, MAX_MINUTES, History
from gamerec.errors import InvalidRequestError, RequestError

__all__ = [
    "MAX_GENRES",
    "MAX_HISTORY",
    "MAX_ITEMS_LIMIT",
    "MAX_MINUTES",
    "MAX_TEXT",
    "RecommendRequest",
    "decode_json",
    "int_param",
    "parse_history",
    "parse_recommend_request",
]

#: limits of a /recommend payload, beyond max_body_bytes
MAX_HISTORY = MAX_GAMES
MAX_GENRES = 64
#: games given by name are found among every catalog name, one by one: a few per request
MAX_NAMED_GAMES = 100
MAX_TEXT = 256
MAX_ITEMS_LIMIT = 100
_FIELDS = (
    "user_id",
    "time_played",
    "games",
    "genres",
    "achievements",
    "top_k",
    "exclude_owned",
    "include_dlc",
    "released_since",
)


@dataclass(frozen=True)
class RecommendRequest:
    """A validated ``POST /recommend`` payload, as the Recommender's arguments."""

    user_id: str | None = None
    history: History = field(default_factory=History)
    #: games owned, by name or appid (no playtime)
    games: list[str | int] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    top_k: int = 10
    exclude_owned: bool = True
    include_dlc: bool = False
    #: only games released in or after this year
    released_since: int | None = None
    #: games given but not scored: the least played, past the history cap
    left_out: int = 0


def parse_history(
    time_played: Any, achievements: Any, max_history: int = MAX_HISTORY
) -> tuple[History, int]:
    """The played games of a request, checked by :class:`~gamerec.dataio.history.History`'s
    rules (the same as ``--played`` and ``played=``): ``time_played`` (appid: minutes) and
    ``achievements`` (appid: unlocked).

    Past ``max_history`` distinct games only the most played are kept
    (:meth:`History.most_played`); returns the history and how many games were left out.
    """
    given = History.from_mappings(
        time_played, achievements, played_name="time_played", achievements_name="achievements"
    )
    return given.most_played(max_history)


def _given(payload: dict[str, Any], name: str, default: Any) -> Any:
    value = payload.get(name)
    return default if value is None else value


def parse_recommend_request(
    payload: Any, max_top_k: int, default_top_k: int = 10, max_history: int = MAX_HISTORY
) -> RecommendRequest:
    """Check a decoded ``/recommend`` JSON body strictly; InvalidRequestError (422) says why.

    Unknown fields, wrong types, non-finite or negative numbers and ``top_k`` outside
    ``1..max_top_k`` are refused. Unknown users, games and genres are the Recommender's to judge.
    A history of more than ``max_history`` games keeps its most played (see
    :func:`parse_history`).
    """
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            f"the body must be a JSON object with some of {', '.join(_FIELDS)}; "
            f"got {type(payload).__name__}"
        )
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidRequestError(f"unknown field(s) {shown}; allowed: {', '.join(_FIELDS)}")
    user_id = payload.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not user_id.strip()):
        raise InvalidRequestError(f"user_id must be a non-empty string; got {user_id!r:.40}")
    if user_id is not None and len(user_id) > MAX_TEXT:
        raise InvalidRequestError(f"user_id is longer than {MAX_TEXT} characters")
    # null stands for "not given"; any other value must have the right type (0 and "" too)
    history, left_out = parse_history(
        _given(payload, "time_played", {}), _given(payload, "achievements", {}), max_history
    )
    games = _given(payload, "games", [])
    if not isinstance(games, list) or not all(
        isinstance(g, str) or (isinstance(g, int) and not isinstance(g, bool)) for g in games
    ):
        raise InvalidRequestError(f"games must be a list of names or appids; got {games!r:.60}")
    if len(games) > MAX_NAMED_GAMES or any(isinstance(g, str) and len(g) > MAX_TEXT for g in games):
        raise InvalidRequestError(
            f"games: at most {MAX_NAMED_GAMES} names of {MAX_TEXT} characters (give more "
            "games by appid in time_played)"
        )
    genres = _given(payload, "genres", [])
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise InvalidRequestError(f"genres must be a list of strings; got {genres!r:.60}")
    if len(genres) > MAX_GENRES or any(len(g) > MAX_TEXT for g in genres):
        raise InvalidRequestError(f"genres: at most {MAX_GENRES} names of {MAX_TEXT} characters")
    top_k = payload.get("top_k", default_top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise InvalidRequestError(f"top_k must be a whole number; got {top_k!r:.40}")
    if not 1 <= top_k <= max_top_k:
        raise InvalidRequestError(f"top_k must be between 1 and {max_top_k}; got {top_k}")
    since = payload.get("released_since")
    if since is not None and (
        not isinstance(since, int) or isinstance(since, bool) or not 1970 <= since <= 2100
    ):
        raise InvalidRequestError(f"released_since must be a year such as 2022; got {since!r:.40}")
    flags = {}
    for name, default in (("exclude_owned", True), ("include_dlc", False)):
        flags[name] = payload.get(name, default)
        if not isinstance(flags[name], bool):
            raise InvalidRequestError(f"{name} must be true or false; got {flags[name]!r:.40}")
    return RecommendRequest(
        user_id=user_id,
        history=history,
        games=list(games),
        genres=list(genres),
        top_k=top_k,
        released_since=since,
        left_out=left_out,
        **flags,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes) -> Any:
    """A request body as JSON (UTF-8, no NaN or Infinity); RequestError 400 says why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON ({str(exc)[:120]})") from None


def int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as a whole number in ``low..high`` (``default`` when absent)."""
    text = params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise InvalidRequestError(f"{name} must be a whole number; got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}; got {value}")
    return value
