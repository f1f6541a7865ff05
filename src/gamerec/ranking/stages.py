"""The parts of the ranking policy: the co-play second stage and the places of new games.

The co-play model is EASE's item-item weights ``B`` fit on the training users
(:mod:`gamerec.towers.ease`). A candidate's co-play score is the sum of ``B[j, c]`` over the
games ``j`` a user owns. The final score blends the two stages, each standardised over the
user's candidates: ``alpha * z(two-tower) + (1 - alpha) * z(co-play)``. The candidates are the
union of the two-tower's top games and the co-play model's own top games: a game the two-tower
ranks 201st but the co-play model ranks 3rd is still re-ranked (with the two-tower's top 200
alone the blend trailed EASE).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["CoPlay", "blend", "interleave", "new_game_slots"]

T = TypeVar("T")


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


class CoPlay:
    """The co-play weights, which cover only the games the model was trained on, addressed by
    catalog row: ``rows[i]`` is catalog game ``i``'s row of ``weights`` (-1: none)."""

    def __init__(self, weights: np.ndarray, rows: np.ndarray | None = None):
        self.weights = weights  # (m, m) float32, possibly memory-mapped
        size = weights.shape[0]
        self.rows = (
            np.arange(size, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        )  # (n,)
        #: the catalog game of each weights row
        self.item_of_row = np.full(size, -1, dtype=np.int64)
        known = self.rows >= 0
        self.item_of_row[self.rows[known]] = np.flatnonzero(known)
        self._rows_with_item = np.flatnonzero(self.item_of_row >= 0)

    def block(self, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(history, candidates) weights. A candidate the co-play model does not cover gets
        its history's mean contribution over the other candidates, so its blended score
        rests on the first stage alone."""
        history_rows = self.rows[history]
        candidate_rows = self.rows[candidates]
        owned, known = history_rows >= 0, candidate_rows >= 0
        out = np.zeros((len(history), len(candidates)), dtype=np.float32)
        if owned.any() and known.any():
            # only the (owned x candidates) block, not whole rows of the matrix
            out[np.ix_(owned, known)] = self.weights[
                np.ix_(history_rows[owned], candidate_rows[known])
            ]
            if not known.all():
                out[:, ~known] = out[:, known].mean(1, keepdims=True)
        return out

    def top(
        self, owned: np.ndarray, n: int, allowed: np.ndarray, blocked: Sequence[np.ndarray]
    ) -> np.ndarray:
        """The ``n`` catalog games of highest co-play score for the history ``owned`` among
        ``allowed`` (a catalog mask), none of ``blocked`` (catalog rows), best first."""
        owned_rows = self.rows[owned]
        owned_rows = owned_rows[owned_rows >= 0]
        if n <= 0 or len(owned_rows) == 0:
            return np.empty(0, dtype=np.int64)
        eligible = np.zeros(self.weights.shape[0], dtype=bool)
        with_item = self._rows_with_item
        eligible[with_item] = allowed[self.item_of_row[with_item]]
        for ids in blocked:
            blocked_rows = self.rows[ids]
            eligible[blocked_rows[blocked_rows >= 0]] = False
        if not eligible.any():
            return np.empty(0, dtype=np.int64)
        scores = np.asarray(self.weights[owned_rows]).sum(0)
        scores = np.where(eligible, scores, -np.inf)
        n = min(n, int(eligible.sum()))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.item_of_row[top]


def new_game_slots(k: int, share: float) -> np.ndarray:
    """The places (0-based) of an answer of ``k`` that go to games nobody in the play data owns:
    one each time ``share`` adds up to a whole game (0.2: places 4, 9, 14, ...), so the first K
    places of a longer answer are the answer of K."""
    return np.array(_slots(k, share), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _slots(k: int, share: float) -> tuple[int, ...]:
    # every answer of one size asks this again: computed once per (k, share)
    ranks = np.arange(1, max(k, 0) + 1)
    whole = np.floor(ranks * share + 1e-9)
    return tuple(np.flatnonzero(np.diff(whole, prepend=0.0) > 0).tolist())


def interleave(trained: Sequence[T], new: Sequence[T], k: int, share: float) -> list[T]:
    """An answer of up to ``k``: ``new`` (best first) at :func:`new_game_slots`, ``trained``
    (best first) everywhere else; when one list runs out the other fills its places."""
    slots = set(_slots(k, share))
    answer: list[T] = []
    next_trained = next_new = 0
    for place in range(k):
        take_new = place in slots and next_new < len(new)
        if not take_new and next_trained >= len(trained):
            take_new = next_new < len(new)
        if take_new:
            answer.append(new[next_new])
            next_new += 1
        elif next_trained < len(trained):
            answer.append(trained[next_trained])
            next_trained += 1
        else:
            break
    return answer
