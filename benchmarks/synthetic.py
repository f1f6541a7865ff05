"""Synthetic Steam play histories shaped like the bundled steam-200k, at any scale.

    python benchmarks/synthetic.py --scale 10 --out benchmarks/.work/synthetic-10x
    gamerec --config benchmarks/.work/synthetic-10x/gamerec.toml preprocess

Writes the inputs a user feeds to ``gamerec preprocess``:

- ``interactions.csv``: a generic CSV ``user,item,playtime`` (steamid-like users, appid items,
  minutes played), one row per user and game;
- ``steam.csv``: item metadata in the Kaggle Steam Store Games format, so genres and tags join
  by appid;
- ``gamerec.toml``: the ``[[preprocess.inputs]]`` that read both.

Calibrated on the bundled data (read with gamerec's own loaders):

- games per user: drawn from the empirical distribution of steam-200k's 12,393 users
  (median 2, mean 10.4, max 1,068);
- item popularity: the empirical owners-per-game curve of its 5,155 games, read as a function
  of the rank quantile, so a larger catalog keeps the same head/tail shape;
- playtime: 45% of owned games never played; the rest log-normal in minutes, with the mean and
  spread of steam-200k's played games (favourite-genre games are played about twice as long);
- genres and tags: each synthetic game copies the genre and tag lists (and store metadata) of a
  real game from the bundled ``steam.csv``; popular ranks get the most-reviewed real games.
  Every user has 1-3 favourite genres (chosen in proportion to how common a genre is); a game is
  drawn from a favourite genre's popularity with probability ``affinity`` (default 0.7), else
  from the whole catalog's popularity. That is the signal a recommender can learn beyond
  popularity.

Scale ``s``: ``12,393 * s`` users, ``5,155 * sqrt(s)`` games (a catalog grows more slowly than
its audience), about ``128,800 * s`` interactions: 100x is 1.24M users, 51.6k games and 12.9M
rows, of which ``gamerec preprocess`` keeps users with 5+ games (as it does on steam-200k).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

BASE_USERS = 12_393
BASE_ITEMS = 5_155
FIRST_SYNTHETIC_APPID = 10_000_000  # above every real appid, so generated games are obvious
STEAM_CSV_COLUMNS = [
    "appid",
    "name",
    "release_date",
    "english",
    "developer",
    "publisher",
    "platforms",
    "required_age",
    "categories",
    "genres",
    "steamspy_tags",
    "achievements",
    "positive_ratings",
    "negative_ratings",
    "average_playtime",
    "median_playtime",
    "owners",
    "price",
]


@dataclass(frozen=True)
class Calibration:
    """What the generator copies from the bundled data."""

    games_per_user: np.ndarray  # (12,393,) games owned by each steam-200k user
    popularity: np.ndarray  # (5,155,) owners per game, largest first
    unplayed_share: float  # share of owned games with playtime 0
    log_minutes_mean: float  # of played games
    log_minutes_std: float
    templates: pd.DataFrame  # bundled steam.csv rows, most reviewed first

    def describe(self) -> dict[str, float]:
        return {
            "users": len(self.games_per_user),
            "games": len(self.popularity),
            "interactions": int(self.games_per_user.sum()),
            "games_per_user_median": float(np.median(self.games_per_user)),
            "games_per_user_mean": round(float(self.games_per_user.mean()), 2),
            "top_game_share_of_users": round(
                float(self.popularity[0] / len(self.games_per_user)), 3
            ),
            "unplayed_share": round(self.unplayed_share, 3),
            "metadata_templates": len(self.templates),
        }


def calibrate() -> Calibration:
    """Fit the distributions on the bundled steam-200k and its steam.csv metadata."""
    from gamerec.dataio.datasets import data_file
    from gamerec.dataio.interactions import load_steam_200k

    frame = load_steam_200k(data_file("steam-200k.csv.gz")).frame
    per_user = frame.groupby("user_id", sort=False).size().to_numpy()
    per_game = np.sort(frame.groupby("title", sort=False).size().to_numpy())[::-1]
    minutes = frame["playtime_min"].to_numpy(dtype=np.float64)
    played = np.log(minutes[minutes > 0])
    templates = pd.read_csv(data_file("steam.csv.gz"), dtype=str, keep_default_na=False)
    reviews = pd.to_numeric(templates["positive_ratings"], errors="coerce").fillna(0)
    reviews += pd.to_numeric(templates["negative_ratings"], errors="coerce").fillna(0)
    templates = templates.assign(_reviews=reviews)
    templates = templates.sort_values(["_reviews", "appid"], ascending=[False, True])
    templates = templates[templates["genres"] != ""].drop(columns="_reviews")
    return Calibration(
        games_per_user=per_user.astype(np.int64),
        popularity=per_game.astype(np.float64),
        unplayed_share=float((minutes == 0).mean()),
        log_minutes_mean=float(played.mean()),
        log_minutes_std=float(played.std()),
        templates=templates.reset_index(drop=True),
    )


def popularity_curve(observed: np.ndarray, n_items: int) -> np.ndarray:
    """Owners per game for a catalog of ``n_items``: the observed curve at the same quantiles.

    Interpolated in log space over the rank quantile ``(rank + 0.5) / n``, so 1% of the catalog
    holds the same share of all ownership at any catalog size.
    """
    source = (np.arange(len(observed)) + 0.5) / len(observed)
    target = (np.arange(n_items) + 0.5) / n_items
    return np.exp(np.interp(target, source, np.log(observed)))


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is several times slower on int64 keys)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


def _sample(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, uniforms, side="right"), len(cumulative) - 1)


def generate(
    out: Path,
    scale: float,
    *,
    seed: int = 0,
    affinity: float = 0.7,
    calibration: Calibration | None = None,
) -> dict[str, object]:
    """Write ``interactions.csv``, ``steam.csv`` and ``gamerec.toml`` into ``out``; a summary."""
    started = time.perf_counter()
    cal = calibration or calibrate()
    rng = np.random.default_rng(seed)
    n_users = max(10, round(BASE_USERS * scale))
    n_items = max(50, round(BASE_ITEMS * math.sqrt(scale)))

    # items: rank r gets the r-th most reviewed real game's metadata (cycled past the end)
    template_of = np.arange(n_items) % len(cal.templates)
    meta = cal.templates.iloc[template_of].reset_index(drop=True)
    cycle = np.arange(n_items) // len(cal.templates)
    real_appids = pd.to_numeric(meta["appid"]).to_numpy(dtype=np.int64)
    appids = np.where(cycle == 0, real_appids, FIRST_SYNTHETIC_APPID + np.arange(n_items))
    names = np.where(cycle == 0, meta["name"], meta["name"] + " #" + (cycle + 1).astype(str))
    meta = meta.assign(appid=appids.astype(str), name=names)[STEAM_CSV_COLUMNS]

    weight = popularity_curve(cal.popularity, n_items)
    global_cdf = np.cumsum(weight) / weight.sum()
    genre_lists = [g.split(";") for g in meta["genres"]]
    genre_names = sorted({g for gs in genre_lists for g in gs})
    genre_position = {g: i for i, g in enumerate(genre_names)}
    pairs = [(genre_position[g], item) for item, gs in enumerate(genre_lists) for g in gs]
    pair_genre = np.array([g for g, _ in pairs], dtype=np.int64)
    pair_item = np.array([i for _, i in pairs], dtype=np.int64)
    items_of_genre = [pair_item[pair_genre == g] for g in range(len(genre_names))]
    # favourite genres: common genres only (at least 1% of the catalog), chosen by frequency
    genre_size = np.array([len(items) for items in items_of_genre], dtype=np.float64)
    choosable = np.flatnonzero(genre_size >= 0.01 * n_items)
    choose_p = genre_size[choosable] / genre_size[choosable].sum()
    genre_cdfs = [np.cumsum(weight[items]) / weight[items].sum() for items in items_of_genre]

    # users: 1-3 favourite genres each, and a number of games from steam-200k's distribution
    n_favourites = rng.choice([1, 2, 3], size=n_users, p=[0.4, 0.4, 0.2])
    favourites = np.stack(
        [choosable[_sample(np.cumsum(choose_p), rng.random(n_users))] for _ in range(3)], axis=1
    )
    wanted = np.minimum(rng.choice(cal.games_per_user, size=n_users), n_items // 2)

    keys = np.empty(0, dtype=np.int64)  # user * n_items + item, unique
    deficit = wanted.copy()
    for _ in range(8):  # draw, drop repeats, draw again for the users still short
        users = np.repeat(np.arange(n_users, dtype=np.int64), deficit)
        if len(users) == 0:
            break
        items = np.empty(len(users), dtype=np.int64)
        from_genre = rng.random(len(users)) < affinity
        slot = (rng.random(len(users)) * n_favourites[users]).astype(np.int64)
        genre = np.where(from_genre, favourites[users, slot], -1)
        items[genre < 0] = _sample(global_cdf, rng.random(int((genre < 0).sum())))
        for g in np.flatnonzero(np.bincount(genre[genre >= 0], minlength=len(genre_names))):
            chosen = np.flatnonzero(genre == g)
            items[chosen] = items_of_genre[g][_sample(genre_cdfs[g], rng.random(len(chosen)))]
        keys = _distinct(np.concatenate([keys, users * n_items + items]))
        deficit = np.maximum(wanted - np.bincount(keys // n_items, minlength=n_users), 0)
    user_of, item_of = keys // n_items, keys % n_items
    rows = np.flatnonzero(np.bincount(user_of, minlength=n_users)[user_of] > 0)
    order = rng.permutation(len(rows))  # files are not sorted by user
    user_of, item_of = user_of[rows][order], item_of[rows][order]

    favourite_items = np.zeros(len(user_of), dtype=bool)
    item_genres = np.zeros((n_items, len(genre_names)), dtype=bool)
    item_genres[pair_item, pair_genre] = True
    for column in range(3):
        has = column < n_favourites[user_of]
        favourite_items |= has & item_genres[item_of, favourites[user_of, column]]
    minutes = np.exp(
        rng.normal(cal.log_minutes_mean, cal.log_minutes_std, len(user_of))
        + np.log(2.0) * favourite_items
    )
    minutes = np.where(rng.random(len(user_of)) < cal.unplayed_share, 0.0, np.round(minutes))
    steamids = 76_561_197_960_265_728 + np.arange(n_users, dtype=np.int64) * 17
    steamids += rng.integers(0, 17, n_users)

    out.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "user": pa.array(steamids[user_of].astype(str)),
            "item": pa.array(appids[item_of]),
            "playtime": pa.array(minutes.astype(np.int64)),
        }
    )
    _write_csv(table, out / "interactions.csv")
    _write_csv(pa.Table.from_pandas(meta, preserve_index=False), out / "steam.csv")
    (out / "gamerec.toml").write_text(
        "# generated by benchmarks/synthetic.py\n"
        "[[preprocess.inputs]]\n"
        'kind = "csv"\n'
        f'path = "{(out / "interactions.csv").resolve()}"\n'
        'user_column = "user"\nitem_column = "item"\nvalue_column = "playtime"\n'
        'value_kind = "playtime_min"\nitem_key = "appid"\n\n'
        "[[preprocess.inputs]]\n"
        'kind = "steam-csv"\n'
        f'path = "{(out / "steam.csv").resolve()}"\n'
    )
    per_user = np.bincount(user_of, minlength=n_users)
    summary = {
        "scale": scale,
        "seed": seed,
        "affinity": affinity,
        "users": int((per_user > 0).sum()),
        "items": n_items,
        "items_owned": int(np.count_nonzero(np.bincount(item_of, minlength=n_items))),
        "interactions": len(user_of),
        "games_per_user_median": float(np.median(per_user[per_user > 0])),
        "games_per_user_mean": round(float(per_user[per_user > 0].mean()), 2),
        "top_game_share_of_users": round(
            float(np.bincount(item_of).max() / max((per_user > 0).sum(), 1)), 3
        ),
        "unplayed_share": round(float((minutes == 0).mean()), 3),
        "genres": len(genre_names),
        "calibration": cal.describe(),
        "seconds": round(time.perf_counter() - started, 1),
        "output": str(out),
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_csv(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pacsv.write_csv(table, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = the size of steam-200k")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--affinity", type=float, default=0.7, help="share of games drawn from favourite genres"
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or not 0 <= args.affinity <= 1:
        parser.error("--scale must be > 0 and --affinity within 0..1")
    summary = generate(args.out, args.scale, seed=args.seed, affinity=args.affinity)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
