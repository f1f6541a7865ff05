"""Loaders of play histories into one raw-interactions frame.

Every loader returns a :class:`LoadedInteractions` whose frame has the columns
``user_id`` (str), ``appid`` (nullable Int64), ``title`` (str or None), ``playtime_min``
(float32; 0 = owned but unplayed) and ``source`` (str), with at most one row per user and game.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gamerec.dataio.files import read_bytes, read_json
from gamerec.dataio.ids import MAX_APPID
from gamerec.dataio.owned import MAX_PLAYTIME_MIN, parse_owned_games
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
        # No `names=`: with names, pandas silently turns surplus leading columns into the index.
        frame = pd.read_csv(
            io.BytesIO(raw),
            header=None,
            dtype={0: str, 1: str, 2: str},
            keep_default_na=False,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"is not a steam-200k CSV ({exc})", path) from None
    if frame.shape[1] != 5:
        raise DataError(
            f"has {frame.shape[1]} columns, expected 5 (`user_id,title,purchase|play,value,0`); "
            'is it a steam-200k file? Use kind = "csv" for other play histories',
            path,
            1,
        )
    frame.columns = pd.Index(["user_id", "title", "behavior", "value", "zero"])
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
    # a negative, non-finite or absurd number of hours would poison training (NaN embeddings)
    unusable = frame.index[~value.between(0.0, MAX_PLAYTIME_MIN / 60.0)]
    if len(unusable):
        row = int(unusable[0])
        raise DataError(
            f"{frame['behavior'][row]} value {frame['value'][row]!r} is not a number of hours "
            f"from 0 to {MAX_PLAYTIME_MIN / 60:,.0f}",
            path,
            row + 1,
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


def load_owned_games(path: str | Path) -> LoadedInteractions:
    """Steam Web API GetOwnedGames responses: one ``STEAMID.json`` file, or a folder of them."""
    path = Path(path)
    if path.is_dir():
        # "_" marks state files (_private.json); "." an unfinished atomic write's temp file
        files = sorted(p for p in path.glob("*.json*") if not p.name.startswith(("_", ".")))
        if not files:
            raise DataError("has no GetOwnedGames *.json files; run `gamerec fetch owned`", path)
    else:
        files = [path]
    rows: list[dict[str, Any]] = []
    private: list[str] = []
    for file in files:
        document = read_json(file)
        steamid = file.name.split(".")[0]
        games = parse_owned_games(document, file)
        if games is None:
            private.append(steamid)
            continue
        rows.extend({"user_id": steamid, **game} for game in games)
    frame = pd.DataFrame(rows, columns=["user_id", "appid", "title", "playtime_min"])
    frame = frame.drop_duplicates(["user_id", "appid"])
    stats = {
        "files": len(files),
        "private_profiles": len(private),
        "users": frame.user_id.nunique(),
    }
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

    An item is an appid when it is all digits (``item_key="auto"``), always (``"appid"``, other
    values are an error) or never (``"title"``). Empty users or items are skipped. Rows of the
    same user and game are merged, their playtimes summed. Ratings are implicit feedback here:
    a rated game counts as owned; ratings <= 0 are dropped.
    """
    raw = read_bytes(path)
    wanted = [user_column, item_column] + ([value_column] if value_column else [])
    _check_csv_header(raw, wanted, path)
    table = _read_csv_table(raw, wanted, user_column, item_column, path)
    del raw
    rows = _CsvRows.with_user_and_item(table, user_column, item_column, item_key)
    if item_key == "appid":
        _require_appids(rows, path)
    n_rows = rows.table.num_rows
    if value_column:
        rows, playtime = _csv_playtimes(rows, value_column, value_kind, path)
    else:
        playtime = np.zeros(len(rows.items), dtype=np.float64)
    frame, first_user_codes = _one_row_per_user_game(rows, playtime, user_column)
    stats = {"rows": n_rows, "users": int(np.count_nonzero(np.bincount(first_user_codes)))}
    return LoadedInteractions(_finish(frame, "csv"), stats)


def _check_csv_header(raw: bytes, wanted: list[str], path: str | Path) -> None:
    """Fails, naming what the header does hold, unless every column ``wanted`` is in it."""
    first_line = raw[:65536].split(b"\n", 1)[0].decode("utf-8-sig", "replace").rstrip("\r")
    header = next(csv.reader([first_line]), [])
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(
            f"has no column(s) {missing}; its header is {header}. Set user_column / item_column /"
            " value_column of this input in gamerec.toml",
            path,
            1,
        )


def _read_csv_table(
    raw: bytes, wanted: list[str], user_column: str, item_column: str, path: str | Path
) -> pa.Table:
    """The ``wanted`` columns, users and items as strings, empty cells as nulls."""
    try:
        return pacsv.read_csv(
            io.BytesIO(raw),
            # blank lines stay (as empty rows, which _CsvRows skips) so row r is on line r + 2
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={user_column: pa.string(), item_column: pa.string()},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowException as exc:
        raise DataError(f"cannot be parsed as CSV ({exc})", path) from None


@dataclass(frozen=True)
class _CsvRows:
    """The CSV rows kept so far, and per row its item, whether that is an appid, and its line."""

    table: pa.Table
    items: pa.Array
    appid: np.ndarray
    as_appid: np.ndarray
    line: np.ndarray  # the file line of each row, for messages

    @classmethod
    def with_user_and_item(
        cls, table: pa.Table, user_column: str, item_column: str, item_key: str
    ) -> _CsvRows:
        """The rows that name both a user and an item (an empty cell is a null)."""
        present = pc.and_(pc.is_valid(table[user_column]), pc.is_valid(table[item_column]))
        # + 2: the header is line 1 and rows count from 0 (blank lines stay rows when read)
        line = np.flatnonzero(present.to_numpy(zero_copy_only=False)) + 2
        table = table.filter(present)
        items = table[item_column].combine_chunks()
        appid, as_appid = _appids(items, item_key)
        return cls(table, items, appid, as_appid, line)

    def keep(self, mask: np.ndarray) -> _CsvRows:
        """Only the rows where ``mask`` is true."""
        return _CsvRows(
            self.table.filter(mask),
            self.items.filter(mask),
            self.appid[mask],
            self.as_appid[mask],
            self.line[mask],
        )


def _require_appids(rows: _CsvRows, path: str | Path) -> None:
    """With ``item_key="appid"``, an item that is not an appid is an error naming its line."""
    if not rows.as_appid.all():
        row = int(np.flatnonzero(~rows.as_appid)[0])
        raise DataError(
            f"item {rows.items[row].as_py()!r} is not an appid", path, int(rows.line[row])
        )


def _csv_playtimes(
    rows: _CsvRows, value_column: str, value_kind: str, path: str | Path
) -> tuple[_CsvRows, np.ndarray]:
    """Minutes played per row, from playtimes (minutes or hours) or ratings. A rating says only
    that the game is owned (0 minutes), so the rows rated 0 or less are dropped."""
    value = _numeric_column(rows.table[value_column], value_column, path, rows.line)
    if value_kind == "rating":
        rows = rows.keep(value > 0)
        return rows, np.zeros(len(rows.items), dtype=np.float64)
    playtime = value * (60.0 if value_kind == "playtime_hours" else 1.0)
    unusable = ~((playtime >= 0) & (playtime <= MAX_PLAYTIME_MIN))
    if unusable.any():
        row = int(np.flatnonzero(unusable)[0])
        problem = "is negative" if value[row] < 0 else "is too large for a playtime"
        raise DataError(f"{value_column} {problem} ({value[row]:g})", path, int(rows.line[row]))
    return rows, playtime


def _item_codes(rows: _CsvRows) -> np.ndarray:
    """A code per row for its game: its appid, or else its (trimmed) title."""
    item_codes = np.empty(len(rows.items), dtype=np.int64)
    appid_codes, _ = pd.factorize(rows.appid[rows.as_appid])
    item_codes[rows.as_appid] = appid_codes
    if not rows.as_appid.all():
        titles = pc.utf8_trim_whitespace(rows.items.filter(pa.array(~rows.as_appid)))
        title_codes, _ = pd.factorize(titles.to_numpy(zero_copy_only=False))
        item_codes[~rows.as_appid] = title_codes + (
            appid_codes.max() + 1 if len(appid_codes) else 0
        )
    return item_codes


def _one_row_per_user_game(
    rows: _CsvRows, playtime: np.ndarray, user_column: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per user and game, at the first row's place, playtimes summed; and the user code
    of each of those rows."""
    item_codes = _item_codes(rows)
    users = rows.table[user_column].combine_chunks().dictionary_encode()
    user_codes = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair, _ = pd.factorize(user_codes * (int(item_codes.max(initial=0)) + 1) + item_codes)
    # factorize numbers pairs in order of appearance: a row is a pair's first if its code is new
    is_first = np.ones(len(pair), dtype=bool)
    is_first[1:] = pair[1:] > np.maximum.accumulate(pair)[:-1]
    first = np.flatnonzero(is_first)
    summed = np.bincount(pair, weights=playtime, minlength=len(first))
    is_appid = rows.as_appid[first]
    title_of_row = np.full(len(first), None, dtype=object)
    if not is_appid.all():
        named = pa.array(first[~is_appid])
        title_of_row[~is_appid] = pc.utf8_trim_whitespace(rows.items.take(named)).to_numpy(
            zero_copy_only=False
        )
    frame = pd.DataFrame(
        {
            "user_id": users.dictionary.take(users.indices.take(pa.array(first))).to_pandas(),
            "appid": pd.arrays.IntegerArray(rows.appid[first], ~is_appid),
            "title": title_of_row,
            "playtime_min": summed,
        }
    )
    return frame, user_codes[first]


def _appids(items: pa.Array, item_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(appid, is_appid)`` per item: an appid is ASCII digits (spaces around are fine) naming
    a valid appid, the rule of :mod:`gamerec.dataio.ids`; with ``item_key="title"`` nothing is
    an appid."""
    if item_key == "title":
        return np.zeros(len(items), dtype=np.int64), np.zeros(len(items), dtype=bool)
    try:  # the common case, every item an appid: one cast, no string scans
        values = pc.cast(items, pa.uint64()).to_numpy(zero_copy_only=False)
        if len(values) == 0 or (values.min() > 0 and values.max() <= MAX_APPID):
            return values.astype(np.int64), np.ones(len(items), dtype=bool)
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(items)
    digits = pc.match_substring_regex(trimmed, r"^[0-9]{1,10}$").to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(pa.array(digits), trimmed, "0"), pa.uint64()).to_numpy(
        zero_copy_only=False
    )
    is_appid = digits & (values > 0) & (values <= MAX_APPID)
    return np.where(is_appid, values, 0).astype(np.int64), is_appid


def _numeric_column(
    column: pa.ChunkedArray, name: str, path: str | Path, line: np.ndarray
) -> np.ndarray:
    """A CSV column as float64; a missing or non-numeric cell is an error naming its line."""
    values = column.combine_chunks()
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
        numbers = values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        valid &= ~np.isnan(numbers)
    else:
        text = pd.Series(values.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        parsed = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        valid = ~np.isnan(parsed)
        numbers = np.where(valid, parsed, 0.0)
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0])
        cell = values[row].as_py()
        raise DataError(f"{name} {cell!r} is not a number", path, int(line[row]))
    infinite = ~np.isfinite(numbers)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        cell = values[row].as_py()
        raise DataError(f"{name} {cell!r} is not a finite number", path, int(line[row]))
    return numbers
