"""Top-k recommendations for every known user into a parquet file, read back with pandas.

    python examples/batch_to_parquet.py [DATA_DIR] [OUT] [K]

DATA_DIR is a workspace with a trained model (default: ./gamerec-data); OUT the parquet file to
write (default: recs.parquet). The same as `gamerec recommend --all --out recs.parquet`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import gamerec
from gamerec import pipeline


def main(data_dir: Path, out: Path, k: int) -> None:
    settings = gamerec.Settings.load(overrides={"data_dir": data_dir})
    try:
        summary = pipeline.recommend_all(settings, out, k=k)  # streams; memory stays flat
    except gamerec.GamerecError as error:
        sys.exit(f"Error: {error}")
    print(f"wrote {summary.rows} rows for {summary.users} users to {out}")

    recs = pd.read_parquet(out)  # columns: user_id, rank, appid, name, score
    per_user = recs.groupby("user_id").size()
    print(f"read back {len(recs)} rows; rows per user: {per_user.min()} to {per_user.max()}")
    first = recs[recs["user_id"] == recs["user_id"].iloc[0]]
    print(f"user {first['user_id'].iloc[0]}:")
    for game in first.itertuples():
        print(f"  {game.rank:>2}. {game.name} (appid {game.appid}, score {game.score:.3f})")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        Path(args[0]) if args else Path("gamerec-data"),
        Path(args[1]) if len(args) > 1 else Path("recs.parquet"),
        int(args[2]) if len(args) > 2 else 10,
    )
