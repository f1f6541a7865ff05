"""Every method on the same split, side by side: the body of ``gamerec eval``.

:func:`compare` fits the requested baselines on the training users, evaluates them and any
ready-made scorers (the trained two-tower model) on the test users, and returns a JSON-ready
report: per method, per metric and cut-off, the mean over users and its bootstrap 95% CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gamerec.errors import ConfigError, DataError
from gamerec.evaluation.baselines import (
    BASELINES,
    DEFAULT_EASE_LAMBDAS,
    ContentTfidf,
    ItemKNN,
    Popularity,
    content_tokens,
    tune_ease,
)
from gamerec.evaluation.metrics import check_ks, metric_key
from gamerec.evaluation.protocol import (
    ProtocolData,
    bootstrap_ci,
    evaluate_scorer,
    only_items,
    summarise,
)
from gamerec.towers.ease import check_ease_size, gram_matrix
from gamerec.towers.scorer import Scorer

__all__ = ["CONFIDENCE", "TUNING_K", "compare"]

#: confidence level of the reported intervals
CONFIDENCE = 0.95
#: EASE's lambda is chosen by validation NDCG at this cut-off (capped at the catalog size)
TUNING_K = 20


def _quiet(message: str) -> None:
    return None


def compare(
    data: ProtocolData,
    baselines: Sequence[str],
    ks: Sequence[int],
    *,
    scorers: Sequence[Scorer] = (),
    bootstrap: int = 1000,
    seed: int = 0,
    ease_lambdas: Sequence[float] = DEFAULT_EASE_LAMBDAS,
    ease_max_items: int = 20_000,
    itemknn_neighbors: int | None = None,
    batch_size: int = 1024,
    playtime_weight: float = 0.0,
    progress: Callable[[str], None] = _quiet,
) -> dict[str, Any]:
    """Fit ``baselines`` on ``data.train``, evaluate them and ``scorers`` on ``data.test``.

    The bootstrap resamples the same users for every method (``seed``), so the intervals of two
    methods describe the same resampled populations. Under P-COLD (``data.new_items``) each
    method also gets ``new_games``: the same metrics over the new-game targets alone (ranking
    still over the whole catalog), popularity ranks by SteamSpy owners, and the content
    baseline is compared with every other baseline. ``playtime_weight`` weighs the content
    baseline's history as the two-tower's.
    """
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise ConfigError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}; "
            f"eval.baselines takes {', '.join(BASELINES)}"
        )
    baselines = list(dict.fromkeys(baselines))  # each once, in the given order
    ks = check_ks(ks, data.n_items)
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
    cold = data.protocol == "cold"
    if "content" in baselines and data.metadata is None:
        raise DataError(
            "the content baseline needs the catalog's tags, genres, developer and publisher; "
            "load the protocol with load_protocol or pass metadata to build_protocol"
        )
    if "ease" in baselines:
        check_ease_size(data.n_items, ease_max_items)
        if not ease_lambdas or min(ease_lambdas) <= 0:
            raise ConfigError(
                f"eval.ease_lambdas must be positive numbers, got {list(ease_lambdas)}; "
                "e.g. [30, 100, 300]"
            )

    popularity = data.popularity()
    tuning_k = min(TUNING_K, data.n_items)
    methods: dict[str, dict[str, Any]] = {}
    gram: np.ndarray | None = None
    gram_seconds = 0.0

    def shared_gram() -> np.ndarray:
        nonlocal gram, gram_seconds
        if gram is None:
            started = time.perf_counter()
            gram = gram_matrix(data.train)
            gram_seconds = time.perf_counter() - started
        return gram

    per_user: dict[str, Mapping[str, np.ndarray]] = {}
    per_user_new: dict[str, Mapping[str, np.ndarray]] = {}
    new_targets = only_items(test.targets, data.new_items) if cold else None

    def record(scorer: Scorer, kind: str, fit_seconds: float | None, params: dict) -> None:
        result = evaluate_scorer(
            scorer, test.histories, test.targets, ks, popularity=popularity, batch_size=batch_size
        )
        metrics = summarise(result, bootstrap, seed, CONFIDENCE)
        per_user[scorer.name] = result.per_user
        methods[scorer.name] = {
            "kind": kind,
            "params": params,
            "fit_seconds": None if fit_seconds is None else round(fit_seconds, 3),
            "eval_seconds": round(result.seconds, 3),
            "users": result.n_users,
            "metrics": metrics,
        }
        if new_targets is not None:
            new = evaluate_scorer(
                scorer,
                test.histories,
                new_targets,
                ks,
                popularity=popularity,
                batch_size=batch_size,
            )
            per_user_new[scorer.name] = new.per_user
            methods[scorer.name]["new_games"] = {
                "users": new.n_users,
                "metrics": summarise(new, bootstrap, seed, CONFIDENCE),
            }
        headline = metric_key("recall", ks[0] if TUNING_K not in ks else TUNING_K)
        ndcg = headline.replace("recall", "ndcg")
        fitted = "" if fit_seconds is None else f"fit {fit_seconds:.1f} s, "
        progress(
            f"{scorer.name}: {headline} {metrics[headline]['mean']:.3f}, "
            f"{ndcg} {metrics[ndcg]['mean']:.3f} ({fitted}ranking {result.seconds:.1f} s)"
        )

    def fit(name: str) -> tuple[Scorer, dict[str, Any]]:
        if name == "popularity":
            owners = data.metadata.owners if cold and data.metadata is not None else None
            popular = Popularity(owners).fit(data.train)
            return popular, popular.params()
        if name == "content":
            assert data.metadata is not None
            meta = data.metadata
            tokens = content_tokens(meta.genres, meta.tags, meta.developer, meta.publisher)
            content = ContentTfidf(tokens, playtime_weight).fit(data.train)
            return content, content.params()
        if name == "itemknn":
            knn = ItemKNN(itemknn_neighbors, batch_size).fit(data.train, shared_gram())
            return knn, {**knn.params(), "cooccurrence_seconds": round(gram_seconds, 3)}
        valid = data.valid
        cooc = shared_gram()
        grid = sorted({float(lam) for lam in ease_lambdas})
        progress(
            f"ease: choosing lambda in {grid[0]:g}..{grid[-1]:g} by NDCG@{tuning_k} of "
            f"{valid.n_users:,} validation users"
        )
        ease, tried = tune_ease(
            data.train,
            valid.histories,
            valid.targets,
            ease_lambdas,
            max_items=ease_max_items,
            k=tuning_k,
            gram=cooc,
            batch_size=batch_size,
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
            "cooccurrence_seconds": round(gram_seconds, 3),
        }

    ease_lambda: float | None = None
    for position, name in enumerate(baselines):
        progress(f"{name}: fitting on {data.train.n_rows:,} training users")
        # X^T X is computed once for item-kNN and EASE; both fit times include it
        shared = gram_seconds if gram is not None and name != "popularity" else 0.0
        started = time.perf_counter()
        scorer, params = fit(name)
        record(scorer, "baseline", time.perf_counter() - started + shared, params)
        if name == "ease":
            ease_lambda = float(params["lambda"])
        del scorer
        if not {"itemknn", "ease"} & set(baselines[position + 1 :]):
            gram = None  # free the n x n matrix before the next method

    def compare_with(method: str, others: Sequence[str]) -> None:
        entry = methods[method]
        entry["versus"] = {
            name: paired_differences(per_user[method], per_user[name], bootstrap, seed)
            for name in others
        }
        if new_targets is not None:
            entry["new_games"]["versus"] = {
                name: paired_differences(per_user_new[method], per_user_new[name], bootstrap, seed)
                for name in others
            }

    if cold and "content" in baselines:
        compare_with("content", [name for name in baselines if name != "content"])
    for scorer in scorers:
        progress(f"{scorer.name}: ranking {data.n_items:,} games for {test.n_users:,} test users")
        record(scorer, "model", None, {})
        compare_with(scorer.name, baselines)

    report = {
        "protocol": data.protocol,
        "protocol_name": data.name,
        "ks": ks,
        "n_items": data.n_items,
        "train_users": data.train.n_rows,
        "validation_users": data.valid.n_users,
        "users_evaluated": test.n_users,
        "users_skipped": test.skipped,
        "skip_reason": data.skip_reason,
        "bootstrap": {"resamples": bootstrap, "seed": seed, "confidence": CONFIDENCE},
        "ease_lambda": ease_lambda,
        "methods": methods,
    }
    if new_targets is not None:
        report["new_games"] = {
            "games": len(data.new_items),
            "targets": new_targets.nnz,
            "users_with_new_targets": int((new_targets.row_lengths() > 0).sum()),
        }
    return report


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
