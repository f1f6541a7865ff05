"""Do a player's new games move their vector? The validation users with every input made new.

    python benchmarks/new_inputs.py [DATA_DIR]

A game nobody in the play data owns enters a player's vector through its row of the user
tower's history table, which ``gamerec index`` makes from what the catalog says of it. Here
every trained game gets such a row made without it (ten folds: the content mapping fit on the
other nine, the neighbours found among them), every validation user's history is read through
those rows alone, and the towers alone rank the trained games: NDCG@20 from the trained rows
(the ceiling), from no rows (genres and tags only: the floor), from the mapping's rows, from the
nearest trained games' rows, and from both as `gamerec index` makes them
(:func:`gamerec.towers.cold.neighbour_history`). DATA_DIR is a trained workspace (default: the
benchmark workspace, trained at default settings on first use).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _workspace import trained_workspace

FOLDS = 10


def main() -> None:
    from gamerec.artifacts.model import read_model
    from gamerec.artifacts.processed import games_with_players, read_processed
    from gamerec.dataio.content import identity_tokens
    from gamerec.dataio.splits import training_matrices
    from gamerec.evaluation.protocol import ValidationUsers
    from gamerec.index.reference import ExactIndex
    from gamerec.ranking.engine import RankingEngine, RankingPolicy
    from gamerec.ranking.stages import ContentSimilarity
    from gamerec.ranking.user_tower import NumpyUserTower
    from gamerec.towers import cold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, nargs="?")
    args = parser.parse_args()
    root = args.data_dir or trained_workspace()
    started = time.perf_counter()
    model = read_model(root / "model", coplay="skip")
    processed = read_processed(root / "processed")
    n_items = games_with_players(processed.items["has_players"])
    items = processed.items.iloc[:n_items]
    recommendable = items["recommendable"].to_numpy(dtype=bool)
    valid = training_matrices(processed.split, processed.interactions, n_items, recommendable).valid
    validation = ValidationUsers(valid, recommendable)
    description = model.description
    table = cold.token_table(description)
    if table is None:
        raise SystemExit(f"{root}/model has no content token table: retrain it")
    content = ContentSimilarity(
        table.rows(cold.catalog_tokens(items)), table.idf, identity_tokens(table.tokens)
    )
    history = model.user_tower["history"]
    embeddings = model.item_embeddings

    folds = np.random.default_rng(0).permutation(n_items) % FOLDS
    mapped = np.zeros_like(history)
    both = np.zeros_like(history)
    for fold in range(FOLDS):
        held, rest = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
        mapper, _, _ = cold.fit_content_mapper(
            items.iloc[rest], embeddings[rest], history[rest], seed=0
        )
        _, mapped[held] = mapper.map_items(items.iloc[held])
        both[held] = cold.neighbour_history(content, held, rest, history[rest], mapped[held])
    share = cold.NEIGHBOUR_SHARE
    neighbours = (both - (1.0 - share) * mapped) / share

    def ndcg(rows: np.ndarray) -> float:
        tower = NumpyUserTower({**model.user_tower, "history": rows}, description.playtime_weight)
        engine = RankingEngine(
            tower,
            embeddings,
            ExactIndex(embeddings),
            np.ones(n_items, dtype=bool),
            RankingPolicy(),
        )
        return validation.ndcg(engine)

    results = {
        "trained rows (ceiling)": ndcg(history),
        "no rows: genres and tags alone (floor)": ndcg(np.zeros_like(history)),
        "the content mapping's rows": ndcg(mapped),
        f"the {cold.NEIGHBOURS} nearest trained games' rows": ndcg(neighbours),
        f"both, {share:g} each (gamerec index)": ndcg(both),
    }
    print(
        f"{valid.histories.n_rows:,} validation users, {n_items:,} trained games, "
        f"every input made new ({FOLDS} folds); the towers alone, NDCG@20:"
    )
    for label, value in results.items():
        print(f"  {label:<44} {value:.4f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
