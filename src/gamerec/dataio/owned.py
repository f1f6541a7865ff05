"""Parsing Steam Web API GetOwnedGames responses (no pandas: the runtime reads libraries too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gamerec.errors import DataError

__all__ = ["parse_owned_games"]


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
        if not isinstance(game, dict) or not isinstance(game.get("appid"), int):
            raise DataError(f"game #{position} has no integer appid", where)
        minutes = game.get("playtime_forever", 0)
        if not isinstance(minutes, int | float) or minutes < 0:
            raise DataError(f"game #{position} has an invalid playtime_forever", where)
        rows.append({"appid": game["appid"], "title": game.get("name"), "playtime_min": minutes})
    return rows
