"""Second stage: re-rank the two-tower's candidates with a co-play model.

The co-play model is EASE (Steck 2019): item-item weights ``B`` from the closed form
``P = (XᵀX + λI)⁻¹``, ``B = I - P / diag(P)`` (zero diagonal), fit on the training users. A
candidate's co-play score is the sum of ``B[j, c]`` over the games ``j`` a user owns. The final
score blends the two stages, each standardised over the user's candidates:
``alpha * z(two-tower) + (1 - alpha) * z(co-play)``. What runs at request time is numpy only;
fitting the weights uses torch's Cholesky inverse where torch is installed (training).
"""

from __future__ import annotations

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import GamerecError

__all__ = ["blend", "coplay_scores", "ease_weights", "gram_matrix", "rerank_scores"]


def gram_matrix(matrix: UserItems, batch_pairs: int = 1 << 24) -> np.ndarray:
    """XᵀX of the binary user x item matrix, (n_items, n_items) float64.

    Counted from each user's pairs of games (sum of squared history lengths, in batches of
    about ``batch_pairs`` pairs), not from dense row blocks: the work grows with the number of
    users, not with users x games².
    """
    n_items = matrix.n_items
    gram = np.zeros(n_items * n_items, dtype=np.float64)
    lengths = matrix.row_lengths().astype(np.int64)
    ends = np.cumsum(lengths * lengths)
    start = 0
    while start < matrix.n_rows:
        budget = (ends[start - 1] if start else 0) + batch_pairs
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        rows = matrix.take_rows(np.arange(start, min(stop, matrix.n_rows)))
        start = stop
        row_length = np.repeat(rows.row_lengths(), rows.row_lengths())  # per entry
        row_start = np.repeat(rows.indptr[:-1], rows.row_lengths())
        entry = np.repeat(np.arange(rows.nnz), row_length)  # each entry once per row partner
        first_pair = np.cumsum(row_length) - row_length
        partner = row_start[entry] + np.arange(len(entry)) - np.repeat(first_pair, row_length)
        keys = rows.indices[entry].astype(np.int64) * n_items + rows.indices[partner]
        np.add.at(gram, keys, 1.0)
    return gram.reshape(n_items, n_items)


def ease_weights(gram: np.ndarray, regularisation: float, max_items: int) -> np.ndarray:
    """EASE's item-item weights (n_items, n_items) float32; refuses catalogs above ``max_items``."""
    n_items = gram.shape[0]
    if n_items > max_items:
        raise GamerecError(
            f"the co-play re-ranker needs a dense {n_items:,} x {n_items:,} matrix, above "
            f"train.rerank_max_items = {max_items:,} games; raise train.rerank_max_items if "
            f"memory allows (~{8 * n_items * n_items / 1e9:.1f} GB) or set train.rerank = false"
        )
    try:  # training has torch: its Cholesky inverse is about 3x faster than numpy's LU inverse
        import torch
    except ImportError:
        regularised = gram.copy()
        regularised[np.diag_indices(n_items)] += regularisation
        inverse = np.linalg.inv(regularised)
        del regularised
        inverse /= -np.diag(inverse).copy()[None, :]
        np.fill_diagonal(inverse, 0.0)
        return inverse.astype(np.float32)
    # in place where possible: at most three n x n float64 matrices alive at once
    shifted = torch.from_numpy(gram).clone()
    shifted.diagonal().add_(regularisation)
    factor = torch.linalg.cholesky(shifted)
    del shifted
    precision = torch.cholesky_inverse(factor)
    del factor
    precision.div_(precision.diagonal().clone().neg_()[None, :])
    precision.fill_diagonal_(0.0)
    return precision.to(torch.float32).numpy()


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
