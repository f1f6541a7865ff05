"""Loaders of play histories into one raw-interactions frame.

Every loader returns a :class:`LoadedInteractions` whose frame has the columns
``user_id`` (str), ``appid`` (nullable Int64), ``title`` (str or None), ``playtime_min``
(float32; 0 = owned but unplayed) and ``source`` (str), with at most one row per user and game.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gamerec.dataio.files import read_bytes, read_text
from gamerec.errors import DataError

__all__ = [
    "RAW_COLUMNS",
    "LoadedInteractions",
    "load_generic_csv",
    "load_owned_games",
    "load_steam_200k",
    "parse_owned_games",
]

RAW_COLUMNS = ["user_id", "appid", "title", "playtime_min", "source"]


@dataclass
class LoadedInteractions:
    frame: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _finish(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.assign(source=source)
    frame["user_id"] = frame["user_id"].astype(str)
    frame["appid"] = frame["appid"].astype("Int64")
    frame["title"] = frame["title"].astype(object)
    frame["playtime_min"] = frame["playtime_min"].astype(np.float32)
    return frame[RAW_COLUMNS].reset_index(drop=True)


def load_steam_200k(path: str | Path) -> LoadedInteractions:
    """Kaggle steam-200k: ``user_id,title,behavior,value,0`` with purchase and play rows.

    Purchases say who owns a game; play rows give hours. Duplicate purchase rows are dropped
    and counted; duplicate play rows (same user and title) are summed.
    """
    raw = read_bytes(path)
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            header=None,
            names=["user_id", "title", "behavior", "value", "zero"],
            dtype={"user_id": str, "title": str, "behavior": str},
            keep_default_na=False,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"is not a steam-200k CSV ({exc})", path) from None
    value = pd.to_numeric(frame["value"], errors="coerce")
    bad = frame.index[
        ~frame["behavior"].isin(["purchase", "play"]) | value.isna() | (frame["title"] == "")
    ]
    if len(bad):
        line = int(bad[0]) + 1
        raise DataError(
            "expected 5 columns `user_id,title,purchase|play,value,0`; "
            f"got {frame.iloc[bad[0]].tolist()!r}",
            path,
            line,
        )
    frame["value"] = value
    purchases = frame[frame["behavior"] == "purchase"]
    duplicate_purchases = int(purchases.duplicated(["user_id", "title"]).sum())
    owned = frame[["user_id", "title"]].drop_duplicates()
    plays = (
        frame[frame["behavior"] == "play"]
        .groupby(["user_id", "title"], sort=False)["value"]
        .sum()
        .mul(60.0)
        .rename("playtime_min")
    )
    result = owned.merge(plays, on=["user_id", "title"], how="left")
    result["playtime_min"] = result["playtime_min"].fillna(0.0)
    result["appid"] = pd.array([pd.NA] * len(result), dtype="Int64")
    stats = {
        "rows": len(frame),
        "users": int(frame["user_id"].nunique()),
        "games": int(frame["title"].nunique()),
        "duplicate_purchases": duplicate_purchases,
    }
    return LoadedInteractions(_finish(result, "steam-200k"), stats)


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


def load_owned_games(path: str | Path) -> LoadedInteractions:
    """Steam Web API GetOwnedGames responses: one ``STEAMID.json`` file, or a folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json*") if not p.name.startswith("_"))
        if not files:
            raise DataError("has no GetOwnedGames *.json files; run `gamerec fetch owned`", path)
    else:
        files = [path]
    rows: list[dict[str, Any]] = []
    private: list[str] = []
    for file in files:
        try:
            document = json.loads(read_text(file))
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg})", file, exc.lineno) from None
        steamid = file.name.split(".")[0]
        games = parse_owned_games(document, file)
        if games is None:
            private.append(steamid)
            continue
        rows.extend({"user_id": steamid, **game} for game in games)
    frame = pd.DataFrame(rows, columns=["user_id", "appid", "title", "playtime_min"])
    frame = frame.drop_duplicates(["user_id", "appid"])
    stats = {"files": len(files), "private_profiles": len(private), "users": frame.user_id.nunique()}
    return LoadedInteractions(_finish(frame, "owned"), stats)


def load_generic_csv(
    path: str | Path,
    *,
    user_column: str = "user",
    item_column: str = "item",
    value_column: str | None = None,
    value_kind: str = "playtime_min",
    item_key: str = "auto",
) -> LoadedInteractions:
    """A CSV with a header: ``user,item[,playtime|rating]``; the item is an appid or a title.

    Ratings are implicit feedback here: a rated game counts as played; ratings <= 0 are dropped.
    """
    raw = read_bytes(path)
    header = next(csv.reader(io.StringIO(raw[:65536].decode("utf-8", "replace"))), [])
    wanted = [user_column, item_column] + ([value_column] if value_column else [])
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(
            f"has no column(s) {missing}; its header is {header}. Set user_column / item_column /"
            " value_column of this input in gamerec.toml",
            path,
            1,
        )
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            usecols=wanted,
            dtype={user_column: str, item_column: str},
            engine="pyarrow",
        )
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise DataError(f"cannot be parsed as CSV ({exc})", path) from None
    frame = frame.rename(columns={user_column: "user_id", item_column: "item"})
    frame = frame.dropna(subset=["user_id", "item"])
    items = frame["item"].astype(str).str.strip()
    numeric = pd.to_numeric(items, errors="coerce")
    if item_key == "appid" and numeric.isna().any():
        row = int(numeric.index[numeric.isna()][0])
        raise DataError(f"item {items[row]!r} is not an appid", path, row + 2)
    as_appid = numeric.notna() if item_key != "title" else pd.Series(False, index=items.index)
    frame["appid"] = numeric.where(as_appid).astype("Int64")
    frame["title"] = items.where(~as_appid, None)
    if value_column:
        value = pd.to_numeric(frame[value_column], errors="coerce")
        if value.isna().any():
            row = int(value.index[value.isna()][0])
            raise DataError(
                f"{value_column} {frame[value_column][row]!r} is not a number", path, row + 2
            )
        if value_kind == "rating":
            frame = frame[value > 0]
            frame["playtime_min"] = 0.0
        else:
            if (value < 0).any():
                row = int(value.index[value < 0][0])
                raise DataError(f"{value_column} is negative", path, row + 2)
            frame["playtime_min"] = value * (60.0 if value_kind == "playtime_hours" else 1.0)
    else:
        frame["playtime_min"] = 0.0
    frame["key"] = frame["appid"].astype(str) + "|" + frame["title"].astype(str)
    frame = frame.groupby(["user_id", "key"], sort=False, as_index=False).agg(
        appid=("appid", "first"), title=("title", "first"), playtime_min=("playtime_min", "sum")
    )
    stats = {"rows": len(raw.splitlines()) - 1, "users": int(frame["user_id"].nunique())}
    return LoadedInteractions(_finish(frame, "csv"), stats)
