"""EASE (Steck 2019): the co-play model of the re-ranker and the EASE baseline, fit one way.

Item-item weights from the closed form ``P = (XᵀX + λI)⁻¹``, ``B = I - P / diag(P)`` with a
zero diagonal, where ``X`` is the binary user x item matrix of the training users. A user's
score for game ``c`` is the sum of ``B[j, c]`` over the games ``j`` they own. The matrices are
dense, which is what bounds the catalog size (:func:`check_ease_size`).
"""

from __future__ import annotations

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import ConfigError

__all__ = ["check_ease_size", "ease_weights", "gram_matrix"]


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


def check_ease_size(
    n_items: int,
    max_items: int,
    setting: str = "eval.ease_max_items",
    otherwise: str = "leave ease out of eval.baselines",
) -> None:
    """Refuse catalogs whose dense item x item matrices would not fit in memory.

    ``setting`` names the limit the caller enforces, ``otherwise`` what else the user can do.
    """
    if n_items > max_items:
        # XᵀX, its regularised copy, the factor and the inverse in float64, plus the float32
        # weights of the best and the current lambda: about 36 bytes per pair of games
        gigabytes = 36 * n_items * n_items / 1e9
        raise ConfigError(
            f"EASE needs dense {n_items:,} x {n_items:,} matrices (about {gigabytes:.1f} GB) "
            f"and the catalog has {n_items:,} games, above the limit {setting} = "
            f"{max_items:,}; raise {setting} if this machine has the memory, or {otherwise}"
        )


def ease_weights(gram: np.ndarray, regularisation: float) -> np.ndarray:
    """EASE's item-item weights (n_items, n_items) float32 from ``gram`` = XᵀX.

    Callers check the size first (:func:`check_ease_size`).
    """
    if regularisation <= 0:
        raise ConfigError(f"EASE lambda must be positive, got {regularisation}")
    # a game nobody in ``gram`` plays has a zero row and column: its weights are all zero, so
    # the inverse is taken over the played games alone (a catalog grown with games nobody
    # plays costs what its played part costs; the inverse's work grows with the cube)
    played = np.flatnonzero(np.diagonal(gram) > 0)
    if len(played) < gram.shape[0]:
        weights = np.zeros(gram.shape, dtype=np.float32)
        if len(played):
            weights[np.ix_(played, played)] = _ease_weights(
                np.asarray(gram)[np.ix_(played, played)], regularisation
            )
        return weights
    return _ease_weights(gram, regularisation)


def _ease_weights(gram: np.ndarray, regularisation: float) -> np.ndarray:
    n_items = gram.shape[0]
    try:  # training has torch: its Cholesky inverse is about 3x faster than numpy's LU inverse
        import torch
    except ImportError:
        regularised = gram.astype(np.float64, copy=True)
        regularised[np.diag_indices(n_items)] += regularisation
        inverse = np.linalg.inv(regularised)
        del regularised
        inverse /= -np.diag(inverse).copy()[None, :]
        np.fill_diagonal(inverse, 0.0)
        return inverse.astype(np.float32)
    # in place where possible: at most three n x n float64 matrices alive at once
    shifted = torch.from_numpy(np.asarray(gram, dtype=np.float64)).clone()
    shifted.diagonal().add_(regularisation)
    factor = torch.linalg.cholesky(shifted)
    del shifted
    precision = torch.cholesky_inverse(factor)
    del factor
    precision.div_(precision.diagonal().clone().neg_()[None, :])
    precision.fill_diagonal_(0.0)
    return precision.to(torch.float32).numpy()
