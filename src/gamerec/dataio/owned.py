"""Parsing Steam Web API GetOwnedGames responses (no pandas: the runtime reads libraries too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gamerec.dataio.ids import appid_or_none
from gamerec.errors import DataError

__all__ = ["MAX_PLAYTIME_MIN", "parse_owned_games"]

#: a century of play, in minutes: anything above is not a real playtime (and would swamp
#: the log-scaled weights)
MAX_PLAYTIME_MIN = 100 * 365 * 24 * 60


def parse_owned_games(document: Any, where: Path) -> list[dict[str, Any]] | None:
    """Games of one GetOwnedGames response; ``None`` for a private profile (empty response)."""
    if not isinstance(document, dict) or not isinstance(document.get("response"), dict):
        raise DataError('is not a GetOwnedGames response (no "response" object)', where)
    response = document["response"]
    if "games" not in response:
        return None
    games = response["games"]
    if not isinstance(games, list):
        raise DataError('"response.games" is not a list', where)
    rows = []
    for position, game in enumerate(games):
        appid = appid_or_none(game.get("appid")) if isinstance(game, dict) else None
        if appid is None:
            shown = repr(game.get("appid") if isinstance(game, dict) else game)[:60]
            raise DataError(f"game #{position} has no valid appid ({shown})", where)
        minutes = game.get("playtime_forever", 0)
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not 0 <= minutes <= MAX_PLAYTIME_MIN  # also false for NaN
        ):
            raise DataError(
                f"game #{position} (appid {appid}) has an invalid playtime_forever "
                f"{repr(minutes)[:40]} (minutes, from 0 to {MAX_PLAYTIME_MIN:,})",
                where,
            )
        rows.append({"appid": appid, "title": game.get("name"), "playtime_min": float(minutes)})
    return rows
