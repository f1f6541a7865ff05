"""The user tower at request time, in plain numpy, and the history weights it shares with
training.

Recommending never imports torch (2 s of import): training exports the user tower's weights as
numpy arrays (:mod:`gamerec.artifacts.model`), and this is exactly
:class:`gamerec.towers.model.UserTower` in eval mode (a test checks the two agree within 1e-5).
"""

from __future__ import annotations

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError

__all__ = [
    "USER_TOWER_ARRAYS",
    "NumpyUserTower",
    "history_weights",
    "token_preferences",
    "unit_history_weights",
]

USER_TOWER_ARRAYS = (
    "history",  # (n_items, H)  EmbeddingBag weight
    "preferences",  # (n_tokens, H) Linear weight, transposed
    "input_bias",  # (H,)
    "hidden_weight",  # (H, H) transposed
    "hidden_bias",  # (H,)
    "output_weight",  # (H, D) transposed
    "output_bias",  # (D,)
    "token_matrix",  # (n_items, n_tokens) item genre/tag profiles
)


class NumpyUserTower:
    """Exactly :class:`gamerec.towers.model.UserTower` in eval mode, in numpy."""

    def __init__(self, arrays: dict[str, np.ndarray], playtime_weight: float = 0.0):
        self.playtime_weight = playtime_weight
        missing = [name for name in USER_TOWER_ARRAYS if name not in arrays]
        if missing:
            raise ArtifactError(f"user tower export lacks {missing}; run `gamerec train` again")
        for name in USER_TOWER_ARRAYS:
            setattr(self, name, np.ascontiguousarray(arrays[name], dtype=np.float32))
        self.history: np.ndarray
        self.preferences: np.ndarray
        self.input_bias: np.ndarray
        self.hidden_weight: np.ndarray
        self.hidden_bias: np.ndarray
        self.output_weight: np.ndarray
        self.output_bias: np.ndarray
        self.token_matrix: np.ndarray

    @property
    def n_items(self) -> int:
        return self.history.shape[0]

    def embed(
        self, histories: UserItems, extra_preferences: np.ndarray | None = None
    ) -> np.ndarray:
        """(n_rows, D) unit vectors. ``extra_preferences`` (n_rows, n_tokens) adds stated tastes."""
        raw_weights = history_weights(histories.values, self.playtime_weight)
        if histories.n_rows == 1:  # one request: two vector-matrix products, no segment sums
            weights = raw_weights / max(float(np.sqrt(raw_weights @ raw_weights)), 1e-12)
            bag = (weights @ self.history[histories.indices])[None]
            prefs = (raw_weights @ self.token_matrix[histories.indices])[None]
            total = float(prefs.sum())
            if total > 0:
                prefs /= total
        else:
            weights = unit_history_weights(histories, raw_weights)
            bag = histories.row_sums(self.history[histories.indices] * weights[:, None])
            prefs = token_preferences(histories, self.token_matrix, raw_weights)
        if extra_preferences is not None:
            prefs = prefs + extra_preferences.astype(np.float32)
            totals = prefs.sum(1, keepdims=True)
            prefs = np.divide(prefs, totals, out=prefs, where=totals > 0)
        x = np.tanh(bag + prefs @ self.preferences + self.input_bias)
        x = np.tanh(x @ self.hidden_weight + self.hidden_bias)
        out = x @ self.output_weight + self.output_bias
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(
            np.float32
        )


def history_weights(minutes: np.ndarray, playtime_weight: float) -> np.ndarray:
    """How much a game in a history counts: ``1 + playtime_weight * log1p(hours played)``.

    ``playtime_weight`` 0 makes ownership alone count (on steam-200k that ranks best: about
    half of the owned games were never played, yet they say as much about taste).
    """
    hours = np.asarray(minutes, dtype=np.float32) / 60.0
    return (1.0 + playtime_weight * np.log1p(hours)).astype(np.float32)


def unit_history_weights(histories: UserItems, raw_weights: np.ndarray) -> np.ndarray:
    """``raw_weights`` (one per history entry) scaled to unit L2 norm within each history."""
    row_of = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
    norms = np.sqrt(np.bincount(row_of, raw_weights**2, minlength=histories.n_rows))
    return raw_weights / np.maximum(norms[row_of], 1e-12)


def token_preferences(
    histories: UserItems, token_matrix: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """(n_rows, n_tokens): each user's playtime-weighted genre/tag profile, summing to 1."""
    prefs = histories.row_sums(token_matrix[histories.indices] * weights[:, None])
    totals = prefs.sum(1, keepdims=True)
    return np.divide(prefs, totals, out=prefs, where=totals > 0)
