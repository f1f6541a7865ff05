"""Train on your own play data: a CSV of `user,item,playtime` by appid, and a gamerec.toml.

    python examples/train_on_your_csv.py [WORK_DIR]

Writes a small made-up plays.csv and a gamerec.toml into WORK_DIR (default: a new temporary
folder), then preprocesses, trains, indexes and asks for recommendations, as
`gamerec --config WORK_DIR/gamerec.toml preprocess`, `train` and `index` would. In the data,
half the players play strategy games (appids 1001-1010) and half play racing games
(2001-2010); a new player of three strategy games should be offered other strategy games.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

import gamerec
from gamerec import pipeline

STRATEGY = list(range(1001, 1011))
RACING = list(range(2001, 2011))

CONFIG = """\
data_dir = "workspace"              # relative paths are relative to this file's folder

[[preprocess.inputs]]
kind = "csv"
path = "plays.csv"
user_column = "user"
item_column = "item"                # Steam appids
value_column = "playtime"
value_kind = "playtime_min"

[train]                             # a small model: the data is small
epochs = 8
hidden_dim = 32
embedding_dim = 16
threads = 1
"""


def write_plays(path: Path, players: int = 300, seed: int = 0) -> None:
    """Each player plays 7 of the 10 games of one genre, for 10 minutes to 50 hours."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "playtime"])
        for player in range(players):
            games = STRATEGY if player % 2 == 0 else RACING
            for appid in rng.sample(games, 7):
                writer.writerow([f"player{player}", appid, rng.randint(10, 3000)])


def main(work_dir: Path) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    write_plays(work_dir / "plays.csv")
    (work_dir / "gamerec.toml").write_text(CONFIG)

    settings = gamerec.Settings.load(config=work_dir / "gamerec.toml")
    try:
        summary = pipeline.preprocess(settings)
        print(f"preprocessed {summary.users} players and {summary.items} games")
        trained = pipeline.train(settings)
        print(f"trained {trained.epochs_run} epochs")
        pipeline.build_index(settings)
        recommender = gamerec.Recommender.from_dir(settings.data_dir)
    except gamerec.GamerecError as error:
        sys.exit(f"Error: {error}")

    answers = recommender.recommend(played={1001: 600, 1002: 300, 1003: 120}, k=5)
    print("recommended for a player of 1001, 1002 and 1003:", *(a.appid for a in answers))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder))
