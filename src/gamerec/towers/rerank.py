"""Second stage: re-rank the two-tower's candidates with a co-play model.

The co-play model is EASE's item-item weights ``B`` fit on the training users
(:mod:`gamerec.towers.ease`, shared with the EASE baseline). A candidate's co-play score is the
sum of ``B[j, c]`` over the games ``j`` a user owns. The final score blends the two stages, each
standardised over the user's candidates: ``alpha * z(two-tower) + (1 - alpha) * z(co-play)``.
What runs at request time is numpy only.
"""

from __future__ import annotations

import numpy as np

from gamerec.dataio.matrix import UserItems

__all__ = ["blend", "coplay_scores", "rerank_scores"]


def coplay_scores(weights: np.ndarray, histories: UserItems, candidates: np.ndarray) -> np.ndarray:
    """(n_rows, n_candidates): sum of ``weights[owned, candidate]`` per user."""
    scores = np.zeros(candidates.shape, dtype=np.float32)
    for row in range(histories.n_rows):
        owned = histories.row(row)
        if len(owned):  # only the (owned x candidates) block, not whole rows of the matrix
            scores[row] = weights[owned[:, None], candidates[row][None, :]].sum(0)
    return scores


def _standardise(values: np.ndarray) -> np.ndarray:
    mean = values.mean(1, keepdims=True)
    std = values.std(1, keepdims=True)
    return (values - mean) / np.where(std > 0, std, 1.0)


def blend(first_stage: np.ndarray, second_stage: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * z(first) + (1 - alpha) * z(second)`` over each row's candidates."""
    return alpha * _standardise(first_stage) + (1.0 - alpha) * _standardise(second_stage)


def rerank_scores(
    first_stage: np.ndarray,
    histories: UserItems,
    weights: np.ndarray,
    alpha: float,
    n_candidates: int,
) -> np.ndarray:
    """Full (n_rows, n_items) scores: each user's top ``n_candidates`` unowned games re-ranked.

    Games outside the candidates score ``-inf`` (the first stage never retrieved them); owned
    games are never candidates.
    """
    scores = first_stage.astype(np.float32, copy=True)
    rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
    scores[rows, histories.indices] = -np.inf
    n_candidates = min(n_candidates, scores.shape[1])
    candidates = np.argpartition(-scores, n_candidates - 1, axis=1)[:, :n_candidates]
    first = np.take_along_axis(scores, candidates, 1)
    usable = np.isfinite(first)
    second = coplay_scores(weights, histories, candidates)
    blended = blend(np.where(usable, first, 0.0), second, alpha)
    out = np.full_like(scores, -np.inf)
    np.put_along_axis(out, candidates, np.where(usable, blended, -np.inf), 1)
    return out
