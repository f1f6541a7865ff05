"""Do a player's new games move their vector? The validation users with every input made new.

    python benchmarks/new_inputs.py [DATA_DIR]

A game nobody in the play data owns enters a player's vector through its row of the user
tower's history table, which ``gamerec index`` makes from what the catalog says of it. Here
every trained game gets such a row made without it (ten folds: the content mapping fit on the
other nine, the neighbours found among them), every validation user's history is read through
those rows alone, and the towers alone rank the trained games: NDCG@20 from the trained rows
(the ceiling), from no rows (genres and tags only: the floor), from the mapping's rows, from the
nearest trained games' rows, and from both as `gamerec index` makes them
(:func:`gamerec.towers.cold.neighbour_history`). Then the default recommender (co-play stage
and closeness in genres and tags) ranks the same users with every input a game the co-play
model does not know either: each history game is a copy of itself that only the content
knows, as a library of today's games is. DATA_DIR is a trained workspace (default: the
benchmark workspace, trained at default settings on first use).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _workspace import trained_workspace

FOLDS = 10


def main() -> None:
    from gamerec.artifacts.model import read_model
    from gamerec.artifacts.processed import games_with_players, read_processed
    from gamerec.dataio.content import TokenRows, identity_tokens
    from gamerec.dataio.matrix import UserItems
    from gamerec.dataio.splits import HeldOutUsers, training_matrices
    from gamerec.evaluation.protocol import ValidationUsers
    from gamerec.index.reference import ExactIndex
    from gamerec.ranking.engine import RankingEngine, RankingPolicy
    from gamerec.ranking.stages import ContentSimilarity, CoPlay
    from gamerec.ranking.user_tower import NumpyUserTower
    from gamerec.towers import cold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, nargs="?")
    args = parser.parse_args()
    root = args.data_dir or trained_workspace()
    started = time.perf_counter()
    model = read_model(root / "model")
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
    token_rows = table.rows(cold.catalog_tokens(items))
    content = ContentSimilarity(token_rows, table.idf, identity_tokens(table.tokens))
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

    # the default recommender, every history game a copy (rows n..2n-1) that the co-play
    # model does not cover, whose history row is ``rows``; the originals are the answers
    doubled_tokens = TokenRows(
        np.concatenate([token_rows.indptr, token_rows.indptr[1:] + token_rows.indptr[-1]]),
        np.concatenate([token_rows.indices, token_rows.indices]),
    )
    doubled_content = ContentSimilarity(doubled_tokens, table.idf, identity_tokens(table.tokens))
    assert model.coplay is not None, "the benchmark workspace has a co-play stage"
    coplay = CoPlay(
        model.coplay, np.concatenate([np.arange(n_items), np.full(n_items, -1, np.int64)])
    )
    doubled_vectors = np.concatenate([embeddings, embeddings]).astype(np.float32)
    copies = UserItems(
        valid.histories.indptr,
        (valid.histories.indices + n_items).astype(valid.histories.indices.dtype),
        valid.histories.values,
        2 * n_items,
    )
    targets = UserItems(
        valid.targets.indptr, valid.targets.indices, valid.targets.values, 2 * n_items
    )
    copy_users = ValidationUsers(
        HeldOutUsers(valid.user_idx, copies, targets),
        np.concatenate([recommendable, np.zeros(n_items, dtype=bool)]),
    )

    class OwnedExcluded:
        """The engine, never answering the original of a history's copy (as it never
        answers a history's own game)."""

        def __init__(self, engine: RankingEngine):
            self.engine, self.name = engine, engine.name

        def rank_lists(self, histories: Any, k: int, allowed: np.ndarray) -> np.ndarray:
            owned = [histories.row(r) for r in range(histories.n_rows)]
            exclude = [np.concatenate([rows, rows - n_items]) for rows in owned]
            return self.engine.rank(histories, k, allowed, exclude=exclude).items

    def default_ndcg(rows: np.ndarray) -> float:
        tower = NumpyUserTower(
            {
                **model.user_tower,
                "history": np.concatenate([history, rows]),
                "token_matrix": np.concatenate([model.user_tower["token_matrix"]] * 2),
            },
            description.playtime_weight,
        )
        engine = RankingEngine(
            tower,
            doubled_vectors,
            ExactIndex(doubled_vectors),
            np.arange(2 * n_items) < n_items,
            RankingPolicy(description.rerank, None, 0.0, description.content_weight),
            coplay,
            content=doubled_content,
        )
        return copy_users.ndcg(OwnedExcluded(engine))  # type: ignore[arg-type]

    def default_engine() -> RankingEngine:
        tower = NumpyUserTower(model.user_tower, description.playtime_weight)
        return RankingEngine(
            tower,
            embeddings,
            ExactIndex(embeddings),
            np.ones(n_items, dtype=bool),
            RankingPolicy(description.rerank, None, 0.0, description.content_weight),
            CoPlay(model.coplay),
            content=content,
        )

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
    print("the default recommender (co-play stage, genres and tags), NDCG@20:")
    print(f"  {'every input a trained game':<44} {validation.ndcg(default_engine()):.4f}")
    for label, rows in (("the mapping's rows", mapped), ("both (gamerec index)", both)):
        print(f"  {'every input new, ' + label:<44} {default_ndcg(rows):.4f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
