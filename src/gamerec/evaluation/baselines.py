"""Strong, simple baselines every quality claim is compared with.

- :class:`Popularity`: the games most training users own, the same list for everyone.
- :class:`ItemKNN`: cosine similarity between the item columns of the binary training matrix;
  a game's score is the sum of its similarities to the history's games (optionally only each
  history game's ``neighbors`` most similar games vote).
- :class:`EASE` (Steck 2019): the weights of :mod:`gamerec.towers.ease` (the re-ranker's
  co-play model, fit the same way); scores are ``history @ B``. :func:`tune_ease` picks lambda
  on the validation users.

All are fit on a :class:`UserItems` of training histories (binarised: owning a game counts,
playtime does not) and implement :class:`gamerec.towers.scorer.Scorer`. ``X^T X`` is counted
from each user's pairs of games, so nothing needs scipy; the item x item matrices are dense,
which is what bounds the catalog size (see ``EASE.max_items``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import ConfigError
from gamerec.evaluation.protocol import mean_ndcg
from gamerec.towers.ease import check_ease_size, ease_weights, gram_matrix
from gamerec.towers.scorer import Scorer

__all__ = [
    "BASELINES",
    "DEFAULT_EASE_LAMBDAS",
    "EASE",
    "Baseline",
    "ItemKNN",
    "Popularity",
    "check_ease_size",
    "tune_ease",
]

#: the baselines ``gamerec eval`` knows, in display order
BASELINES = ("popularity", "itemknn", "ease")

DEFAULT_EASE_LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


class Baseline(Scorer, Protocol):
    """A scorer that is fit on the training users' histories."""

    def fit(self, train: UserItems) -> Self: ...


def _dense(histories: UserItems, n_items: int) -> np.ndarray:
    if histories.n_items != n_items:
        raise ValueError(f"histories have {histories.n_items} games, the model {n_items}")
    return histories.to_dense(np.float32)


class Popularity:
    """Scores every game by how many training users own it."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float32)

    def fit(self, train: UserItems) -> Self:
        row_of = np.repeat(np.arange(train.n_rows, dtype=np.int64), train.row_lengths())
        # one vote per (user, game), even if a row lists a game twice
        pairs = np.unique(row_of * train.n_items + train.indices)
        owners = np.bincount(pairs % train.n_items, minlength=train.n_items)
        self.counts = owners.astype(np.float32)
        return self

    def params(self) -> dict[str, object]:
        return {}

    def score(self, histories: UserItems) -> np.ndarray:
        if histories.n_items != len(self.counts):
            raise ValueError(
                f"histories have {histories.n_items} games, the model {len(self.counts)}"
            )
        return np.tile(self.counts, (histories.n_rows, 1))


class ItemKNN:
    """Item-based kNN with cosine similarity on the binary training matrix."""

    name = "itemknn"

    def __init__(self, neighbors: int | None = None, batch_size: int = 1024) -> None:
        if neighbors is not None and neighbors < 1:
            raise ConfigError(f"item-kNN neighbors must be at least 1 or None, got {neighbors}")
        self.neighbors = neighbors
        self.batch_size = batch_size
        self.similarity = np.zeros((0, 0), dtype=np.float32)

    def params(self) -> dict[str, object]:
        return {"neighbors": self.neighbors}

    def fit(self, train: UserItems, gram: np.ndarray | None = None) -> Self:
        """Fit on the training histories (``gram``: their :func:`gram_matrix`, if computed)."""
        gram = gram_matrix(train) if gram is None else gram
        norms = np.sqrt(np.diag(gram))
        safe = np.where(norms > 0, norms, 1.0)
        similarity = (gram / safe[:, None] / safe[None, :]).astype(np.float32)
        np.fill_diagonal(similarity, 0.0)
        n_items = len(similarity)
        if self.neighbors is not None and self.neighbors < n_items - 1:
            # keep each item's `neighbors` most similar items (its row), zero the rest
            drop = n_items - self.neighbors
            for start in range(0, n_items, self.batch_size):
                block = similarity[start : start + self.batch_size]
                weakest = np.argpartition(block, drop - 1, axis=1)[:, :drop]
                np.put_along_axis(block, weakest, 0.0, axis=1)
        self.similarity = similarity
        return self

    def score(self, histories: UserItems) -> np.ndarray:
        return _dense(histories, len(self.similarity)) @ self.similarity


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019) with L2 weight ``lam``."""

    name = "ease"

    def __init__(self, lam: float = 100.0, max_items: int = 20_000) -> None:
        if lam <= 0:
            raise ConfigError(f"EASE lambda must be positive, got {lam}")
        self.lam = float(lam)
        self.max_items = max_items
        self.weights = np.zeros((0, 0), dtype=np.float32)

    def params(self) -> dict[str, object]:
        return {"lambda": self.lam}

    def fit(self, train: UserItems, gram: np.ndarray | None = None) -> Self:
        """Fit on the training histories (``gram``: their :func:`gram_matrix`, if computed)."""
        check_ease_size(train.n_items, self.max_items)
        self.weights = ease_weights(gram_matrix(train) if gram is None else gram, self.lam)
        return self

    def score(self, histories: UserItems) -> np.ndarray:
        return _dense(histories, len(self.weights)) @ self.weights


def tune_ease(
    train: UserItems,
    valid_histories: UserItems,
    valid_targets: UserItems,
    lambdas: Sequence[float] = DEFAULT_EASE_LAMBDAS,
    *,
    max_items: int = 20_000,
    k: int = 20,
    gram: np.ndarray | None = None,
    batch_size: int = 1024,
) -> tuple[EASE, dict[float, float]]:
    """Choose lambda from the grid by validation NDCG@k; return the model and what was tried.

    Each lambda costs a dense ``n_items x n_items`` inversion, so the grid (sorted) is walked
    rather than swept: start at its middle, step towards the better neighbour, stop when the
    next lambda is worse (validation NDCG is unimodal in lambda in practice). Returns the chosen
    model and ``{lambda: validation NDCG@k}`` for every lambda tried. Without validation users,
    or with a single lambda, the middle of the grid is used and the dict is empty.
    """
    grid = sorted({float(lam) for lam in lambdas})
    if not grid:
        raise ConfigError("the EASE lambda grid is empty; set eval.ease_lambdas, e.g. [100]")
    check_ease_size(train.n_items, max_items)
    if gram is None:
        gram = gram_matrix(train)
    middle = (len(grid) - 1) // 2
    if len(grid) == 1 or not (valid_targets.row_lengths() > 0).any():
        return EASE(grid[middle], max_items).fit(train, gram), {}

    tried: dict[int, float] = {}
    best: tuple[float, EASE] | None = None

    def value(position: int) -> float:
        nonlocal best
        if position not in tried:
            model = EASE(grid[position], max_items).fit(train, gram)
            ndcg = mean_ndcg(model, valid_histories, valid_targets, k=k, batch_size=batch_size)
            tried[position] = ndcg
            if best is None or ndcg > best[0]:
                best = (ndcg, model)
        return tried[position]

    current = middle
    value(current)
    for step in (-1, 1):
        moved = False
        while 0 <= current + step < len(grid) and value(current + step) > value(current):
            current += step
            moved = True
        if moved:
            break
    assert best is not None
    return best[1], {grid[p]: v for p, v in sorted(tried.items())}
