"""Fitting a whole model: the two towers, their co-play second stage and the content mapping.

One training path for ``gamerec train`` and for P-COLD's evaluation (which trains with the new
games hidden): :func:`fit_model` takes a :class:`FitConfig`, the games (``items``, one row per
column of the training matrix), the training users and a :class:`Validation` (the validation
users' NDCG@20, which the evaluation layer provides: fitting needs the metric, not the
protocol), and returns a :class:`FittedModel` with the arrays ``model/`` stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gamerec.artifacts.model import ModelArtifacts, RerankPolicy
from gamerec.dataio.matrix import UserItems
from gamerec.index.reference import ExactIndex
from gamerec.ranking import CoPlay, Ranker, RankingEngine, RankingPolicy
from gamerec.ranking.scorer import Scorer
from gamerec.ranking.user_tower import NumpyUserTower
from gamerec.towers.checkpoint import export_item_embeddings, export_user_tower
from gamerec.towers.cold import ContentMapper, fit_content_mapper
from gamerec.towers.ease import ease_weights, gram_matrix
from gamerec.towers.features import ItemFeatures, build_item_features
from gamerec.towers.model import TwoTowerConfig
from gamerec.towers.train import EpochReport, TrainConfig, TrainResult, TrainRun, train_two_tower

if TYPE_CHECKING:
    import pandas as pd

    from gamerec.towers.distributed import Workers

__all__ = [
    "FitConfig",
    "FitRun",
    "FittedModel",
    "ModelShape",
    "RerankSearch",
    "Validation",
    "fit_model",
    "fit_stages",
    "fit_towers",
]

#: a progress callback: (stage, message, fraction done or None)
Progress = Callable[[str, str, float | None], None]


def _quiet(stage: str, message: str, fraction: float | None) -> None:
    return None


@dataclass(frozen=True)
class ModelShape:
    """The two towers' sizes and how they score (see :class:`TwoTowerConfig`)."""

    embedding_dim: int = 128
    hidden_dim: int = 512
    dropout: float = 0.5
    temperature: float = 0.05
    playtime_weight: float = 0.0


@dataclass(frozen=True)
class RerankSearch:
    """The co-play second stage's choices, tried on the validation users."""

    enabled: bool = True
    lambdas: tuple[float, ...] = (20.0, 50.0, 100.0)
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5)
    candidates: int = 200
    coplay_candidates: int = 100
    max_items: int = 20_000  # the co-play weights are dense games x games


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides the model a fit ends with."""

    shape: ModelShape = field(default_factory=ModelShape)
    train: TrainConfig = field(default_factory=TrainConfig)
    rerank: RerankSearch = field(default_factory=RerankSearch)


@dataclass
class FitRun:
    """How a fit runs (none of it changes the model): see :class:`TrainRun`."""

    device: str = "cpu"
    threads: int | None = None
    resume_key: str = ""
    resume_path: Any = None  # Path | None
    on_epoch: Callable[[EpochReport], None] | None = None
    workers: Workers | None = None


class Validation(Protocol):
    """The validation users' NDCG@20 of a ranking method: what early stopping and the
    re-ranker's choice go by."""

    def ndcg(self, method: Scorer | Ranker) -> float: ...

    def ndcg_part(self, method: Scorer | Ranker, part: int, parts: int) -> tuple[float, int]:
        """NDCG@20 summed over every ``parts``-th user from ``part``, and their number."""
        ...


@dataclass
class FittedModel:
    """A two-tower fit on one training matrix, its second stage and its content mapping."""

    result: TrainResult
    features: ItemFeatures
    config: TwoTowerConfig
    summary: dict[str, Any]
    user_tower: dict[str, np.ndarray] = field(default_factory=dict)
    item_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    coplay: np.ndarray | None = None
    rerank: RerankPolicy | None = None
    mapper: ContentMapper | None = None

    def description(self) -> dict[str, Any]:
        """What ``model/manifest.json`` says of how this model ranks (see
        :class:`~gamerec.artifacts.model.ModelDescription`)."""
        return {
            "config": self.config.to_dict(),
            "tokens": self.features.tokens,
            "genres": self.features.genres,
            "numeric_names": self.features.numeric_names,
            "rerank": None if self.rerank is None else self.rerank.to_dict(),
        }

    def as_artifacts(self, item_keys: list[str]) -> ModelArtifacts:
        """This model as ``model/`` would hold it once written, without writing it (P-COLD's
        evaluation ranks with a model it trains itself). ``item_keys``: the trained games."""
        assert self.mapper is not None, "fit_stages fits the content mapping"
        manifest = {
            **self.description(),
            "content": self.mapper.vocabulary.to_dict(),
            "item_keys": list(item_keys),
        }
        return ModelArtifacts(
            Path("(in memory)"),
            manifest,
            self.user_tower,
            self.item_embeddings,
            self.coplay,
            self.mapper.arrays(),
        )


def fit_model(
    config: FitConfig,
    items: pd.DataFrame,
    train_matrix: UserItems,
    validation: Validation,
    run: FitRun | None = None,
    progress: Progress = _quiet,
) -> FittedModel:
    """The towers (early-stopped on ``validation``), then the second stage and the mapping."""
    fitted = fit_towers(config, items, train_matrix, validation, run or FitRun(), progress)
    return fit_stages(config, items, train_matrix, validation, fitted, progress)


def fit_towers(
    config: FitConfig,
    items: pd.DataFrame,
    train_matrix: UserItems,
    validation: Validation,
    run: FitRun,
    progress: Progress = _quiet,
) -> FittedModel:
    """Train the two towers on ``train_matrix`` (its columns are ``items``' rows)."""
    n_items = len(items)
    features = build_item_features(items)
    shape = config.shape
    model_config = TwoTowerConfig(
        n_items=n_items,
        n_tokens=features.n_tokens,
        n_numeric=features.numeric.shape[1],
        embedding_dim=shape.embedding_dim,
        hidden_dim=shape.hidden_dim,
        dropout=shape.dropout,
        temperature=shape.temperature,
        playtime_weight=shape.playtime_weight,
    )
    progress("train", f"training on {train_matrix.n_rows:,} users x {n_items:,} games", None)
    result = train_two_tower(
        train_matrix,
        features,
        model_config,
        config.train,
        TrainRun(
            validate=validation.ndcg,
            device=run.device,
            threads=run.threads,
            resume_path=run.resume_path,
            resume_key=run.resume_key,
            on_epoch=run.on_epoch,
            workers=run.workers,
            validate_part=validation.ndcg_part if run.workers is not None else None,
        ),
    )
    summary = {
        "best_epoch": result.best_epoch,
        "valid_ndcg_at_20": result.best_metric,
        "epochs_run": len(result.history),
        "seconds": result.seconds,
        "resumed_from_epoch": result.resumed_from_epoch,
        "sampled_softmax": result.sampled_softmax,
        "users": train_matrix.n_rows,
        "items": n_items,
        "workers": 1 if run.workers is None else run.workers.world_size,
        "history": [vars(report) for report in result.history],
    }
    return FittedModel(result, features, model_config, summary)


def fit_stages(
    config: FitConfig,
    items: pd.DataFrame,
    train_matrix: UserItems,
    validation: Validation,
    fitted: FittedModel,
    progress: Progress = _quiet,
) -> FittedModel:
    """Export the towers of ``fitted``, then fit its co-play re-ranker and content mapping."""
    n_items = len(items)
    summary = fitted.summary
    fitted.user_tower = export_user_tower(fitted.result.model, fitted.features)
    fitted.item_embeddings = export_item_embeddings(fitted.result.model, fitted.features)
    search = config.rerank
    if search.enabled and n_items > search.max_items:
        # dense games x games weights: bounded by the games with players, never the catalog
        skipped = (
            f"{n_items:,} games with players, above train.rerank_max_items = {search.max_items:,}"
        )
        summary["rerank"] = {"skipped": skipped}
        progress("train", f"co-play re-ranker skipped: {skipped}", None)
    elif search.enabled:
        progress("train", "fitting the co-play re-ranker on the training users", None)
        fitted.coplay, fitted.rerank, summary["rerank"] = _fit_reranker(
            search, train_matrix, validation, fitted
        )
    progress("train", "fitting the content mapping for games without players", None)
    fitted.mapper, summary["content_mapping"] = fit_content_mapper(
        items, fitted.item_embeddings, fitted.user_tower["history"], seed=config.train.seed
    )
    return fitted


def _fit_reranker(
    search: RerankSearch,
    train_matrix: UserItems,
    validation: Validation,
    fitted: FittedModel,
) -> tuple[np.ndarray, RerankPolicy, dict[str, Any]]:
    """The co-play weights and blend that rank the validation users best, through the one
    ranking engine (so the choice is made on what ``recommend`` will answer)."""
    gram = gram_matrix(train_matrix)
    tower = NumpyUserTower(fitted.user_tower, fitted.config.playtime_weight)
    embeddings = fitted.item_embeddings
    index = ExactIndex(embeddings)
    trained = np.ones(len(embeddings), dtype=bool)
    best: tuple[float, np.ndarray, RerankPolicy] | None = None
    tried = []
    for regularisation in search.lambdas:
        weights = ease_weights(gram, regularisation)
        coplay = CoPlay(weights)
        for alpha in search.alphas:
            policy = RerankPolicy(
                alpha=alpha,
                regularisation=regularisation,
                candidates=search.candidates,
                coplay_candidates=search.coplay_candidates,
            )
            engine = RankingEngine(
                tower, embeddings, index, trained, RankingPolicy(policy, 0.0), coplay
            )
            ndcg = validation.ndcg(engine)
            tried.append({**policy.to_dict(), "valid_ndcg_at_20": ndcg})
            if best is None or ndcg > best[0]:
                best = (ndcg, weights, policy)
    assert best is not None
    ndcg, weights, policy = best
    return weights, policy, {**policy.to_dict(), "valid_ndcg_at_20": ndcg, "tried": tried}
