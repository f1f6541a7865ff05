"""The interface every ranking method implements: baselines, the two-tower model, anything new."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from gamerec.dataio.matrix import UserItems

__all__ = ["Scorer"]


@runtime_checkable
class Scorer(Protocol):
    """Scores every catalog game for a batch of histories.

    ``score`` gets a batch of histories (one row per user: games and playtime in minutes) and
    returns ``(n_rows, n_items)`` scores, higher = better. The evaluation masks the history's
    games itself, so a scorer need not.
    """

    name: str

    def score(self, histories: UserItems) -> np.ndarray: ...
