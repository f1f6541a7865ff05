"""Fitting a whole model: the two towers, their co-play second stage and the content mapping.

One training path for ``gamerec train`` and for P-COLD's evaluation (which trains with the new
games hidden): :func:`fit_model` takes a :class:`FitConfig`, the games (``items``, one row per
column of the training matrix), the training users and a :class:`Validation` (the validation
users' NDCG@20, which the evaluation layer provides: fitting needs the metric, not the
protocol), and returns a :class:`FittedModel` with the arrays ``model/`` stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gamerec.artifacts.model import ModelArtifacts, NewGamePolicy, RerankPolicy
from gamerec.dataio.content import TokenRows, TokenTable
from gamerec.dataio.matrix import UserItems
from gamerec.index.reference import ExactIndex
from gamerec.ranking import CoPlay, Ranker, RankingEngine, RankingPolicy
from gamerec.ranking.scorer import Scorer
from gamerec.ranking.stages import ContentSimilarity
from gamerec.ranking.user_tower import NumpyUserTower
from gamerec.towers.checkpoint import export_item_embeddings, export_user_tower
from gamerec.towers.cold import (
    ContentMapper,
    HeldOutGames,
    catalog_release_years,
    catalog_tokens,
    fit_content_mapper,
    neighbour_history,
)
from gamerec.towers.ease import ease_weights, gram_matrix
from gamerec.towers.features import ItemFeatures, build_item_features
from gamerec.towers.model import TwoTowerConfig
from gamerec.towers.train import EpochReport, TrainConfig, TrainResult, TrainRun, train_two_tower

if TYPE_CHECKING:
    import pandas as pd

    from gamerec.towers.distributed import Workers

__all__ = [
    "RANDOM_TENTH",
    "ContentSearch",
    "FitConfig",
    "FitRun",
    "FittedModel",
    "ModelShape",
    "NewGameSearch",
    "RerankSearch",
    "Validation",
    "choose_new_game_policy",
    "fit_model",
    "fit_stages",
    "fit_towers",
]

#: a progress callback: (stage, message, fraction done or None)
Progress = Callable[[str, str, float | None], None]


#: the held-out set that stands in for new games as P-COLD hides them
RANDOM_TENTH = "a random tenth"


def _quiet(stage: str, message: str, fraction: float | None) -> None:
    return None


@dataclass(frozen=True)
class ModelShape:
    """The two towers' sizes and how they score (see :class:`TwoTowerConfig`)."""

    embedding_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.5
    temperature: float = 0.05
    playtime_weight: float = 0.0


@dataclass(frozen=True)
class RerankSearch:
    """The co-play second stage's choices, tried on the validation users."""

    enabled: bool = True
    lambdas: tuple[float, ...] = (20.0, 50.0, 100.0)
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    candidates: int = 200
    coplay_candidates: int = 100
    max_items: int = 20_000  # the co-play weights are dense games x games


@dataclass(frozen=True)
class ContentSearch:
    """The weights of genre/tag closeness in the final score, tried on the validation users."""

    weights: tuple[float, ...] = (0.0, 0.15, 0.3)


@dataclass(frozen=True)
class NewGameSearch:
    """How a new game's standardised first-stage score is put on the trained games' scale:
    the scales and offsets tried on the validation users, trained games held out of the content
    mapping standing in for new games."""

    scales: tuple[float, ...] = (1.0,)
    offsets: tuple[float, ...] = (-0.5, 0.0, 0.5, 1.0)
    contents: tuple[float, ...] = (1.0, 0.5, 2.0)  # the first is tried with every offset
    history_weights: tuple[float, ...] = (0.0, 2.0, 4.0)
    #: points a new game loses per year it was released before the history's games
    older_weights: tuple[float, ...] = (0.0, 0.05, 0.1)
    fraction: float = 0.1  # of the trained games, the newest, held out as new
    #: history weights this close to the best validation NDCG are taken as equal, and the
    #: largest of them wins: the validation users are the play data's players, whose
    #: histories are a tenth new at most, so validation barely sees what the weight does for a
    #: player whose games are mostly new, the player it is there for. The weight of how much
    #: older than a history a new game is is chosen the same way: the play data's players
    #: own older games too (ranked on held-out new games alone, they lose 5-11% at 0.1 a
    #: year), so they tell what the weight costs them, not what it gives a player of today's
    #: games, whose top 5 it frees of their series' earlier games
    history_tie: float = 0.002


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides the model a fit ends with."""

    shape: ModelShape = field(default_factory=ModelShape)
    train: TrainConfig = field(default_factory=TrainConfig)
    rerank: RerankSearch = field(default_factory=RerankSearch)
    content: ContentSearch = field(default_factory=ContentSearch)
    new_games: NewGameSearch = field(default_factory=NewGameSearch)


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
    new_games: NewGamePolicy | None = None
    content_weight: float = 0.0
    #: the content tokens of the trained games, and their table (vocabulary and idf)
    token_table: TokenTable | None = None
    content_rows: TokenRows | None = None
    #: XᵀX of the training matrix, when the towers' teacher needed it (the re-ranker reuses it)
    gram: np.ndarray | None = None
    #: (n,) the trained games' release years, estimated where unknown (NaN: no appid)
    release_years: np.ndarray | None = None

    def description(self) -> dict[str, Any]:
        """What ``model/manifest.json`` says of how this model ranks (see
        :class:`~gamerec.artifacts.model.ModelDescription`)."""
        return {
            "config": self.config.to_dict(),
            "tokens": self.features.tokens,
            "genres": self.features.genres,
            "numeric_names": self.features.numeric_names,
            "rerank": None if self.rerank is None else self.rerank.to_dict(),
            "new_games": None if self.new_games is None else self.new_games.to_dict(),
            "content_similarity": {
                "weight": self.content_weight,
                **({} if self.token_table is None else self.token_table.to_dict()),
            },
        }

    def engine(self, policy: RankingPolicy, **parts: Any) -> RankingEngine:
        """An engine over the trained games with ``policy``; ``parts`` replace the model's own
        (``item_vectors``, ``user_tower``, ``trained``, ``coplay``) to try variations."""
        tower = parts.get("user_tower") or NumpyUserTower(
            self.user_tower, self.config.playtime_weight
        )
        vectors = parts.get("item_vectors", self.item_embeddings)
        trained = parts.get("trained", np.ones(len(vectors), dtype=bool))
        return RankingEngine(
            tower,
            vectors,
            parts.get("index") or ExactIndex(vectors),
            trained,
            policy,
            parts.get("coplay"),
            content=self.content_similarity(),
            release_years=self.release_years,
        )

    def content_similarity(self) -> ContentSimilarity | None:
        """Closeness in genres, tags, studios and name over the trained games, when the fit
        has a token table."""
        if self.token_table is None or self.content_rows is None:
            return None
        return ContentSimilarity.of_table(self.content_rows, self.token_table)

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
    catalog: pd.DataFrame | None = None,
) -> FittedModel:
    """The towers (early-stopped on ``validation``), then the second stage and the mapping
    (``catalog``: as :func:`fit_stages` takes it)."""
    fitted = fit_towers(config, items, train_matrix, validation, run or FitRun(), progress)
    return fit_stages(config, items, train_matrix, validation, fitted, progress, catalog)


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
    gram, teacher, teacher_summary = _teacher(config, train_matrix, n_items)
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
        teacher=teacher,
    )
    del teacher
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
        "teacher": teacher_summary,
        "history": [vars(report) for report in result.history],
    }
    return FittedModel(result, features, model_config, summary, gram=gram)


def _teacher(
    config: FitConfig, train_matrix: UserItems, n_items: int
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """The co-play weights the towers learn from (see :mod:`gamerec.towers.train`), with the
    XᵀX they came from; none where the co-play stage is off or too large for this catalog."""
    train = config.train
    if train.distill_weight <= 0:
        return None, None, {"used": False, "why": "train.distill_weight is 0"}
    if not config.rerank.enabled:
        return None, None, {"used": False, "why": "train.rerank is off"}
    if n_items > config.rerank.max_items:
        why = f"{n_items:,} games with players, above train.rerank_max_items"
        return None, None, {"used": False, "why": why}
    gram = gram_matrix(train_matrix)
    used = {
        "used": True,
        "lambda": train.distill_lambda,
        "weight": train.distill_weight,
        "temperature": train.distill_temperature,
    }
    return gram, ease_weights(gram, train.distill_lambda), used


def fit_stages(
    config: FitConfig,
    items: pd.DataFrame,
    train_matrix: UserItems,
    validation: Validation,
    fitted: FittedModel,
    progress: Progress = _quiet,
    catalog: pd.DataFrame | None = None,
) -> FittedModel:
    """Export the towers of ``fitted``, then fit its co-play re-ranker and content mapping.

    The content token table is built over ``catalog`` (default: ``items``): the whole catalog
    knows the studios and series of the games nobody in the play data owns, and how common
    each token is among the games a player may be recommended."""
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
    tokens = catalog_tokens(items)
    fitted.token_table = TokenTable.build(tokens if catalog is None else catalog_tokens(catalog))
    fitted.content_rows = fitted.token_table.rows(tokens)
    fitted.release_years = catalog_release_years(items)
    progress("train", "weighing genre/tag closeness on the validation users", None)
    fitted.content_weight, summary["content_similarity"] = _fit_content_weight(
        config.content, validation, fitted
    )
    progress("train", "fitting the content mapping for games without players", None)
    fitted.mapper, summary["content_mapping"], random_tenth = fit_content_mapper(
        items, fitted.item_embeddings, fitted.user_tower["history"], seed=config.train.seed
    )
    newest = newest_games_as_new(items, fitted, config.new_games.fraction, config.train.seed)
    held_out = [
        (label, _with_neighbours(fitted, games))
        for label, games in ((RANDOM_TENTH, random_tenth), ("the newest tenth", newest))
        if len(games.rows)
    ]
    if held_out:
        progress("train", "tuning how new games compete, on games held out as new", None)
        fitted.new_games, summary["new_games"] = _fit_new_games(
            config.new_games, validation, fitted, held_out
        )
    return fitted


def _as_new(fitted: FittedModel, games: HeldOutGames) -> dict[str, Any]:
    """The parts of an engine in which ``games`` are new: their mapped vectors in the item
    space and in the user tower's history, unknown to the co-play model."""
    rows = games.rows
    embeddings = fitted.item_embeddings.copy()
    embeddings[rows] = games.embeddings
    history = fitted.user_tower["history"].copy()
    history[rows] = games.history
    trained = np.ones(len(embeddings), dtype=bool)
    trained[rows] = False
    parts: dict[str, Any] = {
        "item_vectors": embeddings,
        "user_tower": NumpyUserTower(
            {**fitted.user_tower, "history": history}, fitted.config.playtime_weight
        ),
        "trained": trained,
        "index": ExactIndex(embeddings),
    }
    if fitted.coplay is not None and fitted.rerank is not None:
        coplay_rows = np.arange(len(embeddings), dtype=np.int64)
        coplay_rows[rows] = -1
        parts["coplay"] = CoPlay(fitted.coplay, coplay_rows)
    return parts


def _with_neighbours(fitted: FittedModel, games: HeldOutGames) -> HeldOutGames:
    """``games`` with the history rows ``gamerec index`` would give them as new games: half
    their nearest trained games' rows (:func:`~gamerec.towers.cold.neighbour_history`), those
    games being the trained ones not held out."""
    content = fitted.content_similarity()
    if content is None:
        return games
    history = fitted.user_tower["history"]
    rest = np.setdiff1d(np.arange(len(history)), games.rows)
    rows = neighbour_history(content, games.rows, rest, history[rest], games.history)
    return replace(games, history=rows)


def newest_games_as_new(
    items: pd.DataFrame, fitted: FittedModel, fraction: float, seed: int
) -> HeldOutGames:
    """The newest ``fraction`` of the trained games (by release year, ties drawn at random),
    embedded by a content mapping fit without them: the games nobody in the play data owns are
    the newest ones, so the newest trained games stand in for them best."""
    import pandas as pd

    years = pd.to_numeric(items["release_year"], errors="coerce").to_numpy(dtype=np.float64)
    dated = np.flatnonzero(np.isfinite(years))
    n_held = round(fraction * len(items))
    if n_held < 1 or len(dated) < 2 * n_held:
        return HeldOutGames(np.zeros(0, np.int64), np.zeros((0, 0)), np.zeros((0, 0)))
    tie_break = np.random.default_rng(seed).random(len(dated))
    held = np.sort(dated[np.lexsort((tie_break, -years[dated]))[:n_held]])
    rest = np.setdiff1d(np.arange(len(items)), held)
    mapper, _, _ = fit_content_mapper(
        items.iloc[rest],
        fitted.item_embeddings[rest],
        fitted.user_tower["history"][rest],
        seed=seed,
    )
    embeddings, history = mapper.map_items(items.iloc[held])
    return HeldOutGames(held, embeddings, history)


def _fit_reranker(
    search: RerankSearch,
    train_matrix: UserItems,
    validation: Validation,
    fitted: FittedModel,
) -> tuple[np.ndarray, RerankPolicy, dict[str, Any]]:
    """The co-play weights and blend that rank the validation users best, through the one
    ranking engine (so the choice is made on what ``recommend`` will answer)."""
    gram = fitted.gram if fitted.gram is not None else gram_matrix(train_matrix)
    fitted.gram = None  # 8 bytes per pair of games: not kept past the choice
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
                tower, embeddings, index, trained, RankingPolicy(policy, None, 0.0), coplay
            )
            ndcg = validation.ndcg(engine)
            tried.append({**policy.to_dict(), "valid_ndcg_at_20": ndcg})
            if best is None or ndcg > best[0]:
                best = (ndcg, weights, policy)
    assert best is not None
    ndcg, weights, policy = best
    return weights, policy, {**policy.to_dict(), "valid_ndcg_at_20": ndcg, "tried": tried}


def _fit_content_weight(
    search: ContentSearch, validation: Validation, fitted: FittedModel
) -> tuple[float, dict[str, Any]]:
    """The weight of genre/tag closeness that ranks the validation users best, with the second
    stage chosen before it."""
    coplay = CoPlay(fitted.coplay) if fitted.coplay is not None and fitted.rerank else None
    tried = {}
    for weight in search.weights:
        policy = RankingPolicy(
            fitted.rerank if coplay is not None else None, None, 0.0, content_weight=weight
        )
        tried[weight] = validation.ndcg(fitted.engine(policy, coplay=coplay))
    best = max(tried, key=lambda weight: (tried[weight], -weight))
    return best, {
        "weight": best,
        "valid_ndcg_at_20": tried[best],
        "tried": [{"weight": w, "valid_ndcg_at_20": v} for w, v in tried.items()],
    }


def _fit_new_games(
    search: NewGameSearch,
    validation: Validation,
    fitted: FittedModel,
    held_out: list[tuple[str, HeldOutGames]],
) -> tuple[NewGamePolicy, dict[str, Any]]:
    """The policy that ranks the validation users best when held-out games are new: embedded
    by a mapping fit without them (in the item space and in the user tower's history), unknown
    to the co-play model, ranked through the one engine with the model's own second stage.
    Each held-out set is a different kind of new game (a random tenth, as P-COLD hides them;
    the newest tenth, as time brings them): see :func:`choose_new_game_policy` for how they
    judge. The fixed places the engine gives new games without a policy are measured too."""
    rerank = fitted.rerank if fitted.coplay is not None else None
    labels = [label for label, _ in held_out]
    # the trained games rank the same under every new-game policy: each held-out set's engine
    # ranks them once (with_policy shares that stage) and each policy places the new games
    engines = [
        fitted.engine(
            RankingPolicy(
                rerank,
                NewGamePolicy(1.0, 0.0, 0.0, 1.0),
                0.0,
                content_weight=fitted.content_weight,
            ),
            **_as_new(fitted, games),
        )
        for _, games in held_out
    ]

    def ndcg_by_set(policy: NewGamePolicy | None, share: float) -> list[float]:
        return [
            validation.ndcg(
                engine.with_policy(
                    RankingPolicy(rerank, policy, share, content_weight=fitted.content_weight)
                )
            )
            for engine in engines
        ]

    choice, measured = choose_new_game_policy(
        search, labels, lambda policy: ndcg_by_set(policy, 0.0), fitted.token_table is not None
    )
    tried = [
        {
            **policy.to_dict(),
            "valid_ndcg_at_20": float(np.mean(values)),
            "by_held_out_set": dict(zip(labels, values, strict=True)),
        }
        for policy, values in measured.items()
    ]
    return choice, {
        **choice.to_dict(),
        "valid_ndcg_at_20": float(np.mean(measured[choice])),
        "held_out": {label: len(games.rows) for label, games in held_out},
        "fixed_places_valid_ndcg_at_20": float(np.mean(ndcg_by_set(None, 0.2))),
        "tried": tried,
    }


def choose_new_game_policy(
    search: NewGameSearch,
    labels: list[str],
    measure: Callable[[NewGamePolicy], list[float]],
    with_content: bool = True,
) -> tuple[NewGamePolicy, dict[NewGamePolicy, list[float]]]:
    """The new-game policy ``search`` finds, one coordinate at a time (each try ranks every
    validation user once per held-out set): the scale and offset first, then the weight of
    genre/tag closeness (``with_content``), then how much a history of new games tips the
    balance, then how much a game older than the history's games loses. ``measure`` gives a
    policy's validation NDCG on each held-out set (``labels``);
    returns the choice and every policy measured.

    A policy is judged by its mean over the sets, except the closeness weight, judged on the
    random tenth alone when there is one. The newest tenth's games were new when the play data
    was recorded, and its players bought them in their first months (about 10 players per
    million 2025 owners against about 18 for the other games with players, bundled data):
    early buyers of the newest games, not the player who picks among years of games by taste:
    judged on both sets, the weight was 0 for one training of the bundled data, and every list's
    new games were then the most owned ones."""
    measured: dict[NewGamePolicy, list[float]] = {}

    def best_of(policies: list[NewGamePolicy], sets: list[int]) -> NewGamePolicy:
        for policy in policies:
            if policy not in measured:
                measured[policy] = list(measure(policy))
        return max(policies, key=lambda policy: float(np.mean(np.take(measured[policy], sets))))

    every_set = list(range(len(labels)))
    content = search.contents[0] if with_content else 0.0
    chosen = best_of(
        [
            NewGamePolicy(scale, offset, search.history_weights[0], content)
            for scale in search.scales
            for offset in search.offsets
        ],
        every_set,
    )
    if with_content:
        random_tenth = [n for n, label in enumerate(labels) if label == RANDOM_TENTH]
        chosen = best_of(
            [chosen, *(replace(chosen, content=v) for v in search.contents if v != content)],
            random_tenth or every_set,
        )
    weights = [replace(chosen, history_weight=weight) for weight in search.history_weights]
    top = float(np.mean(measured[best_of(weights, every_set)]))
    near = [p for p in weights if float(np.mean(measured[p])) >= top - search.history_tie]
    chosen = max(near, key=lambda policy: policy.history_weight)
    olders = [replace(chosen, older=weight) for weight in search.older_weights]
    top = float(np.mean(measured[best_of(olders, every_set)]))
    near = [p for p in olders if float(np.mean(measured[p])) >= top - search.history_tie]
    return max(near, key=lambda policy: policy.older), measured
