"""The user tower in plain numpy, and a scorer over a trained model directory.

Recommending never imports torch (2 s of import): training exports the user tower's weights as
numpy arrays and the item tower's output as item embeddings (:mod:`gamerec.artifacts.model`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gamerec.artifacts.model import ModelArtifacts, read_model
from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError
from gamerec.towers.features import history_weights, token_preferences, unit_history_weights

__all__ = [
    "USER_TOWER_ARRAYS",
    "CatalogScorer",
    "NumpyUserTower",
    "TwoTowerScorer",
    "manifest_playtime_weight",
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


class TwoTowerScorer:
    """Scores every catalog game for a batch of histories: cosine of the two towers.

    With ``rerank`` (and a co-play model in the model directory), each user's top candidates
    are re-ranked by :mod:`gamerec.towers.rerank`; other games score ``-inf``.
    """

    def __init__(
        self,
        user_tower: NumpyUserTower,
        item_embeddings: np.ndarray,
        manifest: dict,
        coplay: np.ndarray | None = None,
        rerank: bool = False,
    ):
        self.user_tower = user_tower
        self.item_embeddings = item_embeddings
        self.manifest = manifest
        settings = manifest.get("rerank") or {}
        self.rerank = bool(rerank and coplay is not None and settings)
        self.coplay = coplay
        self.alpha = float(settings.get("alpha", 1.0))
        self.n_candidates = int(settings.get("candidates", 200))
        self.n_coplay_candidates = int(settings.get("coplay_candidates", 0))
        self.name = "two-tower + re-rank" if self.rerank else "two-tower"

    @classmethod
    def from_model(cls, model: ModelArtifacts, rerank: bool = False) -> TwoTowerScorer:
        tower = NumpyUserTower(model.user_tower, manifest_playtime_weight(model.manifest))
        return cls(tower, model.item_embeddings, model.manifest, model.coplay, rerank)

    @classmethod
    def from_dir(cls, model_dir: str | Path, rerank: bool = False) -> TwoTowerScorer:
        return cls.from_model(read_model(model_dir, coplay="map" if rerank else "skip"), rerank)

    def score(self, histories: UserItems) -> np.ndarray:
        return self.second_stage(
            self.user_tower.embed(histories) @ self.item_embeddings.T, histories
        )

    def second_stage(self, first_stage: np.ndarray, histories: UserItems) -> np.ndarray:
        """``first_stage`` (n_rows, n_items) re-ranked, when this scorer re-ranks; a game
        scored ``-inf`` there is never a candidate."""
        if not self.rerank or self.coplay is None:
            return first_stage
        from gamerec.towers.rerank import rerank_scores

        return rerank_scores(
            first_stage,
            histories,
            self.coplay,
            self.alpha,
            self.n_candidates,
            self.n_coplay_candidates,
        )

    def __repr__(self) -> str:
        return f"TwoTowerScorer({self.name}, {json.dumps(self.manifest.get('counts', {}))})"


class CatalogScorer:
    """The two-tower as :class:`gamerec.runtime.recommender.Recommender` answers, as a scorer
    for the evaluation (P-COLD): the games the model was trained on are ranked by ``trained``
    (re-ranked when it re-ranks), the other games (``new``, a bool mask; embedded by the
    content mapping) among themselves, and the two lists are interleaved with
    :func:`gamerec.towers.cold.interleave` over the first ``length`` places.

    Scores are ranks made into numbers (``length`` for the first place, down to 1); every game
    past the answer scores ``-inf``.
    """

    def __init__(self, trained: TwoTowerScorer, new: np.ndarray, share: float, length: int):
        if new.shape != (trained.item_embeddings.shape[0],):
            raise ValueError("new must be a bool mask over the scorer's games")
        self.trained = trained
        self.new = np.asarray(new, dtype=bool)
        self.share = share
        self.length = length
        self.name = trained.name

    def score(self, histories: UserItems) -> np.ndarray:
        from gamerec.towers.cold import interleave, new_game_slots

        first_stage = self.trained.user_tower.embed(histories) @ self.trained.item_embeddings.T
        rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
        first_stage[rows, histories.indices] = -np.inf
        new_scores = np.where(self.new, first_stage, -np.inf)
        first_stage[:, self.new] = -np.inf
        trained_scores = self.trained.second_stage(first_stage, histories)
        n_new = len(new_game_slots(self.length, self.share))
        out = np.full(first_stage.shape, -np.inf, dtype=np.float32)
        for row in range(histories.n_rows):
            answer = interleave(
                _best(trained_scores[row], self.length),
                _best(new_scores[row], n_new),
                self.length,
                self.share,
            )
            out[row, answer] = np.arange(len(answer), 0, -1, dtype=np.float32)
        return out


def _best(scores: np.ndarray, n: int) -> list[int]:
    """The (at most ``n``) games of finite score, best first."""
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def manifest_playtime_weight(manifest: dict) -> float:
    return float(manifest.get("config", {}).get("playtime_weight", 0.0))
