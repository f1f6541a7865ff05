"""Second stage: re-rank the two-tower's candidates with a co-play model.

The co-play model is EASE's item-item weights ``B`` fit on the training users
(:mod:`gamerec.towers.ease`, shared with the EASE baseline). A candidate's co-play score is the
sum of ``B[j, c]`` over the games ``j`` a user owns. The final score blends the two stages, each
standardised over the user's candidates: ``alpha * z(two-tower) + (1 - alpha) * z(co-play)``.
The candidates are the union of the two-tower's top games and the co-play model's own top games:
a game the two-tower ranks 201st but the co-play model ranks 3rd is still re-ranked (with the
two-tower's top 200 alone the blend trailed EASE). What runs at request time is numpy only.
"""

from __future__ import annotations

import numpy as np

from gamerec.dataio.matrix import UserItems

__all__ = ["blend", "coplay_candidates", "coplay_scores", "rerank_scores"]


def coplay_scores(weights: np.ndarray, histories: UserItems, candidates: np.ndarray) -> np.ndarray:
    """(n_rows, n_candidates): sum of ``weights[owned, candidate]`` per user."""
    scores = np.zeros(candidates.shape, dtype=np.float32)
    for row in range(histories.n_rows):
        owned = histories.row(row)
        if len(owned):  # only the (owned x candidates) block, not whole rows of the matrix
            scores[row] = weights[owned[:, None], candidates[row][None, :]].sum(0)
    return scores


def coplay_candidates(
    weights: np.ndarray, owned: np.ndarray, n: int, eligible: np.ndarray
) -> np.ndarray:
    """The ``n`` games of highest co-play score for one history among ``eligible`` (a bool
    mask over the co-play model's games: not owned, not already a candidate, allowed), best
    first."""
    if n <= 0 or len(owned) == 0 or not eligible.any():
        return np.empty(0, dtype=np.int64)
    scores = np.asarray(weights[owned]).sum(0)
    scores = np.where(eligible, scores, -np.inf)
    n = min(n, int(eligible.sum()))
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.argsort(-scores[top], kind="stable")].astype(np.int64)


def _standardise(values: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    if where is None:
        mean = values.mean(1, keepdims=True)
        std = values.std(1, keepdims=True)
    else:
        counts = np.maximum(where.sum(1, keepdims=True), 1)
        mean = np.where(where, values, 0.0).sum(1, keepdims=True) / counts
        std = np.sqrt(np.where(where, (values - mean) ** 2, 0.0).sum(1, keepdims=True) / counts)
    return (values - mean) / np.where(std > 0, std, 1.0)


def blend(
    first_stage: np.ndarray,
    second_stage: np.ndarray,
    alpha: float,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """``alpha * z(first) + (1 - alpha) * z(second)`` over each row's candidates (those
    ``where`` is True, when given: a row's padding must not move its mean and spread)."""
    return alpha * _standardise(first_stage, where) + (1.0 - alpha) * _standardise(
        second_stage, where
    )


def rerank_scores(
    first_stage: np.ndarray,
    histories: UserItems,
    weights: np.ndarray,
    alpha: float,
    n_candidates: int,
    n_coplay_candidates: int = 0,
) -> np.ndarray:
    """Full (n_rows, n_items) scores: each user's candidates re-ranked.

    The candidates are the top ``n_candidates`` unowned games of the first stage and the top
    ``n_coplay_candidates`` unowned games of the co-play model not among those. Games outside
    the candidates score ``-inf``; owned games are never candidates.
    """
    scores = first_stage.astype(np.float32, copy=True)
    rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
    scores[rows, histories.indices] = -np.inf
    n_candidates = min(n_candidates, scores.shape[1])
    candidates = np.argpartition(-scores, n_candidates - 1, axis=1)[:, :n_candidates]
    n_extra = min(n_coplay_candidates, scores.shape[1] - n_candidates)
    if n_extra > 0:
        eligible = np.isfinite(scores)
        np.put_along_axis(eligible, candidates, False, 1)
        extra = np.full((histories.n_rows, n_extra), -1, dtype=np.int64)
        for row in range(histories.n_rows):
            found = coplay_candidates(weights, histories.row(row), n_extra, eligible[row])
            extra[row, : len(found)] = found
        candidates = np.concatenate([candidates, extra], 1)
    safe = np.maximum(candidates, 0)
    first = np.take_along_axis(scores, safe, 1)
    usable = np.isfinite(first) & (candidates >= 0)
    second = coplay_scores(weights, histories, safe)
    blended = blend(np.where(usable, first, 0.0), second, alpha, usable)
    out = np.full_like(scores, -np.inf)
    at_row, at_column = np.nonzero(usable)  # usable candidates are distinct within a row
    out[at_row, candidates[at_row, at_column]] = blended[at_row, at_column]
    return out
