"""Top-K ranking metrics, vectorised over users.

Everything starts from ``top_items``: an ``(n_users, K)`` array of item indices, best first, with
``-1`` where a slot holds no rankable item (the catalog minus the history was shorter than K).
:func:`hit_matrix` marks which recommendations are targets; :func:`ranking_metrics` turns that
into per-user metrics at each cut-off.

Definitions, with ``T`` the user's targets, ``rel_r`` 1 if the item at rank ``r`` is in ``T``,
``hits@K`` the number of targets in the top K and ``m = min(K, |T|)``:

- ``recall@K    = hits@K / m`` (so a perfect ranking scores 1 even when ``|T| > K``)
- ``precision@K = hits@K / K``
- ``ndcg@K      = sum_r rel_r / log2(r + 1)  /  sum_{r <= m} 1 / log2(r + 1)``
- ``map@K       = sum_r precision@r * rel_r / m``  (average precision at K)
- ``hit_rate@K  = 1 if hits@K > 0 else 0``
- ``pop_pct@K``: mean popularity percentile (0-100, training data) of the user's top K
- ``coverage@K``: distinct items in anyone's top K / catalog size (one number, not per user)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import InvalidRequestError

__all__ = [
    "DEFAULT_KS",
    "PER_USER_METRICS",
    "check_ks",
    "coverage",
    "hit_matrix",
    "metric_key",
    "popularity_bias",
    "popularity_percentiles",
    "ranking_metrics",
    "top_k",
]

DEFAULT_KS = (10, 20, 50)

#: metrics computed per user (means and bootstrap CIs are taken over users)
PER_USER_METRICS = ("recall", "ndcg", "precision", "map", "hit_rate", "pop_pct")


def metric_key(name: str, k: int) -> str:
    """The key of a metric at a cut-off, e.g. ``recall@20``."""
    return f"{name}@{k}"


def check_ks(ks: Iterable[int], n_items: int) -> list[int]:
    """Sorted distinct cut-offs; each must be in 1..n_items."""
    values = sorted({int(k) for k in ks})
    if not values:
        raise InvalidRequestError("no cut-off K given; pass at least one, e.g. --k 20")
    if values[0] < 1:
        raise InvalidRequestError(f"K must be at least 1 (got {values[0]}); use e.g. --k 20")
    if values[-1] > n_items:
        raise InvalidRequestError(
            f"K = {values[-1]} is larger than the catalog ({n_items:,} games); "
            f"use a K between 1 and {n_items:,}"
        )
    return values


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """``(n_rows, k)`` item indices by descending score; ties go to the lower item index.

    ``-inf`` (and NaN) scores mark items that must not be recommended: they are never chosen
    over a finite score, and a slot that can only be filled by one holds ``-1``.
    """
    scores = np.asarray(scores)
    n_rows, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise InvalidRequestError(f"K = {k} must be between 1 and the catalog size {n_items}")
    if n_rows == 0:
        return np.empty((0, k), dtype=np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    # The k-th largest score of each row; items above it are in, ties at it go to the lowest
    # indices, so the result does not depend on how argpartition orders equal values.
    kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k]
    chosen = scores >= kth[:, None]
    crowded = np.flatnonzero(chosen.sum(axis=1) > k)  # rows with more ties than room
    if crowded.size:
        sub, threshold = scores[crowded], kth[crowded, None]
        above, tied = sub > threshold, sub == threshold
        room = k - above.sum(axis=1)
        first_tied = np.cumsum(tied, axis=1, dtype=np.int32) <= room[:, None]
        chosen[crowded] = above | (tied & first_tied)
    items = np.nonzero(chosen)[1].reshape(n_rows, k)
    chosen_scores = np.take_along_axis(scores, items, axis=1)
    order = np.lexsort((items, -chosen_scores), axis=-1)
    items = np.take_along_axis(items, order, axis=1).astype(np.int64)
    items[np.isneginf(np.take_along_axis(chosen_scores, order, axis=1))] = -1
    return items


def hit_matrix(top_items: np.ndarray, targets: UserItems) -> np.ndarray:
    """``(n_rows, K)`` bool: whether each recommended item is among its row's targets."""
    n_rows = top_items.shape[0]
    if targets.n_rows != n_rows:
        raise ValueError(f"{n_rows} ranked rows but {targets.n_rows} target rows")
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), targets.row_lengths())
    target_keys = np.sort(row_of * targets.n_items + targets.indices)
    if target_keys.size == 0:
        return np.zeros(top_items.shape, dtype=bool)
    keys = np.arange(n_rows, dtype=np.int64)[:, None] * targets.n_items + top_items
    found = np.minimum(np.searchsorted(target_keys, keys), target_keys.size - 1)
    return (target_keys[found] == keys) & (top_items >= 0)


def ranking_metrics(
    hits: np.ndarray, n_targets: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user recall, ndcg, precision, map and hit rate at each K (float64 arrays).

    ``n_targets`` must be >= 1 for every row; ``hits`` needs at least ``max(ks)`` columns.
    """
    width = hits.shape[1]
    if ks and max(ks) > width:
        raise ValueError(f"ranking has {width} columns, fewer than K = {max(ks)}")
    n_targets = np.asarray(n_targets, dtype=np.int64)
    if np.any(n_targets < 1):
        raise ValueError("every row needs at least one target")
    rel = hits.astype(np.float64)
    ranks = np.arange(1, width + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(rel, axis=1)
    dcg = np.cumsum(rel * discount, axis=1)
    ideal = np.cumsum(discount)
    cum_precision = np.cumsum(rel * cum_hits / ranks, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        found = cum_hits[:, k - 1]
        m = np.minimum(k, n_targets)
        out[metric_key("recall", k)] = found / m
        out[metric_key("ndcg", k)] = dcg[:, k - 1] / ideal[m - 1]
        out[metric_key("precision", k)] = found / k
        out[metric_key("map", k)] = cum_precision[:, k - 1] / m
        out[metric_key("hit_rate", k)] = (found > 0).astype(np.float64)
    return out


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Each item's popularity as a mid-rank percentile (0-100) of the catalog.

    ``100 * (#items less popular + 0.5 * #items as popular) / n_items``: the most popular of
    many items is near 100, the least near 0, and a catalog of equals sits at 50.
    """
    counts = np.asarray(counts)
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    up_to = np.searchsorted(ordered, counts, side="right")
    return 100.0 * (below + up_to) / (2.0 * max(len(counts), 1))


def popularity_bias(
    top_items: np.ndarray, percentiles: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per user, the mean popularity percentile of the top K (empty slots ignored; 0 if none)."""
    valid = top_items >= 0
    values = np.where(valid, percentiles[np.maximum(top_items, 0)], 0.0)
    total = np.cumsum(values, axis=1)
    count = np.cumsum(valid, axis=1)
    return {metric_key("pop_pct", k): total[:, k - 1] / np.maximum(count[:, k - 1], 1) for k in ks}


def coverage(top_items: np.ndarray, ks: Sequence[int], n_items: int) -> dict[str, float]:
    """Share of the catalog that appears in at least one user's top K."""
    out = {}
    for k in ks:
        column = top_items[:, :k]
        distinct = np.unique(column[column >= 0]).size
        out[metric_key("coverage", k)] = distinct / n_items
    return out
