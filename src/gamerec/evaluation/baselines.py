"""Strong, simple baselines every quality claim is compared with.

- :class:`Popularity`: the games most training users own, the same list for everyone.
- :class:`ItemKNN`: cosine similarity between the item columns of the binary training matrix;
  a game's score is the sum of its similarities to the history's games (optionally only each
  history game's ``neighbors`` most similar games vote).
- :class:`ContentTfidf`: TF-IDF over tags, genres, developer and publisher; a user's profile
  against every game, cosine. The one baseline that ranks games nobody has played.
- :class:`EASE` (Steck 2019): the weights of :mod:`gamerec.towers.ease` (the re-ranker's
  co-play model, fit the same way); scores are ``history @ B``. :func:`tune_ease` picks lambda
  on the validation users.

All are fit on a :class:`UserItems` of training histories (binarised: owning a game counts,
playtime does not) and implement :class:`gamerec.ranking.scorer.Scorer`. ``X^T X`` is counted
from each user's pairs of games, so nothing needs scipy; the item x item matrices are dense,
which is what bounds the catalog size (see ``EASE.max_items``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

import numpy as np

from gamerec.dataio.content import content_tokens
from gamerec.dataio.matrix import UserItems
from gamerec.errors import ConfigError
from gamerec.evaluation.protocol import mean_ndcg
from gamerec.ranking.scorer import Scorer
from gamerec.ranking.user_tower import history_weights
from gamerec.towers.ease import check_ease_size, ease_weights, gram_matrix

__all__ = [
    "BASELINES",
    "DEFAULT_EASE_LAMBDAS",
    "EASE",
    "Baseline",
    "ContentTfidf",
    "ItemKNN",
    "Popularity",
    "check_ease_size",
    "content_tokens",
    "tune_ease",
]

#: the baselines ``gamerec eval`` knows, in display order
BASELINES = ("popularity", "itemknn", "ease", "content")

DEFAULT_EASE_LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


class Baseline(Scorer, Protocol):
    """A scorer that is fit on the training users' histories."""

    def fit(self, train: UserItems) -> Self: ...


def _dense(histories: UserItems, n_items: int) -> np.ndarray:
    if histories.n_items != n_items:
        raise ValueError(f"histories have {histories.n_items} games, the model {n_items}")
    return histories.to_dense(np.float32)


class Popularity:
    """Scores every game by how many training users own it.

    With ``owners`` (SteamSpy owners per game, NaN when unknown) it ranks by owners instead, ties
    broken by training players: a game nobody in the play data owns can still rank (P-COLD).
    """

    name = "popularity"

    def __init__(self, owners: np.ndarray | None = None) -> None:
        self.owners = owners
        self.counts = np.zeros(0, dtype=np.float32)
        self.ranking = np.zeros(0, dtype=np.float32)

    def fit(self, train: UserItems) -> Self:
        row_of = np.repeat(np.arange(train.n_rows, dtype=np.int64), train.row_lengths())
        # one vote per (user, game), even if a row lists a game twice
        pairs = np.unique(row_of * train.n_items + train.indices)
        owners = np.bincount(pairs % train.n_items, minlength=train.n_items)
        self.counts = owners.astype(np.float32)
        self.ranking = self.counts
        if self.owners is not None:
            if len(self.owners) != train.n_items:
                raise ValueError(f"{len(self.owners)} owner counts for {train.n_items} games")
            order = np.lexsort((self.counts, np.nan_to_num(self.owners, nan=-1.0)))
            self.ranking = np.empty(train.n_items, dtype=np.float32)
            self.ranking[order] = np.arange(train.n_items, dtype=np.float32)
        return self

    def params(self) -> dict[str, object]:
        return {} if self.owners is None else {"by": "SteamSpy owners, then training players"}

    def score(self, histories: UserItems) -> np.ndarray:
        if histories.n_items != len(self.ranking):
            raise ValueError(
                f"histories have {histories.n_items} games, the model {len(self.ranking)}"
            )
        return np.tile(self.ranking, (histories.n_rows, 1))


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


class ContentTfidf:
    """TF-IDF over each game's content tokens; a user's profile against every game, cosine.

    A game's vector is the L2-normalised TF-IDF of its tokens (each token once; smoothed
    ``idf = ln((1 + n) / (1 + df)) + 1``); a user's profile is the sum of their history games'
    vectors weighted as the two-tower weighs a history
    (:func:`gamerec.towers.features.history_weights`). It needs no interactions, so it ranks
    games nobody has played. Vectors are dense (games x tokens float32).
    """

    name = "content"

    def __init__(self, tokens: Sequence[Sequence[str]], playtime_weight: float = 0.0) -> None:
        self.tokens = tokens
        self.playtime_weight = playtime_weight
        self.vocabulary: list[str] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)

    def params(self) -> dict[str, object]:
        return {"tokens": len(self.vocabulary), "playtime_weight": self.playtime_weight}

    def fit(self, train: UserItems | None = None) -> Self:
        """Build the game vectors (``train`` is not needed: only its catalog size is checked)."""
        n_items = len(self.tokens)
        if train is not None and train.n_items != n_items:
            raise ValueError(f"content tokens for {n_items} games, the matrix has {train.n_items}")
        self.vocabulary = sorted({token for game in self.tokens for token in game})
        column = {token: i for i, token in enumerate(self.vocabulary)}
        rows = [i for i, game in enumerate(self.tokens) for _ in game]
        columns = [column[token] for game in self.tokens for token in game]
        vectors = np.zeros((n_items, len(self.vocabulary)), dtype=np.float32)
        vectors[rows, columns] = 1.0
        frequency = vectors.sum(0)
        vectors *= (np.log((1.0 + n_items) / (1.0 + frequency)) + 1.0).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.divide(vectors, norms, out=vectors, where=norms > 0)
        return self

    def score(self, histories: UserItems) -> np.ndarray:
        vectors = self.vectors
        if histories.n_items != len(vectors):
            raise ValueError(f"histories have {histories.n_items} games, the model {len(vectors)}")
        weights = history_weights(histories.values, self.playtime_weight)
        profiles = histories.row_sums(vectors[histories.indices] * weights[:, None])
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        profiles = np.divide(profiles, norms, out=profiles, where=norms > 0)
        return (profiles @ vectors.T).astype(np.float32, copy=False)


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
    allowed: np.ndarray | None = None,
) -> tuple[EASE, dict[float, float]]:
    """Choose lambda from the grid by validation NDCG@k; return the model and what was tried.

    Each lambda costs a dense ``n_items x n_items`` inversion, so the grid (sorted) is walked
    rather than swept: start at its middle, step towards the better neighbour, stop when the
    next lambda is worse (validation NDCG is unimodal in lambda in practice), ranking the
    ``allowed`` games (all when None) as the evaluation does. Returns the chosen
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
            ndcg = mean_ndcg(
                model, valid_histories, valid_targets, k=k, batch_size=batch_size, allowed=allowed
            )
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
