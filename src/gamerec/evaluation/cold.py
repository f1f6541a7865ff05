"""The two-tower under P-COLD, as a player would meet it.

The workspace's model saw P-COLD's new games, so the evaluation trains its own: the same fit
as ``gamerec train`` (:func:`gamerec.towers.fit.fit_model`, at the training settings) on the
protocol's training users with the new games hidden, so the model knows only the others; its
co-play re-ranker and content mapping fit on the same. Every game it was not trained on is then
embedded by its content mapping (:func:`gamerec.towers.cold.embed_items`, what ``gamerec
index`` does), and the one ranking engine ranks them as ``recommend`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.dataio.splits import HeldOutUsers
from gamerec.errors import TrainingError
from gamerec.evaluation.protocol import ProtocolData, ValidationUsers
from gamerec.index.reference import ExactIndex
from gamerec.ranking import RankingEngine
from gamerec.ranking.stages import Editions
from gamerec.towers.cold import catalog_release_years, embed_catalog
from gamerec.towers.fit import FitConfig, fit_model

if TYPE_CHECKING:
    import pandas as pd

    from gamerec.artifacts.model import ModelArtifacts

__all__ = ["catalog_engines", "cold_start_engines", "history_effect"]


def _model_columns(matrix: UserItems, column_of: np.ndarray, n_columns: int) -> UserItems:
    """``matrix`` with its games renumbered into the model's columns (the kept games)."""
    rows = np.repeat(np.arange(matrix.n_rows), matrix.row_lengths())
    columns = column_of[matrix.indices]
    assert (columns >= 0).all(), "P-COLD's training rows still name a new game"
    return UserItems.from_pairs(rows, columns, matrix.values, matrix.n_rows, n_columns)


def cold_start_engines(
    config: FitConfig,
    items: pd.DataFrame,
    data: ProtocolData,
    new_games_share: float,
    progress: Callable[[str, str, float | None], None],
) -> tuple[list[RankingEngine], dict[str, Any]]:
    """The engines (first stage alone, and with the re-ranker when fit) of a two-tower
    trained without ``data.new_items``, over ``items`` (one row per game of the protocol),
    and the training summary."""
    n_items = data.n_items
    kept = np.setdiff1d(np.arange(n_items), data.new_items)
    column_of = np.full(n_items, -1, dtype=np.int64)
    column_of[kept] = np.arange(len(kept))
    train_matrix = _model_columns(data.train, column_of, len(kept))
    valid = HeldOutUsers(
        data.valid.user_idx,
        _model_columns(data.valid.histories, column_of, len(kept)),
        _model_columns(data.valid.targets, column_of, len(kept)),
        data.valid.skipped,
    )
    if train_matrix.n_rows == 0 or valid.histories.n_rows == 0:
        raise TrainingError(
            "P-COLD needs training and validation users to train the two-tower on; run "
            "`gamerec preprocess` with more data"
        )
    model_items = items.iloc[kept]
    progress(
        "eval", f"training the two-tower with the {len(data.new_items):,} new games hidden", None
    )
    allowed = data.allowed[kept].copy()
    allowed.setflags(write=False)
    fitted = fit_model(
        config,
        model_items,
        train_matrix,
        ValidationUsers(valid, allowed),
        progress=progress,
        catalog=items,
    )
    model = fitted.as_artifacts([str(key) for key in model_items["item_key"]])
    engines = catalog_engines(model, items, new_games_share)
    summary = {k: v for k, v in fitted.summary.items() if k != "history"}
    summary["new_games_share"] = new_games_share
    return engines, summary


def catalog_engines(
    model: ModelArtifacts, items: pd.DataFrame, new_games_share: float
) -> list[RankingEngine]:
    """The engines of ``model`` over every game of ``items`` (first stage alone, then with the
    second stage when the model has one), built as ``gamerec index`` and ``recommend`` build
    theirs: trained games keep their vectors, the others are embedded by the content mapping,
    and exact search ranks them all."""
    vectors = embed_catalog(model, items)
    index = ExactIndex(vectors.item_vectors)
    editions = Editions(
        items["family"].to_numpy(dtype=np.int64),
        vectors.model_rows >= 0,
        items["n_users"].to_numpy(dtype=np.float64),
    )
    years = catalog_release_years(items)
    reranks = [False, True] if model.coplay is not None and model.description.rerank else [False]
    engines = [
        RankingEngine.over_catalog(
            model,
            vectors,
            index,
            rerank=rerank,
            new_games_share=new_games_share,
            editions=editions,
            release_years=years,
        )
        for rerank in reranks
    ]
    default = engines[-1]
    if default.policy.new_games is not None:
        # the policy of old beside the merit ranking: new games at fixed places, a fifth
        fixed = RankingEngine.over_catalog(
            model, vectors, index, rerank=reranks[-1], new_games_share=0.2, editions=editions
        )
        fixed.policy = replace(fixed.policy, new_games=None)
        fixed.name = f"{default.name}, fixed places"
        engines.append(fixed)
    return engines


def history_effect(
    engine: RankingEngine, data: ProtocolData, k: int = 20, seed: int = 0
) -> dict[str, Any]:
    """How much a history's new games shape the answer, beside as many of its trained games.

    Over the test users whose fold-in holds new games: mean NDCG@k with the whole fold-in,
    without its new games, and without as many (seeded) of its trained games instead. The
    drops say how much each kind of game moves the answer."""
    from gamerec.evaluation.metrics import metric_key
    from gamerec.evaluation.protocol import evaluate_scorer

    test = data.test
    new = np.zeros(data.n_items, dtype=bool)
    new[data.new_items] = True
    holds_new = np.flatnonzero(
        test.histories.row_sums(new[test.histories.indices].astype(np.float32)) > 0
    )
    rng = np.random.default_rng(seed)
    histories = test.histories.take_rows(holds_new)
    targets = test.targets.take_rows(holds_new)
    rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
    is_new = new[histories.indices]
    drop_trained = np.zeros(histories.nnz, dtype=bool)
    for row in range(histories.n_rows):
        entries = np.arange(histories.indptr[row], histories.indptr[row + 1])
        trained_entries = entries[~is_new[entries]]
        count = min(int(is_new[entries].sum()), max(len(trained_entries) - 1, 0))
        drop_trained[rng.choice(trained_entries, size=count, replace=False)] = True

    def ndcg(keep: np.ndarray) -> float:
        kept = UserItems.from_pairs(
            rows[keep],
            histories.indices[keep],
            histories.values[keep],
            histories.n_rows,
            histories.n_items,
        )
        result = evaluate_scorer(engine, kept, targets, [k], allowed=data.allowed)
        return float(result.mean(metric_key("ndcg", k)))

    whole = ndcg(np.ones(histories.nnz, dtype=bool))
    without_new = ndcg(~is_new)
    without_trained = ndcg(~drop_trained)
    return {
        "users": int(histories.n_rows),
        "new_games_in_their_fold_in": int(is_new.sum()),
        f"ndcg@{k}": round(whole, 4),
        f"ndcg@{k}_without_their_new_games": round(without_new, 4),
        f"ndcg@{k}_without_as_many_trained_games": round(without_trained, 4),
    }
