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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gamerec.dataio.catalog import (
    METADATA_COLUMNS,
    load_steam_csv,
    load_steamspy,
    load_ucsd,
    merge_metadata,
)
from gamerec.dataio.files import normalise_title
from gamerec.dataio.interactions import (
    LoadedInteractions,
    load_generic_csv,
    load_owned_games,
    load_steam_200k,
)
from gamerec.errors import DataError

__all__ = [
    "GROUPS",
    "ROLES",
    "Processed",
    "Source",
    "build_processed",
    "load_sources",
    "make_split",
    "read_processed",
    "write_processed",
]

GROUPS = ("train", "valid", "test")
ROLES = ("train", "foldin", "target")
INTERACTION_KINDS = {"steam-200k", "owned", "csv"}
METADATA_KINDS = {"steam-csv", "ucsd", "steamspy"}


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` as in settings, a path, and loader options (csv column mapping)."""

    kind: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Processed:
    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    split: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


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
        else:
            raise DataError(f"unknown input kind {source.kind!r}", source.path)
    if not interactions:
        raise DataError(
            "no interactions among the inputs: add one of kind steam-200k, owned or csv "
            "to [[preprocess.inputs]] in gamerec.toml"
        )
    return interactions, metadata


def _title_index(metadata: pd.DataFrame) -> pd.DataFrame:
    """Metadata rows by normalised title; among namesakes the most reviewed game wins."""
    keyed = metadata.assign(title_key=metadata["name"].map(normalise_title))
    keyed = keyed[keyed["title_key"] != ""]
    reviews = keyed["positive"].fillna(0) + keyed["negative"].fillna(0)
    keyed = keyed.assign(_reviews=reviews.astype("int64"))
    keyed = keyed.sort_values(["_reviews", "appid"], ascending=[False, True], na_position="last")
    return keyed.drop_duplicates("title_key").drop(columns="_reviews")


def _k_core(pairs: pd.DataFrame, min_user_items: int, min_item_users: int) -> pd.DataFrame:
    for _ in range(100):
        user_counts = pairs.groupby("user_id", sort=False)["item_key"].transform("size")
        item_counts = pairs.groupby("item_key", sort=False)["user_id"].transform("size")
        keep = (user_counts >= min_user_items) & (item_counts >= min_item_users)
        if keep.all():
            break
        pairs = pairs[keep]
    return pairs


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
) -> Processed:
    raw = pd.concat([loaded.frame for loaded in interactions], ignore_index=True)
    load_stats = [loaded.stats for loaded in interactions]
    meta = merge_metadata(metadata)
    titled = _title_index(meta)

    # Item key: the appid when known (directly or through the title), else the normalised title.
    has_appid = raw["appid"].notna()
    title_keys = raw["title"].map(normalise_title)
    matched_appid = title_keys.map(titled.set_index("title_key")["appid"])
    distinct_titles = pd.Series(title_keys[~has_appid].unique())
    matched_titles = distinct_titles.isin(titled["title_key"])
    appid = raw["appid"].where(has_appid, matched_appid.astype("Int64"))
    item_key = np.where(
        appid.notna(), "a:" + appid.astype(str), "t:" + title_keys.astype(str)
    ).astype(object)
    pairs = pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "item_key": item_key,
            "appid": appid,
            "title": raw["title"],
            "title_key": title_keys,
            "playtime_min": raw["playtime_min"],
            "source": raw["source"],
        }
    )
    raw_game_key = raw["appid"].astype(str).where(has_appid, raw["title"].astype(str))
    before = {
        "users": int(raw["user_id"].nunique()),
        "games": int(raw_game_key.nunique()),
        "games_after_title_normalisation": int(pd.Series(item_key).nunique()),
    }
    pairs = pairs[(pairs["item_key"] != "t:")]
    # The same game reached through two titles or two sources counts once, at its longest playtime.
    pairs = pairs.sort_values("playtime_min", ascending=False, kind="stable")
    deduped = pairs.drop_duplicates(["user_id", "item_key"])
    merged_duplicates = len(pairs) - len(deduped)
    before["interactions"] = len(deduped)
    kept = _k_core(deduped, min_user_items, min_item_users)
    if kept.empty:
        raise DataError(
            f"no user has {min_user_items}+ games among games with {min_item_users}+ users; "
            "lower preprocess.min_user_items / min_item_users or add data"
        )

    # items: most owned first, so item_idx order is meaningful and deterministic
    owners = kept.groupby("item_key", sort=False).agg(
        n_users=("user_id", "size"),
        appid=("appid", "first"),
        title=("title", "first"),
        title_key=("title_key", "first"),
    )
    owners = owners.reset_index().sort_values(["n_users", "item_key"], ascending=[False, True])
    by_appid = meta[meta["appid"].notna()].drop_duplicates("appid").set_index("appid")
    items = owners[["item_key", "appid", "n_users", "title", "title_key"]].reset_index(drop=True)
    joined = items.join(by_appid, on="appid", rsuffix="_meta")
    joined["name"] = joined["name"].where(joined["name"].notna(), joined["title"])
    # games keyed by title whose metadata has no appid (rare) still get their metadata
    no_id_meta = titled[titled["appid"].isna()].set_index("title_key")
    missing = joined["genres"].isna() & joined["title_key"].isin(no_id_meta.index)
    for column in METADATA_COLUMNS[1:]:
        if missing.any():
            joined.loc[missing, column] = joined.loc[missing, "title_key"].map(no_id_meta[column])
    for column in ["genres", "tags"]:
        joined[column] = joined[column].map(lambda v: list(v) if isinstance(v, list) else [])
    joined["item_idx"] = np.arange(len(joined), dtype=np.int32)
    items = joined[
        ["item_idx", *METADATA_COLUMNS, "n_users", "item_key", "title_key"]
    ].reset_index(drop=True)
    for column in ["appid", "price_cents", "owners_low", "owners_high", "positive", "negative"]:
        items[column] = items[column].astype("Int64")
    items["n_users"] = items["n_users"].astype(np.int32)

    user_ids = np.sort(kept["user_id"].unique())
    users = pd.DataFrame({"user_idx": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids})
    item_index = pd.Series(items["item_idx"].to_numpy(), index=items["item_key"])
    user_index = pd.Series(users["user_idx"].to_numpy(), index=users["user_id"])
    table = pd.DataFrame(
        {
            "user_idx": kept["user_id"].map(user_index).to_numpy(np.int32),
            "item_idx": kept["item_key"].map(item_index).to_numpy(np.int32),
            "playtime_min": kept["playtime_min"].to_numpy(np.float32),
            "source": kept["source"].astype("category").to_numpy(),
        }
    )
    table = table.sort_values(["user_idx", "item_idx"]).reset_index(drop=True)

    users, split = make_split(
        users,
        table,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        target_fraction=target_fraction,
        seed=seed,
    )

    n_users, n_items, n_rows = len(users), len(items), len(table)
    per_user = np.bincount(table["user_idx"], minlength=n_users)
    hours = table["playtime_min"].to_numpy() / 60.0
    matched = int(matched_titles.sum())
    summary = {
        "sources": load_stats,
        "before_filtering": before,
        "duplicate_purchases": int(sum(s.get("duplicate_purchases", 0) for s in load_stats)),
        "merged_duplicates": int(merged_duplicates),
        "titles": len(distinct_titles),
        "titles_matched": matched,
        "title_match_rate": matched / len(distinct_titles) if len(distinct_titles) else 1.0,
        "users": n_users,
        "items": n_items,
        "interactions": n_rows,
        "density": n_rows / (n_users * n_items),
        "items_with_genres": int((items["genres"].map(len) > 0).sum()),
        "items_with_tags": int((items["tags"].map(len) > 0).sum()),
        "groups": {g: int((users["group"] == g).sum()) for g in GROUPS},
        "targets": int((split["role"] == "target").sum()),
        "histograms": {
            "games per user": _histogram(
                per_user, [0, 5, 10, 20, 50, 100, 200], ["<5", "5-9", "10-19", "20-49", "50-99",
                                                         "100-199", "200+"]
            ),
            "players per game": _histogram(
                items["n_users"].to_numpy(),
                [0, 2, 5, 10, 50, 100, 500],
                ["1", "2-4", "5-9", "10-49", "50-99", "100-499", "500+"],
            ),
            "hours played": _histogram(
                hours,
                [0, 1e-9, 1, 10, 100, 1000],
                ["never", "<1", "1-9", "10-99", "100-999", "1000+"],
            ),
        },
    }
    return Processed(items=items, users=users, interactions=table, split=split, summary=summary)


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

    Interactions must be sorted by ``user_idx``. Every evaluated user keeps at least one fold-in
    game and at least one target.
    """
    rng = np.random.default_rng(seed)
    n_users = len(users)
    order = rng.permutation(n_users)
    n_test = max(1, round(test_fraction * n_users)) if n_users >= 3 else 0
    n_valid = max(1, round(valid_fraction * n_users)) if n_users >= 3 else 0
    group_codes = np.zeros(n_users, dtype=np.int8)  # 0 train, 1 valid, 2 test
    group_codes[order[:n_test]] = 2
    group_codes[order[n_test : n_test + n_valid]] = 1
    users = users.assign(group=pd.Categorical.from_codes(group_codes, categories=list(GROUPS)))

    user_idx = interactions["user_idx"].to_numpy()
    counts = np.bincount(user_idx, minlength=n_users)
    n_targets = np.clip(np.rint(target_fraction * counts), 1, np.maximum(counts - 1, 1))
    random_key = rng.random(len(user_idx))
    by_user_then_random = np.lexsort((random_key, user_idx))
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


_TABLES = ("items", "users", "interactions", "split")


def write_processed(directory: str | Path, processed: Processed) -> None:
    """Write the four tables as parquet into ``directory`` (a staging directory)."""
    directory = Path(directory)
    for name in _TABLES:
        frame: pd.DataFrame = getattr(processed, name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, directory / f"{name}.parquet")


def read_processed(directory: str | Path) -> Processed:
    """Read ``processed/`` (check its manifest first with ``artifacts.read_manifest``)."""
    directory = Path(directory)
    frames = {}
    for name in _TABLES:
        path = directory / f"{name}.parquet"
        try:
            frames[name] = pd.read_parquet(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot be read ({exc}); run `gamerec preprocess` again", path) from None
    frames["items"]["genres"] = frames["items"]["genres"].map(list)
    frames["items"]["tags"] = frames["items"]["tags"].map(list)
    return Processed(**frames)
