"""Recommend games for a Steam library file (a GetOwnedGames answer) from Python.

    python examples/recommend_for_steam_library.py LIBRARY_JSON [DATA_DIR] [K]

LIBRARY_JSON is what the Steam Web API's IPlayerService/GetOwnedGames returns for one player
(`gamerec fetch owned` saves these under raw/steam/owned/). DATA_DIR is a workspace with a
trained model and index (default: ./gamerec-data, as `gamerec demo` leaves it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gamerec


def main(library: Path, data_dir: Path, k: int) -> None:
    try:
        history = gamerec.History.from_library(library)  # appid -> minutes played
        recommender = gamerec.Recommender.from_dir(data_dir)
        answers = recommender.recommend(history=history, k=k)  # owned games are left out
    except gamerec.GamerecError as error:  # a bad file, no model yet: says what to do
        sys.exit(f"Error: {error}")
    print(f"{len(history.played)} games in the library")
    for rank, answer in enumerate(answers, start=1):
        print(f"{rank}\t{answer.appid}\t{answer.score:.3f}\t{answer.name}\t{answer.reason}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    main(
        Path(args[0]),
        Path(args[1]) if len(args) > 1 else Path("gamerec-data"),
        int(args[2]) if len(args) > 2 else 10,
    )
