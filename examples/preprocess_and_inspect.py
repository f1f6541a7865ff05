"""Preprocess play histories with the library API, then look at the processed catalog.

    python examples/preprocess_and_inspect.py [DATA_DIR]

With no inputs configured (no gamerec.toml, no GAMEREC_PREPROCESS__INPUTS) this uses the bundled
steam-200k demo dataset. The workspace goes to DATA_DIR (default: ./gamerec-data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import gamerec
from gamerec import pipeline


def main(data_dir: Path) -> None:
    # Settings.load layers ./gamerec.toml and GAMEREC_* variables under these overrides.
    settings = gamerec.Settings.load(overrides={"data_dir": data_dir})
    try:
        summary = pipeline.preprocess(settings)
    except gamerec.GamerecError as error:  # every failure a user can cause; says what to do
        sys.exit(f"Error: {error}")

    before = summary.before_filtering
    print(f"read {before['users']:,} players and {before['games']:,} games")
    print(
        f"kept {summary.users:,} players, {summary.items:,} games, "
        f"{summary.interactions:,} interactions "
        f"({summary.title_match_rate:.1%} of titles matched to an appid)"
    )

    items = pd.read_parquet(Path(summary.output) / "items.parquet")
    top = items.sort_values(["n_users", "item_idx"], ascending=[False, True]).head(10)
    print("\nmost owned games:")
    for rank, game in enumerate(top.itertuples(), start=1):
        appid = "-" if pd.isna(game.appid) else int(game.appid)
        genres = ", ".join(game.genres) or "no genres known"
        print(f"{rank:>2}. {game.name} (appid {appid}): {game.n_users:,} players; {genres}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gamerec-data"))
