"""What ``gamerec serve`` accepts: request bodies and query parameters, checked strictly.

Everything here is pure (no sockets, no server state): a decoded JSON body or a query string
goes in, a typed value or an :class:`~gamerec.errors.InvalidRequestError` (422) or
:class:`~gamerec.errors.RequestError` (400) comes out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from gamerec.dataio.ids import MAX_APPID, is_appid_text
from gamerec.errors import InvalidRequestError, RequestError
from gamerec.runtime.recommender import MINUTES_PER_ACHIEVEMENT

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
MAX_HISTORY = 10_000
MAX_GENRES = 64
MAX_TEXT = 256
MAX_MINUTES = 1e9
MAX_ITEMS_LIMIT = 100
_FIELDS = (
    "user_id",
    "time_played",
    "genres",
    "achievements",
    "top_k",
    "exclude_owned",
    "include_dlc",
)


@dataclass(frozen=True)
class RecommendRequest:
    """A validated ``POST /recommend`` payload, as the Recommender's arguments."""

    user_id: str | None = None
    played: dict[int | str, float] = field(default_factory=dict)
    genres: list[str] = field(default_factory=list)
    achievements: dict[int | str, int] = field(default_factory=dict)
    top_k: int = 10
    exclude_owned: bool = True
    include_dlc: bool = False
    #: games given but not scored: the least played, past the history cap
    left_out: int = 0


def _appid_map(name: str, value: Any, integers: bool) -> dict[int | str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"{name} must be an object of appid: {'count' if integers else 'minutes'}, "
            f'like {{"620": 600}}; got {type(value).__name__}'
        )
    if len(value) > MAX_HISTORY:
        raise InvalidRequestError(f"{name} has {len(value)} games; the limit is {MAX_HISTORY}")
    parsed = _valid_appid_map(value, integers)
    if parsed is None:  # something is wrong: find the first wrong entry, to say which
        parsed = _checked_appid_map(name, value, integers)
    return parsed


def _valid_appid_map(value: dict[Any, Any], integers: bool) -> dict[int | str, Any] | None:
    """``value`` parsed when every entry is valid, else None: the checks of
    :func:`_checked_appid_map` over whole columns (a history may hold 10,000 games, and a
    Python loop over them costs as much as recommending)."""
    if not value:
        return {}
    keys, amounts = list(value), list(value.values())
    if not set(map(type, keys)) <= {str}:  # decoded JSON has str keys; a caller may not
        return None
    joined = "".join(keys)
    if not (joined.isascii() and joined.isdigit()) or max(map(len, keys)) > 10:
        return None
    appids = list(map(int, keys))
    allowed = {int} if integers else {int, float}  # exact: True is no number of minutes
    if min(map(len, keys)) < 1 or min(appids) < 1 or max(appids) > MAX_APPID:
        return None
    if not set(map(type, amounts)) <= allowed:
        return None
    # a NaN hides from min and max but not from the sum; infinity is past MAX_MINUTES
    if min(amounts) < 0 or max(amounts) > MAX_MINUTES or not math.isfinite(sum(amounts)):
        return None
    return dict(zip(appids, amounts if integers else map(float, amounts), strict=True))


def _checked_appid_map(name: str, value: dict[Any, Any], integers: bool) -> dict[int | str, Any]:
    parsed: dict[int | str, Any] = {}
    for key, amount in value.items():
        if not isinstance(key, str) or not is_appid_text(key):
            raise InvalidRequestError(
                f'{name}: keys must be appids (digits, like "620"); got {str(key)[:40]!r}'
            )
        if integers:
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise InvalidRequestError(
                    f"{name}[{key}] must be a whole number of achievements; got {amount!r:.40}"
                )
        elif not isinstance(amount, int | float) or isinstance(amount, bool):
            raise InvalidRequestError(
                f"{name}[{key}] must be a number of minutes; got {amount!r:.40}"
            )
        if not 0 <= amount <= MAX_MINUTES:  # also refuses NaN and infinity (1e400)
            raise InvalidRequestError(
                f"{name}[{key}] must be between 0 and {MAX_MINUTES:.0e}; got {amount!r:.40}"
            )
        parsed[int(key)] = amount if integers else float(amount)
    return parsed


def parse_history(
    time_played: Any, achievements: Any, max_history: int = MAX_HISTORY
) -> tuple[dict[int | str, float], dict[int | str, int], int]:
    """The played games of a request: ``time_played`` (appid: minutes) and ``achievements``
    (appid: unlocked), each checked; the one place a request's history is validated.

    Past ``max_history`` distinct games only the most played are kept (an achievement counts
    as much play as it does when recommending; of equals, those given first); returns both
    maps and how many games were left out. A request's cost grows with its history: this
    bounds it.
    """
    played = _appid_map("time_played", time_played, integers=False)
    unlocked = _appid_map("achievements", achievements, integers=True)
    if len(played) + len(unlocked) <= max_history:
        return played, unlocked, 0
    minutes = dict(played)
    for appid, count in unlocked.items():
        minutes[appid] = max(minutes.get(appid, 0.0), count * MINUTES_PER_ACHIEVEMENT)
    if len(minutes) <= max_history:
        return played, unlocked, 0
    # the max_history-th largest, by a sort in C (a heap in Python costs ten times more)
    threshold = sorted(minutes.values(), reverse=True)[max_history - 1]
    kept = {appid for appid, value in minutes.items() if value > threshold}
    for appid, value in minutes.items():
        if len(kept) == max_history:
            break
        if value == threshold:
            kept.add(appid)
    played = {appid: value for appid, value in played.items() if appid in kept}
    unlocked = {appid: count for appid, count in unlocked.items() if appid in kept}
    return played, unlocked, len(minutes) - max_history


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
    played, achievements, left_out = parse_history(
        _given(payload, "time_played", {}), _given(payload, "achievements", {}), max_history
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
    flags = {}
    for name, default in (("exclude_owned", True), ("include_dlc", False)):
        flags[name] = payload.get(name, default)
        if not isinstance(flags[name], bool):
            raise InvalidRequestError(f"{name} must be true or false; got {flags[name]!r:.40}")
    return RecommendRequest(
        user_id=user_id,
        played=played,
        genres=list(genres),
        achievements=achievements,
        top_k=top_k,
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
