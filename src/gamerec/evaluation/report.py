"""Every method on the same split, side by side: the body of ``gamerec eval``.

:func:`compare` fits the requested baselines on the training users, evaluates them and any
ready-made scorers (the trained two-tower model) on the test users, and returns a JSON-ready
report: per method, per metric and cut-off, the mean over users and its bootstrap 95% CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.errors import ConfigError, DataError
from gamerec.evaluation.baselines import (
    BASELINES,
    DEFAULT_EASE_LAMBDAS,
    ContentTfidf,
    ItemKNN,
    Popularity,
    tune_ease,
)
from gamerec.evaluation.metrics import check_ks, metric_key
from gamerec.evaluation.protocol import (
    Method,
    ProtocolData,
    UserMetrics,
    bootstrap_ci,
    evaluate_scorer,
    only_items,
    summarise,
)
from gamerec.ranking.scorer import Scorer
from gamerec.towers.ease import check_ease_size, gram_matrix

__all__ = ["CONFIDENCE", "TUNING_K", "EvalConfig", "compare"]

#: confidence level of the reported intervals
CONFIDENCE = 0.95
#: EASE's lambda is chosen by validation NDCG at this cut-off (capped at the catalog size)
TUNING_K = 20


def _quiet(message: str) -> None:
    return None


@dataclass(frozen=True)
class EvalConfig:
    """How :func:`compare` measures: the bootstrap, and how the baselines are fit."""

    bootstrap: int = 1000
    seed: int = 0
    ease_lambdas: tuple[float, ...] = DEFAULT_EASE_LAMBDAS
    ease_max_items: int = 20_000
    itemknn_neighbors: int | None = None
    batch_size: int = 1024
    playtime_weight: float = 0.0  # the content baseline weighs histories as the two-tower


def compare(
    data: ProtocolData,
    baselines: Sequence[str],
    ks: Sequence[int],
    *,
    scorers: Sequence[Method] = (),
    config: EvalConfig | None = None,
    progress: Callable[[str], None] = _quiet,
) -> dict[str, Any]:
    """Fit ``baselines`` on ``data.train``, evaluate them and ``scorers`` on ``data.test``.

    Every method ranks ``data.allowed`` (the games ``recommend`` may answer). The bootstrap
    resamples the same users for every method (``config.seed``), so the intervals of two
    methods describe the same resampled populations. Under P-COLD (``data.new_items``) each
    method also gets ``new_games``: the same metrics over the new-game targets alone (ranking
    still over the whole catalog), popularity ranks by SteamSpy owners, and the content
    baseline is compared with every other baseline.
    """
    comparison = _Comparison(data, ks, config or EvalConfig(), progress)
    return comparison.run(_checked_baselines(data, baselines, comparison.config), scorers)


def _checked_baselines(
    data: ProtocolData, baselines: Sequence[str], config: EvalConfig
) -> list[str]:
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise ConfigError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}; "
            f"eval.baselines takes {', '.join(BASELINES)}"
        )
    test = data.test
    if test.n_users == 0:
        skipped = f" ({test.skipped:,} skipped: {data.skip_reason})" if test.skipped else ""
        raise DataError(
            f"the split has no test users to evaluate{skipped}; run `gamerec preprocess` with "
            "more data or a larger preprocess.test_fraction"
        )
    if baselines and data.train.n_rows == 0:
        raise DataError(
            "the split has no training users to fit the baselines on; run `gamerec preprocess` "
            "with more data"
        )
    if "content" in baselines and data.metadata is None:
        raise DataError(
            "the content baseline needs the catalog's tags, genres, developer and publisher; "
            "load the protocol with load_protocol or pass metadata to build_protocol"
        )
    if "ease" in baselines:
        check_ease_size(data.n_items, config.ease_max_items)
        if not config.ease_lambdas or min(config.ease_lambdas) <= 0:
            raise ConfigError(
                f"eval.ease_lambdas must be positive numbers, got {list(config.ease_lambdas)}; "
                "e.g. [30, 100, 300]"
            )
    return list(dict.fromkeys(baselines))  # each once, in the given order


class _Comparison:
    """The state of one :func:`compare`: per-user metrics of every method so far."""

    def __init__(
        self,
        data: ProtocolData,
        ks: Sequence[int],
        config: EvalConfig,
        progress: Callable[[str], None],
    ):
        self.data, self.config, self.progress = data, config, progress
        self.ks = check_ks(ks, data.n_items)
        self.allowed = data.allowed
        self.popularity = data.popularity()
        self.tuning_k = min(TUNING_K, data.n_items)
        self.methods: dict[str, dict[str, Any]] = {}
        self.per_user: dict[str, Mapping[str, np.ndarray]] = {}
        self.per_user_new: dict[str, Mapping[str, np.ndarray]] = {}
        cold = data.protocol == "cold"
        self.new_targets = only_items(data.test.targets, data.new_items) if cold else None
        self._gram: np.ndarray | None = None
        self.gram_seconds = 0.0

    def run(self, baselines: list[str], scorers: Sequence[Method]) -> dict[str, Any]:
        data = self.data
        ease_lambda: float | None = None
        for position, name in enumerate(baselines):
            self.progress(f"{name}: fitting on {data.train.n_rows:,} training users")
            # X^T X is computed once for item-kNN and EASE; both fit times include it
            shared = self.gram_seconds if self._gram is not None and name != "popularity" else 0
            started = time.perf_counter()
            scorer, params = self._fit(name)
            self._record(scorer, "baseline", time.perf_counter() - started + shared, params)
            if name == "ease":
                ease_lambda = float(params["lambda"])
            del scorer
            if not {"itemknn", "ease"} & set(baselines[position + 1 :]):
                self._gram = None  # free the n x n matrix before the next method
        if self.new_targets is not None and "content" in baselines:
            self._compare_with("content", [name for name in baselines if name != "content"])
        for method in scorers:
            self.progress(
                f"{method.name}: ranking {int(self.allowed.sum()):,} games for "
                f"{data.test.n_users:,} test users"
            )
            self._record(method, "model", None, {})
            self._compare_with(method.name, baselines)
        return self._report(ease_lambda)

    def _report(self, ease_lambda: float | None) -> dict[str, Any]:
        data, test, config = self.data, self.data.test, self.config
        report: dict[str, Any] = {
            "protocol": data.protocol,
            "protocol_name": data.name,
            "ks": self.ks,
            "n_items": data.n_items,
            "ranked_games": int(self.allowed.sum()),
            "train_users": data.train.n_rows,
            "validation_users": data.valid.n_users,
            "users_evaluated": test.n_users,
            "users_skipped": test.skipped,
            "skip_reason": data.skip_reason,
            "targets_dropped": test.dropped_targets,
            "targets": test.targets.nnz,
            "bootstrap": {
                "resamples": config.bootstrap,
                "seed": config.seed,
                "confidence": CONFIDENCE,
            },
            "ease_lambda": ease_lambda,
            "methods": self.methods,
        }
        if self.new_targets is not None:
            report["new_games"] = {
                "games": len(data.new_items),
                "targets": self.new_targets.nnz,
                "users_with_new_targets": int((self.new_targets.row_lengths() > 0).sum()),
            }
        return report

    def _evaluate(self, scorer: Method, targets: UserItems) -> UserMetrics:
        return evaluate_scorer(
            scorer,
            self.data.test.histories,
            targets,
            self.ks,
            allowed=self.allowed,
            popularity=self.popularity,
            batch_size=self.config.batch_size,
        )

    def _record(self, scorer: Method, kind: str, fit_seconds: float | None, params: dict) -> None:
        config = self.config
        result = self._evaluate(scorer, self.data.test.targets)
        metrics = summarise(result, config.bootstrap, config.seed, CONFIDENCE)
        self.per_user[scorer.name] = result.per_user
        self.methods[scorer.name] = {
            "kind": kind,
            "params": params,
            "fit_seconds": None if fit_seconds is None else round(fit_seconds, 3),
            "eval_seconds": round(result.seconds, 3),
            "users": result.n_users,
            "metrics": metrics,
        }
        if self.new_targets is not None:
            new = self._evaluate(scorer, self.new_targets)
            self.per_user_new[scorer.name] = new.per_user
            self.methods[scorer.name]["new_games"] = {
                "users": new.n_users,
                "metrics": summarise(new, config.bootstrap, config.seed, CONFIDENCE),
            }
        headline = metric_key("recall", self.ks[0] if TUNING_K not in self.ks else TUNING_K)
        ndcg = headline.replace("recall", "ndcg")
        fitted = "" if fit_seconds is None else f"fit {fit_seconds:.1f} s, "
        self.progress(
            f"{scorer.name}: {headline} {metrics[headline]['mean']:.3f}, "
            f"{ndcg} {metrics[ndcg]['mean']:.3f} ({fitted}ranking {result.seconds:.1f} s)"
        )

    def _compare_with(self, method: str, others: Sequence[str]) -> None:
        config = self.config
        entry = self.methods[method]
        entry["versus"] = {
            name: paired_differences(
                self.per_user[method], self.per_user[name], config.bootstrap, config.seed
            )
            for name in others
        }
        if self.new_targets is not None:
            entry["new_games"]["versus"] = {
                name: paired_differences(
                    self.per_user_new[method],
                    self.per_user_new[name],
                    config.bootstrap,
                    config.seed,
                )
                for name in others
            }

    def _shared_gram(self) -> np.ndarray:
        if self._gram is None:
            started = time.perf_counter()
            self._gram = gram_matrix(self.data.train)
            self.gram_seconds = time.perf_counter() - started
        return self._gram

    def _fit(self, name: str) -> tuple[Scorer, dict[str, Any]]:
        data, config = self.data, self.config
        cold = data.protocol == "cold"
        if name == "popularity":
            owners = data.metadata.owners if cold and data.metadata is not None else None
            popular = Popularity(owners).fit(data.train)
            return popular, popular.params()
        if name == "content":
            assert data.metadata is not None
            meta = data.metadata
            content = ContentTfidf(meta.tokens(), config.playtime_weight).fit(data.train)
            return content, content.params()
        if name == "itemknn":
            knn = ItemKNN(config.itemknn_neighbors, config.batch_size).fit(
                data.train, self._shared_gram()
            )
            return knn, {**knn.params(), "cooccurrence_seconds": round(self.gram_seconds, 3)}
        return self._fit_ease()

    def _fit_ease(self) -> tuple[Scorer, dict[str, Any]]:
        data, config, tuning_k = self.data, self.config, self.tuning_k
        valid = data.valid
        grid = sorted({float(lam) for lam in config.ease_lambdas})
        self.progress(
            f"ease: choosing lambda in {grid[0]:g}..{grid[-1]:g} by NDCG@{tuning_k} of "
            f"{valid.n_users:,} validation users"
        )
        ease, tried = tune_ease(
            data.train,
            valid.histories,
            valid.targets,
            config.ease_lambdas,
            max_items=config.ease_max_items,
            k=tuning_k,
            gram=self._shared_gram(),
            batch_size=config.batch_size,
            allowed=self.allowed,
        )
        return ease, {
            **ease.params(),
            "lambda_search": [
                {"lambda": lam, f"valid_ndcg@{tuning_k}": round(value, 5)}
                for lam, value in tried.items()
            ],
            "selected_by": (
                f"validation ndcg@{tuning_k}, {valid.n_users} users"
                if tried
                else "middle of the grid (no validation users or a single lambda)"
            ),
            "cooccurrence_seconds": round(self.gram_seconds, 3),
        }


def paired_differences(
    method: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """``method - reference`` per metric over the same test users: mean and bootstrap CI.

    Both were measured on the same users, so the difference is judged user by user (a paired
    bootstrap): a CI above zero says the method is ahead even where the two methods' own
    intervals overlap, because most of their spread is the users, shared by both.
    """
    keys = [key for key in method if key in reference]
    differences = {
        key: np.asarray(method[key], np.float64) - np.asarray(reference[key], np.float64)
        for key in keys
    }
    intervals = bootstrap_ci(differences, resamples, seed, CONFIDENCE)
    return {
        key: {
            "mean": float(differences[key].mean()) if len(differences[key]) else 0.0,
            "ci": list(intervals[key]) if key in intervals else None,
        }
        for key in keys
    }
