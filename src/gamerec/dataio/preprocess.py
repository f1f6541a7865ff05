"""Raw interactions + item metadata -> the ``processed/`` tables and the P-SG split.

Contracts (DESIGN.md):

- items: ``item_idx`` (int32, 0..n-1), ``appid`` (Int64), ``name``, ``genres``, ``tags``,
  ``developer``, ``publisher``, ``price_cents``, ``owners_low``, ``owners_high``, ``positive``,
  ``negative``, ``release_date``, ``n_users`` (owners in the data), ``title_key``
- users: ``user_idx`` (int32), ``user_id`` (str), ``group`` (train | valid | test)
- interactions: ``user_idx``, ``item_idx`` (int32), ``playtime_min`` (float32), ``source``,
  sorted by user then item
- split: one row per interaction, same order: ``user_idx``, ``item_idx``, ``group``, ``role``
  (``train`` for training users' rows, else ``foldin`` or ``target``)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gamerec.artifacts.processed import Processed
from gamerec.dataio.catalog import (
    EXTRA_COLUMNS,
    METADATA_COLUMNS,
    load_catalog_table,
    load_steam_csv,
    load_steamspy,
    load_ucsd,
    merge_metadata,
)
from gamerec.dataio.families import Families, find_families
from gamerec.dataio.files import normalise_title
from gamerec.dataio.interactions import (
    LoadedInteractions,
    load_generic_csv,
    load_owned_games,
    load_steam_200k,
)
from gamerec.dataio.kinds import KINDS_WITH_BASE, RECOMMENDABLE_KINDS, Kind, classify_why
from gamerec.dataio.store_records import load_store, store_report
from gamerec.errors import DataError

__all__ = [
    "GROUPS",
    "ROLES",
    "Source",
    "build_processed",
    "load_sources",
    "make_split",
]

GROUPS = ("train", "valid", "test")
ROLES = ("train", "foldin", "target")


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` as in settings, a path, and loader options (csv column mapping)."""

    kind: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


def load_sources(
    sources: Sequence[Source],
) -> tuple[list[LoadedInteractions], list[pd.DataFrame]]:
    interactions: list[LoadedInteractions] = []
    metadata: list[pd.DataFrame] = []
    for source in sources:
        if source.kind == "steam-200k":
            interactions.append(load_steam_200k(source.path))
        elif source.kind == "owned":
            interactions.append(load_owned_games(source.path))
        elif source.kind == "csv":
            interactions.append(load_generic_csv(source.path, **source.options))
        elif source.kind == "steam-csv":
            metadata.append(load_steam_csv(source.path))
        elif source.kind == "ucsd":
            metadata.append(load_ucsd(source.path))
        elif source.kind == "steamspy":
            metadata.append(load_steamspy(source.path))
        elif source.kind == "catalog":
            metadata.append(load_catalog_table(source.path))
        elif source.kind == "store":
            metadata.append(load_store(source.path))
        else:
            raise DataError(f"unknown input kind {source.kind!r}", source.path)
    if not interactions:
        raise DataError(
            "no interactions among the inputs: add one of kind steam-200k, owned or csv "
            "to [[preprocess.inputs]] in gamerec.toml"
        )
    return interactions, metadata


def _title_index(metadata: pd.DataFrame) -> pd.DataFrame:
    """Metadata rows by normalised title (names and aliases); among namesakes the most
    reviewed game wins, and a name beats another game's alias."""
    aliases = metadata[["aliases"]].explode("aliases").dropna()
    by_alias = metadata.loc[aliases.index].assign(_alias_name=aliases["aliases"].to_numpy())
    keyed = pd.concat(
        [
            metadata.assign(title_key=metadata["name"].map(normalise_title), _is_alias=0),
            by_alias.assign(title_key=by_alias["_alias_name"].map(normalise_title), _is_alias=1),
        ],
        ignore_index=True,
    ).drop(columns="_alias_name")
    keyed = keyed[keyed["title_key"] != ""]
    reviews = keyed["positive"].fillna(0) + keyed["negative"].fillna(0)
    keyed = keyed.assign(_reviews=reviews.astype("int64"))
    keyed = keyed.sort_values(
        ["_is_alias", "_reviews", "appid"], ascending=[True, False, True], na_position="last"
    )
    return keyed.drop_duplicates("title_key").drop(columns=["_reviews", "_is_alias"])


_YEAR = re.compile(r"\b(19[7-9]\d|20\d\d)\b")


def _release_year(date: Any) -> Any:
    match = _YEAR.search(date) if isinstance(date, str) else None
    return int(match.group(1)) if match else pd.NA


#: what decided a kind or a year where no rule of :mod:`gamerec.dataio.kinds` did
BY_STORE, BY_CATALOG, BY_OTHERS, BY_NOTHING = "store", "catalog table", "other sources", "none"


def _describe_items(items: pd.DataFrame) -> pd.DataFrame:
    """What each item is: its kind, whether it may be recommended, its release year, and which
    source decided the kind (``kind_from``) and the year (``year_from``)."""
    years = items["release_year"].astype("Int64")
    missing_year = years.isna()
    years[missing_year] = items.loc[missing_year, "release_date"].map(_release_year)
    from_store = items["year_from"].eq(BY_STORE).fillna(False).to_numpy(dtype=bool)
    year_from = np.where(from_store, BY_STORE, np.where(years.notna(), BY_OTHERS, BY_NOTHING))
    kinds: list[str] = []
    kind_from: list[str] = []
    for kind, decided_by, appid, name, genres, tags in zip(
        items["kind"],
        items["kind_from"],
        items["appid"].astype(object).where(items["appid"].notna(), None),
        items["name"],
        items["genres"],
        items["tags"],
        strict=True,
    ):
        if isinstance(kind, str) and isinstance(appid, (int, np.integer)):
            kinds.append(kind)
            kind_from.append(BY_STORE if decided_by == BY_STORE else BY_CATALOG)
        else:
            rule_kind, rule = classify_why(name, appid=appid, genres=genres, tags=tags)
            kinds.append(str(rule_kind))
            kind_from.append(rule)
    base = items["base_appid"].astype("Int64")
    has_base = np.array([kind in KINDS_WITH_BASE for kind in kinds], dtype=bool)
    return items.assign(
        release_year=years.astype("Int16"),
        kind=kinds,
        base_appid=base.where(has_base, pd.NA),
        recommendable=np.array([kind in RECOMMENDABLE_KINDS for kind in kinds], dtype=bool),
        kind_from=kind_from,
        year_from=year_from,
    )


def _families(items: pd.DataFrame) -> Families:
    """Which items are editions of one game (:mod:`gamerec.dataio.families`)."""

    def numbers(*names: str) -> np.ndarray:
        columns = [pd.to_numeric(items[n], errors="coerce").astype("float64") for n in names]
        return np.asarray(sum(columns), dtype=np.float64)

    return find_families(
        items["name"].tolist(),
        items["developer"].tolist(),
        items["publisher"].tolist(),
        owners=numbers("owners_low", "owners_high") / 2,
        reviews=numbers("positive", "negative"),
        eligible=items["recommendable"].to_numpy(dtype=bool),
    )


def _sources_report(items: pd.DataFrame, metadata: Sequence[pd.DataFrame]) -> dict[str, Any]:
    """How many catalog items each source gave their kind and release year, how many games
    that may be recommended have no year, and what the store inputs held."""
    games = items["recommendable"].to_numpy(dtype=bool)
    year_from = items["year_from"].to_numpy()
    report: dict[str, Any] = {
        "kind_from": {str(k): int(v) for k, v in items["kind_from"].value_counts().items()},
        "year_from": {
            source: int((year_from == source).sum()) for source in (BY_STORE, BY_OTHERS, BY_NOTHING)
        },
        "recommendable_without_year": int((year_from[games] == BY_NOTHING).sum()),
    }
    stores = [frame for frame in metadata if "store_type" in frame.columns]
    if stores:
        report["store"] = store_report(pd.concat(stores, ignore_index=True))
    return report


def _catalog_only(
    metadata: pd.DataFrame, played_appids: set[int], min_owners: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The metadata's games nobody in the play data owns, above ``min_owners`` SteamSpy owners,
    most owned first, and what was left out and why."""
    with_id = metadata[metadata["appid"].notna()]
    unplayed = with_id[~with_id["appid"].isin(played_appids)]
    owners = unplayed["owners_low"]
    no_owners = owners.isna()
    below = ~no_owners & (owners.fillna(0) < min_owners)
    kept = unplayed[~no_owners & ~below]
    kept = kept.sort_values(
        ["owners_low", "positive", "appid"], ascending=[False, False, True], na_position="last"
    )

    def examples(frame: pd.DataFrame) -> list[str]:
        head = frame.head(5)
        return [f"{n} ({a})" for a, n in zip(head["appid"], head["name"], strict=True)]

    report = {
        "min_owners": min_owners,
        "below_min_owners": int(below.sum()),
        "below_min_owners_examples": examples(unplayed[below]),
        "no_owners_figure": int(no_owners.sum()),
        "no_owners_figure_examples": examples(unplayed[no_owners]),
    }
    return kept, report


def _k_core(
    users: np.ndarray, items: np.ndarray, min_user_items: int, min_item_users: int
) -> np.ndarray:
    """Positions of the rows kept once every user has and every game is owned enough times.

    Each round drops every row whose user or game is short, then recounts (at most 100 rounds).
    """
    user_count, item_count = np.bincount(users), np.bincount(items)
    alive = np.ones(len(users), dtype=bool)
    for _ in range(100):
        short = (user_count < min_user_items)[users] | (item_count < min_item_users)[items]
        drop = alive & short
        if not drop.any():
            break
        alive &= ~drop
        user_count -= np.bincount(users[drop], minlength=len(user_count))
        item_count -= np.bincount(items[drop], minlength=len(item_count))
    return np.flatnonzero(alive)


def _descending(values: np.ndarray) -> np.ndarray:
    """Positions by ``values`` (float32), largest first, equal values (and NaNs, last) in order.

    The same order as a stable descending sort, but one sort of unique integer keys: each
    value's order-preserving bit pattern above its position.
    """
    n = len(values)
    position_bits = max(1, int(n - 1).bit_length())
    if position_bits > 30:
        return np.argsort(-values, kind="stable")
    bits = (values.astype(np.float32) + np.float32(0)).view(np.uint32).astype(np.int64)
    ordered = np.where(bits >= 1 << 31, (1 << 32) - 1 - bits, bits + (1 << 31))  # 0 .. 2**32-1
    rank = (1 << 32) - 1 - ordered  # largest value first
    rank[np.isnan(values)] = 1 << 32  # after everything
    return np.argsort((rank << position_bits) | np.arange(n, dtype=np.int64))


def _present(codes: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of ``codes`` (integers in ``0..size-1``), sorted, like np.unique."""
    return np.flatnonzero(np.bincount(codes, minlength=size))


def _first_rows(codes: np.ndarray, size: int) -> np.ndarray:
    """For each code in ``0..size-1``, the position of its first occurrence (-1 if absent)."""
    positions = np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())
    first = np.full(size, -1, dtype=np.int64)
    first[codes[positions]] = positions
    return first


def _histogram(values: np.ndarray, edges: Sequence[float], labels: Sequence[str]) -> list:
    counts = np.histogram(values, bins=[*edges, np.inf])[0]
    return [[label, int(count)] for label, count in zip(labels, counts, strict=True)]


def build_processed(
    interactions: Sequence[LoadedInteractions],
    metadata: Sequence[pd.DataFrame],
    *,
    min_user_items: int,
    min_item_users: int,
    valid_fraction: float,
    test_fraction: float,
    target_fraction: float,
    seed: int,
    min_owners: int = 20_000,
) -> Processed:
    """The catalog, users, interactions and split from loaded inputs.

    Items are every game of the interactions that survives the k-core filters (the games with
    players, ``has_players``, first, most owned first), then every game of the metadata with at
    least ``min_owners`` SteamSpy owners that nobody in the play data owns. ``n_users`` counts
    training users only: nothing a model learns from may count held-out users.
    """
    raw = pd.concat([loaded.frame for loaded in interactions], ignore_index=True)
    meta = merge_metadata(metadata)
    titled = _title_index(meta)
    rows = _RawRows.of(raw)
    games = _GameCodes.of(rows, titled)
    titles = _title_matches(rows, titled)
    kept = _kept_rows(rows, games, min_user_items, min_item_users)

    played = _played_games(rows, games, kept.rows)
    joined, catalog_report = _with_unplayed(_with_metadata(played, meta, titled), meta, min_owners)
    described = _describe_items(joined).reset_index(drop=True)
    items = _item_table(described)

    users, user_idx = _users(rows, kept.rows)
    item_idx = _item_idx_of_code(played, games.n_codes)[games.code[kept.rows]]
    table = _interactions(rows, kept.rows, user_idx, item_idx, len(items))
    users, split = make_split(
        users,
        table,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        target_fraction=target_fraction,
        seed=seed,
    )

    items["n_users"] = _training_players(users, table, len(items))
    families = _families(items)
    items["family"] = families.representative.astype(np.int32)
    catalog_report.update(_catalog_counts(items, families, described, metadata))
    processed = Processed(items=items, users=users, interactions=table, split=split)
    stats = [loaded.stats for loaded in interactions]
    processed.summary = _summary(processed, stats, kept, titles, catalog_report)
    return processed


@dataclass(frozen=True)
class _RawRows:
    """The raw interactions as arrays, every string as an integer code: strings are handled
    once per distinct value."""

    user: np.ndarray  # code into user_ids
    user_ids: pd.Index
    title: np.ndarray  # code into titles; -1: no title
    titles: np.ndarray
    key: np.ndarray  # the normalised title, as a code into keys
    keys: np.ndarray
    has_appid: np.ndarray
    appid: np.ndarray  # 0 where there is none
    playtime: np.ndarray
    source: np.ndarray  # code into sources
    sources: pd.Index

    @classmethod
    def of(cls, raw: pd.DataFrame) -> _RawRows:
        user, user_ids = pd.factorize(raw["user_id"])
        title, titles = pd.factorize(raw["title"])
        titles = np.asarray(titles, dtype=object)
        key_of_title, keys = pd.factorize(
            np.array([*map(normalise_title, titles), ""], dtype=object)  # the last: no title
        )
        source, sources = pd.factorize(raw["source"])
        return cls(
            user=user,
            user_ids=user_ids,
            title=title,
            titles=titles,
            key=key_of_title[title],
            keys=np.asarray(keys, dtype=object),
            has_appid=raw["appid"].notna().to_numpy(),
            appid=raw["appid"].to_numpy(dtype=np.int64, na_value=0),
            playtime=raw["playtime_min"].to_numpy(dtype=np.float32),
            source=source,
            sources=sources,
        )


@dataclass(frozen=True)
class _GameCodes:
    """Each raw row's game as a code. A game is its appid when known (directly or through its
    title): codes below ``len(appids)``; else its normalised title: ``len(appids)`` + key code."""

    code: np.ndarray
    appids: np.ndarray
    item_keys: np.ndarray  # per code: "a:<appid>" or "t:<normalised title>"
    by_appid: np.ndarray  # per row: whether its game is known by its appid

    @property
    def n_codes(self) -> int:
        return len(self.item_keys)

    @classmethod
    def of(cls, rows: _RawRows, titled: pd.DataFrame) -> _GameCodes:
        key_appid = pd.Series(rows.keys).map(titled.set_index("title_key")["appid"]).astype("Int64")
        key_has_appid = key_appid.notna().to_numpy()
        key_appid_values = key_appid.to_numpy(dtype=np.int64, na_value=0)
        by_appid = rows.has_appid | key_has_appid[rows.key]
        row_appid = np.where(rows.has_appid, rows.appid, key_appid_values[rows.key])
        appid_codes, appids = pd.factorize(row_appid[by_appid])
        appids = np.asarray(appids, dtype=np.int64)
        code = np.empty(len(rows.user), dtype=np.int64)
        code[by_appid] = appid_codes
        code[~by_appid] = len(appids) + rows.key[~by_appid]
        item_keys = np.array(
            [f"a:{appid}" for appid in appids] + [f"t:{key}" for key in rows.keys], dtype=object
        )
        return cls(code=code, appids=appids, item_keys=item_keys, by_appid=by_appid)


def _title_matches(rows: _RawRows, titled: pd.DataFrame) -> dict[str, Any]:
    """How many distinct titles the rows without an appid name, and how many the metadata knows."""
    distinct_titles = _present(rows.key[~rows.has_appid], len(rows.keys))
    matched = int(pd.Series(rows.keys[distinct_titles]).isin(titled["title_key"]).to_numpy().sum())
    return {
        "titles": len(distinct_titles),
        "titles_matched": matched,
        "title_match_rate": matched / len(distinct_titles) if len(distinct_titles) else 1.0,
    }


@dataclass(frozen=True)
class _Kept:
    """The raw rows kept, and what was counted on the way."""

    rows: np.ndarray  # positions of raw rows
    before_filtering: dict[str, int]
    merged_duplicates: int


def _kept_rows(
    rows: _RawRows, games: _GameCodes, min_user_items: int, min_item_users: int
) -> _Kept:
    """The rows that name a game, one per user and game, then only those of the k-core."""
    before = _before_filtering(rows, games)
    kept = np.flatnonzero(games.by_appid | (rows.keys != "")[rows.key])
    # The same game reached through two titles or two sources counts once, at its longest playtime.
    kept = kept[_descending(rows.playtime[kept])]
    first = ~pd.Series(rows.user[kept] * games.n_codes + games.code[kept]).duplicated().to_numpy()
    merged_duplicates = len(kept) - int(first.sum())
    kept = kept[first]
    before["interactions"] = len(kept)
    kept = kept[_k_core(rows.user[kept], games.code[kept], min_user_items, min_item_users)]
    if len(kept) == 0:
        raise DataError(
            f"no user has {min_user_items}+ games among games with {min_item_users}+ users; "
            "lower preprocess.min_user_items / min_item_users or add data"
        )
    return _Kept(kept, before, merged_duplicates)


def _before_filtering(rows: _RawRows, games: _GameCodes) -> dict[str, int]:
    """How many users and games the inputs hold, games as the inputs name them: by appid where
    they have one, else by their exact title; and how many once titles are normalised."""
    raw_appids = games.appids[_present(games.code[rows.has_appid], len(games.appids))]
    with_title = ~rows.has_appid & (rows.title >= 0)
    raw_titles = rows.titles[_present(rows.title[with_title], len(rows.titles))]
    return {
        "users": len(rows.user_ids),
        "games": len({str(appid) for appid in raw_appids}.union(raw_titles)),
        "games_after_title_normalisation": len(_present(games.code, games.n_codes)),
    }


def _played_games(rows: _RawRows, games: _GameCodes, kept: np.ndarray) -> pd.DataFrame:
    """The games of the kept rows, most owned first, so that item_idx order is meaningful and
    deterministic: ``item_key``, ``appid``, ``n_users``, ``title``, ``title_key``, ``code``."""
    kept_items = games.code[kept]
    n_users_of_code = np.bincount(kept_items, minlength=games.n_codes)
    codes = np.flatnonzero(n_users_of_code)
    first_row = kept[_first_rows(kept_items, games.n_codes)[codes]]
    # the first non-missing title in playtime order names a game that has no metadata
    named_rows = kept[rows.title[kept] >= 0]
    first_named = _first_rows(games.code[named_rows], games.n_codes)[codes]
    title_of_code = np.full(len(codes), None, dtype=object)
    found = first_named >= 0
    title_of_code[found] = rows.titles[rows.title[named_rows[first_named[found]]]]
    is_appid_code = codes < len(games.appids)
    appid_of_code = np.zeros(len(codes), dtype=np.int64)
    appid_of_code[is_appid_code] = games.appids[codes[is_appid_code]]
    played = pd.DataFrame(
        {
            "item_key": games.item_keys[codes],
            "n_users": n_users_of_code[codes],
            "appid": pd.arrays.IntegerArray(appid_of_code, ~is_appid_code),
            "title": title_of_code,
            "title_key": rows.keys[rows.key[first_row]],
            "code": codes,
        }
    )
    return played.sort_values(["n_users", "item_key"], ascending=[False, True])


def _item_idx_of_code(played: pd.DataFrame, n_codes: int) -> np.ndarray:
    """Each played game's ``item_idx`` (its place in ``played``), by game code."""
    item_idx_of_code = np.zeros(n_codes, dtype=np.int32)
    item_idx_of_code[played["code"].to_numpy()] = np.arange(len(played), dtype=np.int32)
    return item_idx_of_code


def _with_metadata(played: pd.DataFrame, meta: pd.DataFrame, titled: pd.DataFrame) -> pd.DataFrame:
    """The played games with their metadata, by appid; a game without a name in it keeps the
    title it was played under."""
    by_appid = meta[meta["appid"].notna()].drop_duplicates("appid").set_index("appid")
    items = played[["item_key", "appid", "n_users", "title", "title_key"]].reset_index(drop=True)
    joined = items.merge(
        by_appid, left_on="appid", right_index=True, how="left", suffixes=("", "_meta")
    )
    joined["name"] = joined["name"].where(joined["name"].notna(), joined["title"])
    # games keyed by title whose metadata has no appid (rare) still get their metadata
    no_id_meta = titled[titled["appid"].isna()].set_index("title_key")
    missing = joined["genres"].isna() & joined["title_key"].isin(no_id_meta.index)
    for column in [*METADATA_COLUMNS[1:], *EXTRA_COLUMNS]:
        if missing.any():
            joined.loc[missing, column] = joined.loc[missing, "title_key"].map(no_id_meta[column])
    return joined


def _with_unplayed(
    joined: pd.DataFrame, meta: pd.DataFrame, min_owners: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The played games, then the metadata's games nobody played (:func:`_catalog_only`), each
    with its ``item_idx`` and ``has_players``; and the catalog report so far."""
    n_played = len(joined)
    played_appids = {int(a) for a in joined["appid"].dropna()}
    catalog_rows, catalog_report = _catalog_only(meta, played_appids, min_owners)
    catalog_rows = catalog_rows.assign(
        item_key=[f"a:{appid}" for appid in catalog_rows["appid"]],
        title_key=catalog_rows["name"].map(normalise_title),
        n_users=0,
    )
    joined = pd.concat([joined, catalog_rows], ignore_index=True, sort=False)
    for column in ["genres", "tags"]:
        joined[column] = joined[column].map(lambda v: list(v) if isinstance(v, list) else [])
    joined["item_idx"] = np.arange(len(joined), dtype=np.int32)
    joined["has_players"] = np.arange(len(joined)) < n_played
    return joined, catalog_report


_ITEM_COLUMNS = [
    "item_idx",
    *METADATA_COLUMNS,
    "release_year",
    "kind",
    "base_appid",
    "n_users",
    "has_players",
    "item_key",
    "title_key",
]


def _item_table(described: pd.DataFrame) -> pd.DataFrame:
    """The items table's columns, counts as nullable integers."""
    items = described[[*_ITEM_COLUMNS, "recommendable"]]
    for column in ["appid", "price_cents", "owners_low", "owners_high", "positive", "negative"]:
        items[column] = items[column].astype("Int64")
    return items


def _users(rows: _RawRows, kept: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The kept rows' users in the order of their ids, and each kept row's ``user_idx``."""
    kept_users = rows.user[kept]
    present = _present(kept_users, len(rows.user_ids))
    ids = np.asarray(rows.user_ids, dtype=object)[present]
    # pyarrow sorts strings by code point, as Python does
    by_id = pc.sort_indices(pa.array(ids, type=pa.string())).to_numpy()
    users = pd.DataFrame({"user_idx": np.arange(len(ids), dtype=np.int32), "user_id": ids[by_id]})
    user_idx_of_code = np.zeros(len(rows.user_ids), dtype=np.int32)
    user_idx_of_code[present[by_id]] = np.arange(len(ids), dtype=np.int32)
    return users, user_idx_of_code[kept_users]


def _interactions(
    rows: _RawRows, kept: np.ndarray, user_idx: np.ndarray, item_idx: np.ndarray, n_items: int
) -> pd.DataFrame:
    """The kept rows as the interactions table, sorted by user then item."""
    # (user, item) pairs are unique, so one sort of a combined key orders by user, then item
    by_user_item = np.argsort(user_idx.astype(np.int64) * n_items + item_idx)
    sources = pa.DictionaryArray.from_arrays(
        pa.array(rows.source[kept][by_user_item].astype(np.int32)),
        pa.array(np.asarray(rows.sources, dtype=object), type=pa.string()),
    ).cast(pa.string())
    return pd.DataFrame(
        {
            "user_idx": user_idx[by_user_item],
            "item_idx": item_idx[by_user_item],
            "playtime_min": rows.playtime[kept][by_user_item],
            "source": sources.to_pandas(),
        }
    )


def _training_players(users: pd.DataFrame, table: pd.DataFrame, n_items: int) -> np.ndarray:
    """Each item's number of training users (held-out users are not counted)."""
    is_train_row = (users["group"].to_numpy() == "train")[table["user_idx"].to_numpy()]
    return np.bincount(table["item_idx"].to_numpy()[is_train_row], minlength=n_items).astype(
        np.int32
    )


def _catalog_counts(
    items: pd.DataFrame,
    families: Families,
    described: pd.DataFrame,
    metadata: Sequence[pd.DataFrame],
) -> dict[str, Any]:
    """What the catalog holds: editions, games with and without players, and what may not be
    recommended, by kind; then :func:`_sources_report`."""
    n_played = int(items["has_players"].sum())
    kinds = items["kind"].value_counts()
    return {
        "families": families.summary,
        "games": len(items),
        "games_with_players": n_played,
        "games_without_players": len(items) - n_played,
        "recommendable": int(items["recommendable"].sum()),
        "not_recommendable": {str(k): int(v) for k, v in kinds.items() if k != Kind.GAME},
        "not_recommendable_examples": {
            str(kind): items.loc[items["kind"] == kind, "name"].head(3).tolist()
            for kind in kinds.index
            if kind != Kind.GAME
        },
        **_sources_report(described, metadata),
    }


def _summary(
    processed: Processed,
    load_stats: list[dict[str, Any]],
    kept: _Kept,
    titles: dict[str, Any],
    catalog_report: dict[str, Any],
) -> dict[str, Any]:
    """What preprocessing read, dropped and made, for ``processed/manifest.json``."""
    items, users, table = processed.items, processed.users, processed.interactions
    n_users, n_items, n_rows = len(users), int(items["has_players"].sum()), len(table)
    return {
        "sources": load_stats,
        "before_filtering": kept.before_filtering,
        "duplicate_purchases": int(sum(s.get("duplicate_purchases", 0) for s in load_stats)),
        "merged_duplicates": int(kept.merged_duplicates),
        **titles,
        "users": n_users,
        "items": n_items,
        "catalog": catalog_report,
        "interactions": n_rows,
        "density": n_rows / (n_users * n_items),
        "items_with_genres": int((items["genres"].map(len) > 0)[:n_items].sum()),
        "items_with_tags": int((items["tags"].map(len) > 0)[:n_items].sum()),
        "groups": {g: int((users["group"] == g).sum()) for g in GROUPS},
        "targets": int((processed.split["role"] == "target").sum()),
        "histograms": _histograms(table, n_users, n_items),
    }


def _histograms(table: pd.DataFrame, n_users: int, n_items: int) -> dict[str, list]:
    per_user = np.bincount(table["user_idx"], minlength=n_users)
    # the games with players are the first n_items
    per_game = np.bincount(table["item_idx"], minlength=n_items)[:n_items]
    hours = table["playtime_min"].to_numpy() / 60.0
    return {
        "games per user": _histogram(
            per_user,
            [0, 5, 10, 20, 50, 100, 200],
            ["<5", "5-9", "10-19", "20-49", "50-99", "100-199", "200+"],
        ),
        "players per game": _histogram(
            per_game,
            [0, 2, 5, 10, 50, 100, 500],
            ["1", "2-4", "5-9", "10-49", "50-99", "100-499", "500+"],
        ),
        "hours played": _histogram(
            hours,
            [0, 1e-9, 1, 10, 100, 1000],
            ["never", "<1", "1-9", "10-99", "100-999", "1000+"],
        ),
    }


def make_split(
    users: pd.DataFrame,
    interactions: pd.DataFrame,
    *,
    valid_fraction: float,
    test_fraction: float,
    target_fraction: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """P-SG: users into train/valid/test; each evaluated user's games into fold-in and targets.

    Only users with two or more games are evaluated (valid or test), so every evaluated user
    keeps at least one fold-in game and at least one target.
    """
    rng = np.random.default_rng(seed)
    n_users = len(users)
    user_idx = interactions["user_idx"].to_numpy()
    counts = np.bincount(user_idx, minlength=n_users)
    order = rng.permutation(n_users)
    n_test = max(1, round(test_fraction * n_users)) if n_users >= 3 else 0
    n_valid = max(1, round(valid_fraction * n_users)) if n_users >= 3 else 0
    evaluable = order[counts[order] >= 2]
    n_test = min(n_test, len(evaluable))
    n_valid = min(n_valid, len(evaluable) - n_test)
    group_codes = np.zeros(n_users, dtype=np.int8)  # 0 train, 1 valid, 2 test
    group_codes[evaluable[:n_test]] = 2
    group_codes[evaluable[n_test : n_test + n_valid]] = 1
    users = users.assign(group=pd.Categorical.from_codes(group_codes, categories=list(GROUPS)))

    n_targets = np.clip(np.rint(target_fraction * counts), 1, np.maximum(counts - 1, 1))
    random_key = rng.random(len(user_idx))
    by_user_then_random = _lexsort_by_group(user_idx, random_key)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(user_idx), dtype=np.int64)
    position[by_user_then_random] = np.arange(len(user_idx)) - np.repeat(starts, counts)
    row_group = group_codes[user_idx]
    is_target = (row_group > 0) & (position < n_targets[user_idx]) & (counts[user_idx] > 1)
    role_codes = np.where(row_group == 0, 0, np.where(is_target, 2, 1)).astype(np.int8)
    split = pd.DataFrame(
        {
            "user_idx": interactions["user_idx"].to_numpy(np.int32),
            "item_idx": interactions["item_idx"].to_numpy(np.int32),
            "group": pd.Categorical.from_codes(row_group, categories=list(GROUPS)),
            "role": pd.Categorical.from_codes(role_codes, categories=list(ROLES)),
        }
    )
    return users, split


def _lexsort_by_group(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.lexsort((keys, groups))`` (by group, then key, then position), several times faster.

    The keys are replaced by their ranks, which makes (group, rank) one unique integer.
    """
    n = len(keys)
    by_key = np.argsort(keys)
    if n > 1 and bool((keys[by_key[1:]] == keys[by_key[:-1]]).any()):
        by_key = np.argsort(keys, kind="stable")  # equal keys keep their order, as in lexsort
    rank = np.empty(n, dtype=np.int64)
    rank[by_key] = np.arange(n)
    return np.argsort(groups.astype(np.int64) * n + rank)
