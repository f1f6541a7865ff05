"""One function per stage; the only module that unpacks :class:`Settings` into plain arguments.

Every CLI subcommand is one call here: ``gamerec preprocess`` is ``pipeline.preprocess(settings)``.
Each stage reads the previous stage's output from ``settings.data_dir``, checks its manifest, and
writes its own output directory atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.artifacts import (
    Workspace,
    atomic_path,
    atomic_write_json,
    fingerprint,
    has_manifest,
    stage_lock,
    staged_dir,
    write_manifest,
)
from gamerec.artifacts.index import write_index
from gamerec.artifacts.model import (
    check_model_matches_processed,
    read_item_embeddings,
    read_model,
    read_model_manifest,
    write_model,
)
from gamerec.artifacts.processed import (
    ITEMS_FILE,
    games_with_players,
    read_processed,
    read_processed_manifest,
    write_processed,
)
from gamerec.dataio.files import read_text
from gamerec.dataio.owned import parse_owned_games
from gamerec.errors import (
    ConfigError,
    DataError,
    InvalidRequestError,
    TrainingError,
)
from gamerec.settings import Settings

if TYPE_CHECKING:
    from gamerec.dataio.preprocess import Source
    from gamerec.runtime.recommender import Recommender

__all__ = [
    "Progress",
    "build_index",
    "demo",
    "evaluate",
    "fetch_owned",
    "fetch_steamspy",
    "load_recommender",
    "preprocess",
    "read_library",
    "recommend",
    "recommend_all",
    "serve",
    "similar",
    "train",
    "workspace",
]

#: a progress callback: (stage, message, fraction done or None). A stage is one phase with its
#: own progress bar (e.g. "steamspy pages"); fraction is the share of that stage done, None when
#: the total is unknown or the event (a retry notice) does not move the bar.
Progress = Callable[[str, str, float | None], None]


def _quiet(stage: str, message: str, fraction: float | None) -> None:
    return None


def workspace(settings: Settings) -> Workspace:
    """The folders of the workspace under ``settings.data_dir``."""
    return Workspace.at(settings.data_dir)


def _sources(settings: Settings) -> list[Source]:
    from gamerec.dataio.datasets import bundled_sources
    from gamerec.dataio.preprocess import Source

    if not settings.preprocess.inputs:
        return bundled_sources()
    sources = []
    for spec in settings.preprocess.inputs:
        options: dict[str, Any] = {}
        if spec.kind == "csv":
            options = {
                "user_column": spec.user_column,
                "item_column": spec.item_column,
                "value_column": spec.value_column,
                "value_kind": spec.value_kind,
                "item_key": spec.item_key,
            }
        sources.append(Source(spec.kind, Path(spec.path), options))
    return sources


def _input_fingerprint(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        return f"{len(files)} files, {total} bytes"
    return fingerprint(path)


def preprocess(settings: Settings, progress: Progress = _quiet) -> dict[str, Any]:
    """Read the configured inputs (default: the bundled demo data) and write ``processed/``.

    Returns the summary (counts, density, title match rate, histograms). On any error the
    previous ``processed/`` is left untouched.
    """
    from gamerec.dataio.preprocess import build_processed, load_sources

    sources = _sources(settings)
    progress("preprocess", f"reading {len(sources)} input(s)", None)
    interactions, metadata = load_sources(sources)
    progress("preprocess", "joining, filtering and splitting", None)
    options = settings.preprocess
    processed = build_processed(
        interactions,
        metadata,
        min_user_items=options.min_user_items,
        min_item_users=options.min_item_users,
        min_owners=options.min_owners,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
        target_fraction=options.target_fraction,
        seed=options.seed,
    )
    target = workspace(settings).processed
    progress("preprocess", f"writing {target}", None)
    with staged_dir(target) as staging:
        write_processed(
            staging,
            processed,
            settings=options.model_dump(mode="json"),
            inputs={f"{s.kind}:{s.path}": _input_fingerprint(s.path) for s in sources},
        )
    return {**processed.summary, "output": str(target)}


def build_index(settings: Settings, progress: Progress = _quiet) -> dict[str, Any]:
    """Embed every game of ``processed/items.parquet`` and index them into ``index/``.

    A game the model was trained on (found by ``item_key``, so a catalog re-preprocessed,
    reordered or grown since training needs no retraining) keeps its trained vectors; any
    other is embedded by the model's content mapping (:mod:`gamerec.towers.cold`). The kind
    follows ``settings.index.kind`` (``auto``: exact up to ``exact_max_items``, HNSW above).
    Trained and mapped games get an index each (recommending ranks them apart). Returns the
    summary: kind, parameters, items (trained and mapped), dimension, build seconds and the
    recall@20 of the indexes against exact search on up to 1,000 items used as queries, each
    among its own kind. On any error the previous ``index/`` is left untouched.
    """
    from gamerec.index import (
        FaissIndex,
        PartitionedIndex,
        VectorIndex,
        measure_recall,
        resolve_kind,
        set_threads,
    )
    from gamerec.index import build_index as build
    from gamerec.towers.cold import embed_catalog

    paths = workspace(settings)
    options = settings.index
    threads = set_threads(options.threads)
    progress("index", f"reading {paths.model} and {paths.processed}", None)
    _, embeddings_fingerprint = read_item_embeddings(paths.model)
    model = read_model(paths.model, coplay="skip", content=True)
    processed_manifest = read_processed_manifest(paths.processed, verify=True)
    items = read_processed(paths.processed, tables=("items",)).items
    progress("index", f"embedding the {len(items):,} games of the catalog", None)
    vectors = embed_catalog(model, items)
    item_vectors = vectors.item_vectors
    trained = vectors.model_rows >= 0
    n_items, dim = item_vectors.shape
    kind = resolve_kind(options.kind, n_items, options.exact_max_items)
    progress("index", f"building the {kind} index of {n_items:,} x {dim} vectors", None)
    started = time.perf_counter()
    # trained and mapped games are ranked apart (their norms differ), so each kind gets its
    # own index: one approximate index over both finds half of a trained game's neighbours
    parts: dict[str, Any] = {}
    part_params: dict[str, dict[str, Any]] = {}
    searchers: list[tuple[np.ndarray, VectorIndex]] = []
    for name, members in vectors.part_members().items():
        if members.size == 0:
            continue
        parts[name], part_params[name] = build(
            item_vectors[members],
            kind,
            exact_max_items=options.exact_max_items,
            hnsw_m=options.hnsw_m,
            hnsw_ef_construction=options.hnsw_ef_construction,
            hnsw_ef_search=options.hnsw_ef_search,
            ivf_nlist=options.ivf_nlist,
            ivf_nprobe=options.ivf_nprobe,
        )
        padded = bool(part_params[name].get("norm_padding"))
        searchers.append((members, FaissIndex(parts[name], norm_padding=padded)))
    params = part_params[max(part_params, key=lambda name: parts[name].ntotal)]
    build_seconds = time.perf_counter() - started
    recall_queries = min(1000, n_items)
    progress("index", f"measuring recall@20 on {recall_queries:,} item queries", None)
    recall = measure_recall(
        PartitionedIndex(searchers, n_items),
        item_vectors,
        k=20,
        n_queries=recall_queries,
        seed=0,
        groups=[trained, ~trained],
    )
    target = paths.index
    progress("index", f"writing {target}", None)
    counts = {"trained": int(trained.sum()), "mapped": int((~trained).sum())}
    with staged_dir(target) as staging:
        write_index(
            staging,
            parts,
            params=params,
            part_params=part_params,
            embeddings_fingerprint=embeddings_fingerprint,
            settings=options.model_dump(mode="json"),
            recall_at_20=recall,
            vectors=vectors,
            items_fingerprint=processed_manifest["files"][ITEMS_FILE],
            counts=counts,
        )
    return {
        "kind": params["kind"],
        "params": params,
        "items": n_items,
        **counts,
        "dim": dim,
        "build_seconds": round(build_seconds, 3),
        "recall_at_20": recall,
        "recall_queries": recall_queries,
        "threads": threads,
        "output": str(target),
    }


def _retry_options(settings: Settings) -> dict[str, Any]:
    """How both Steam clients time out and retry."""
    options = settings.fetch
    return {
        "timeout_s": options.timeout_s,
        "max_retries": options.max_retries,
        "backoff_base_s": options.backoff_base_s,
        "backoff_max_s": options.backoff_max_s,
    }


def fetch_steamspy(
    settings: Settings,
    pages: int | None = None,
    details: int | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Crawl SteamSpy into ``raw/steamspy``: ``all`` pages, then appdetails of the top games.

    ``pages`` (default ``fetch.pages``: until the empty page) limits the pages from 0;
    ``details`` (default ``fetch.details``) is how many of the most-owned games get appdetails,
    the only source of genres and tags. Resumes where an earlier run stopped. Returns what was
    fetched, skipped and failed per phase.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamspy import (
        SavedAppdetails,
        SteamSpyClient,
        crawl_all_pages,
        page_records,
        top_appids_by_owners,
    )

    options = settings.fetch
    pages = options.pages if pages is None else pages
    details = options.details if details is None else details
    root = workspace(settings).steamspy
    with SteamSpyClient(
        options.steamspy_url,
        all_interval_s=options.all_interval_s,
        request_interval_s=options.request_interval_s,
        **_retry_options(settings),
    ) as client:
        pages_summary = crawl_all_pages(client, root / "all", pages=pages, progress=progress)
        records = page_records(root / "all")
        appids = top_appids_by_owners(records, details)
        details_summary = crawl_items(
            appids, SavedAppdetails(root / "appdetails"), client.appdetails, client.http, progress
        ).counts("not_found")
    return {
        "pages": {**pages_summary, "apps": len(records)},
        "appdetails": details_summary,
        "output": str(root),
    }


def fetch_owned(
    settings: Settings, steamids: list[str], progress: Progress = _quiet
) -> dict[str, Any]:
    """Fetch the game libraries of ``steamids`` (SteamID64s) into ``raw/steam/owned``.

    Every id is checked before any request; the API key comes from ``fetch.steam_api_key``
    (``GAMEREC_STEAM_API_KEY``). Private profiles are reported and remembered; calls are counted
    per UTC day against ``fetch.daily_limit``. Returns what was fetched, skipped and failed.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamweb import (
        KEY_HELP,
        DailyQuota,
        SavedLibraries,
        SteamWebClient,
        validate_steamids,
    )

    wanted = validate_steamids(steamids)
    options = settings.fetch
    key = options.steam_api_key.get_secret_value().strip() if options.steam_api_key else ""
    if not key:
        raise ConfigError(f"no Steam Web API key: {KEY_HELP}")
    paths = workspace(settings)
    quota = DailyQuota(paths.quota_file, options.daily_limit)
    with SteamWebClient(
        key,
        options.steam_api_url,
        interval_s=options.steam_interval_s,
        before_request=quota.spend,
        **_retry_options(settings),
    ) as client:
        crawled = crawl_items(
            wanted, SavedLibraries(paths.owned), client.owned_games, client.http, progress
        )
    return {
        **crawled.counts("private"),
        "private_steamids": sorted(crawled.missing),
        "calls_today": quota.used(),
        "daily_limit": options.daily_limit,
        "output": str(paths.owned),
    }


def _resume_key(processed_manifest: dict[str, Any], options: Any) -> str:
    blob = json.dumps(
        {"files": processed_manifest.get("files"), "train": options.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fit_reranker(
    train_matrix: Any,
    valid: Any,
    user_tower: dict[str, Any],
    item_embeddings: Any,
    playtime_weight: float,
    options: Any,
) -> tuple[Any, dict[str, Any]]:
    """The co-play weights and blend that rank the validation users best."""
    from gamerec.evaluation.protocol import mean_ndcg
    from gamerec.towers.ease import ease_weights, gram_matrix
    from gamerec.towers.inference import NumpyUserTower, TwoTowerScorer

    tower = NumpyUserTower(user_tower, playtime_weight)
    gram = gram_matrix(train_matrix)
    best: tuple[float, Any, dict[str, Any]] | None = None
    tried = []
    for regularisation in options.rerank_lambdas:
        weights = ease_weights(gram, regularisation)
        for alpha in options.rerank_alphas:
            choice = {
                "lambda": regularisation,
                "alpha": alpha,
                "candidates": options.rerank_candidates,
                "coplay_candidates": options.rerank_coplay_candidates,
            }
            scorer = TwoTowerScorer(tower, item_embeddings, {"rerank": choice}, weights, True)
            ndcg = mean_ndcg(scorer, valid.histories, valid.targets, k=20)
            tried.append({**choice, "valid_ndcg_at_20": ndcg})
            if best is None or ndcg > best[0]:
                best = (ndcg, weights, choice)
    assert best is not None
    return best[1], {**best[2], "valid_ndcg_at_20": best[0], "tried": tried}


def _ndcg_part(valid: Any, k: int = 20) -> Callable[[Any, int, int], tuple[float, int]]:
    """``part(scorer, index, parts)``: NDCG@k summed over every ``parts``-th validation user."""
    from gamerec.evaluation.metrics import metric_key
    from gamerec.evaluation.protocol import evaluate_scorer

    rows = np.flatnonzero(valid.targets.row_lengths() > 0)
    k = min(k, valid.histories.n_items)

    def part(scorer: Any, index: int, parts: int) -> tuple[float, int]:
        mine = rows[index::parts]
        if len(mine) == 0:
            return 0.0, 0
        result = evaluate_scorer(
            scorer, valid.histories.take_rows(mine), valid.targets.take_rows(mine), [k]
        )
        return float(result.per_user[metric_key("ndcg", k)].sum()), result.n_users

    return part


def _start_workers(settings: Settings) -> Any:
    """Join the other training workers when launched by torchrun (world_size > 1), else None."""
    options = settings.distributed
    if options.world_size < 2:
        return None
    from gamerec.towers.distributed import start_workers
    from gamerec.towers.train import resolve_device

    return start_workers(
        rank=options.rank,
        world_size=options.world_size,
        local_rank=options.local_rank,
        master_addr=options.master_addr,
        master_port=options.master_port,
        backend=options.backend,
        device=resolve_device(settings.train.device),
        timeout_s=options.timeout_s,
    )


def train(
    settings: Settings,
    progress: Progress = _quiet,
    on_epoch: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train the two-tower model on ``processed/`` and write ``model/``.

    Early-stops on validation NDCG@20 and keeps the best epoch. An interrupted run resumes from
    its last finished epoch (same data and settings); a failed run leaves the last good
    ``model/`` untouched. Returns a summary: best epoch, validation NDCG@20, seconds, history.

    Under ``torchrun`` (``settings.distributed.world_size`` > 1) this process is one of the
    training workers: they train together (DDP) and rank 0 alone reports progress, fits the
    re-ranker and writes ``model/`` and the resume state; the others return the same summary
    with ``"written": False``.
    """
    from gamerec.towers.distributed import stop_on_sigterm, stop_workers

    workers = _start_workers(settings)
    if workers is None:
        # the whole run, not only the swap: two runs would share the resume state
        with stage_lock(workspace(settings).model):
            return _train(settings, progress, on_epoch, None)
    if workers.rank != 0:
        progress, on_epoch = _quiet, None
        with stop_on_sigterm(workers):
            summary = _train(settings, progress, on_epoch, workers)
    else:
        with stop_on_sigterm(workers), stage_lock(workspace(settings).model):
            summary = _train(settings, progress, on_epoch, workers)
    # only after success: on failure, tearing the group down waits on the lost peer, and
    # torchrun would kill this worker before it could say what happened
    stop_workers()
    return summary


@dataclass
class _FittedModel:
    """A two-tower fit on one training matrix, its second stage and its content mapping."""

    result: Any  # towers.train.TrainResult
    features: Any  # towers.features.ItemFeatures
    config: Any  # towers.model.TwoTowerConfig
    summary: dict[str, Any]
    user_tower: dict[str, np.ndarray] = field(default_factory=dict)
    item_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    coplay: np.ndarray | None = None
    rerank: dict[str, Any] | None = None
    mapper: Any = None  # towers.cold.ContentMapper


def _fit_towers(
    options: Any,
    items: Any,
    train_matrix: Any,
    valid: Any,
    progress: Progress,
    *,
    on_epoch: Callable[[Any], None] | None = None,
    workers: Any = None,
    resume_path: Path | None = None,
    resume_key: str = "",
) -> _FittedModel:
    """Train the two towers on ``train_matrix`` (columns are ``items``' rows), early-stopping
    on the ``valid`` users' NDCG@20: what ``gamerec train`` and P-COLD's evaluation share."""
    from gamerec.evaluation.protocol import mean_ndcg
    from gamerec.towers.features import build_item_features
    from gamerec.towers.model import TwoTowerConfig
    from gamerec.towers.train import train_two_tower

    n_items = len(items)
    features = build_item_features(items)
    config = TwoTowerConfig(
        n_items=n_items,
        n_tokens=features.n_tokens,
        n_numeric=features.numeric.shape[1],
        embedding_dim=options.embedding_dim,
        hidden_dim=options.hidden_dim,
        dropout=options.dropout,
        temperature=options.temperature,
        playtime_weight=options.playtime_weight,
    )
    progress("train", f"training on {train_matrix.n_rows:,} users x {n_items:,} games", None)
    result = train_two_tower(
        train_matrix,
        features,
        config,
        validate=lambda scorer: mean_ndcg(scorer, valid.histories, valid.targets, k=20),
        epochs=options.epochs,
        patience=options.patience,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        lr_decay=options.lr_decay,
        weight_decay=options.weight_decay,
        holdout_fraction=options.holdout_fraction,
        max_full_softmax_items=options.max_full_softmax_items,
        sampled_negatives=options.sampled_negatives,
        seed=options.seed,
        device=options.device,
        threads=options.threads,
        resume_path=resume_path,
        resume_key=resume_key,
        on_epoch=on_epoch,
        workers=workers,
        validate_part=_ndcg_part(valid, k=20) if workers is not None else None,
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
        "workers": 1 if workers is None else workers.world_size,
        "history": [vars(report) for report in result.history],
    }
    return _FittedModel(result, features, config, summary)


def _fit_stages(
    options: Any,
    items: Any,
    train_matrix: Any,
    valid: Any,
    fitted: _FittedModel,
    progress: Progress,
) -> _FittedModel:
    """Export the towers of ``fitted``, then fit its co-play re-ranker and content mapping."""
    from gamerec.towers.checkpoint import export_item_embeddings, export_user_tower
    from gamerec.towers.cold import fit_content_mapper

    n_items = len(items)
    summary = fitted.summary
    user_tower = export_user_tower(fitted.result.model, fitted.features)
    item_embeddings = export_item_embeddings(fitted.result.model, fitted.features)
    coplay, rerank = None, None
    if options.rerank and n_items > options.rerank_max_items:
        # dense games x games weights: bounded by the games with players, never the catalog
        skipped = (
            f"{n_items:,} games with players, above train.rerank_max_items = "
            f"{options.rerank_max_items:,}"
        )
        summary["rerank"] = {"skipped": skipped}
        progress("train", f"co-play re-ranker skipped: {skipped}", None)
    elif options.rerank:
        progress("train", "fitting the co-play re-ranker on the training users", None)
        coplay, rerank = _fit_reranker(
            train_matrix,
            valid,
            user_tower,
            item_embeddings,
            fitted.config.playtime_weight,
            options,
        )
        summary["rerank"] = rerank
    progress("train", "fitting the content mapping for games without players", None)
    mapper, content_quality = fit_content_mapper(
        items, item_embeddings, user_tower["history"], seed=options.seed
    )
    summary["content_mapping"] = content_quality
    fitted.user_tower, fitted.item_embeddings = user_tower, item_embeddings
    fitted.coplay, fitted.rerank, fitted.mapper = coplay, rerank, mapper
    return fitted


def _train(
    settings: Settings,
    progress: Progress,
    on_epoch: Callable[[Any], None] | None,
    workers: Any,
) -> dict[str, Any]:
    from gamerec.dataio.splits import split_histories, train_histories
    from gamerec.towers.checkpoint import save_checkpoint

    paths = workspace(settings)
    options = settings.train
    processed_manifest = read_processed_manifest(paths.processed, verify=True)
    progress("train", f"reading {paths.processed}", None)
    processed = read_processed(paths.processed)
    # the model ranks the games with players; the rest of the catalog is not in it
    n_items = games_with_players(processed.items["has_players"])
    _, train_matrix = train_histories(processed.split, processed.interactions, n_items)
    if train_matrix.n_rows == 0:
        raise TrainingError(
            f"{paths.processed} has no training users; run `gamerec preprocess` with more data"
        )
    valid = split_histories(processed.split, processed.interactions, n_items, "valid")
    if valid.histories.n_rows == 0:
        raise TrainingError(
            "no validation users to early-stop on; run `gamerec preprocess` with more users or a "
            "larger preprocess.valid_fraction"
        )
    items = processed.items.iloc[:n_items]
    resume_path = paths.train_resume_file
    resume_path.parent.mkdir(parents=True, exist_ok=True)
    fitted = _fit_towers(
        options,
        items,
        train_matrix,
        valid,
        progress,
        on_epoch=on_epoch,
        workers=workers,
        resume_path=resume_path,
        resume_key=_resume_key(processed_manifest, options),
    )
    if workers is not None:
        from gamerec.towers.distributed import stop_workers

        stop_workers()  # training is over: rank 0 writes alone, the others are done
    summary = fitted.summary
    if workers is not None and workers.rank != 0:
        return {**summary, "rank": workers.rank, "written": False, "output": str(paths.model)}
    fitted = _fit_stages(options, items, train_matrix, valid, fitted, progress)
    features, config = fitted.features, fitted.config
    progress("train", f"writing {paths.model}", None)
    with staged_dir(paths.model) as staging:
        write_model(
            staging,
            write_checkpoint=lambda path: save_checkpoint(
                path, fitted.result.model, {"tokens": features.tokens}
            ),
            item_embeddings=fitted.item_embeddings,
            user_tower=fitted.user_tower,
            coplay=fitted.coplay,
            content=fitted.mapper.arrays(),
            content_vocabulary=fitted.mapper.vocabulary.to_dict(),
            item_keys=[str(k) for k in items["item_key"]],
            processed_manifest=processed_manifest,
            settings=options.model_dump(mode="json"),
            counts={"items": n_items, "train_users": train_matrix.n_rows},
            extra={
                "config": config.to_dict(),
                "tokens": features.tokens,
                "genres": features.genres,
                "numeric_names": features.numeric_names,
                "summary": {k: v for k, v in summary.items() if k != "history"},
                "history": summary["history"],
                "rerank": fitted.rerank,
            },
        )
    resume_path.unlink(missing_ok=True)
    return {**summary, "output": str(paths.model)}


def load_recommender(settings: Settings, in_memory: bool = False) -> Recommender:
    """The :class:`~gamerec.runtime.recommender.Recommender` of the workspace.

    ``in_memory`` (a server) copies every array into memory rather than mapping it.
    """
    from gamerec.runtime.recommender import Recommender

    return Recommender.from_dir(
        settings.data_dir,
        max_top_k=settings.recommend.max_top_k,
        rerank=settings.recommend.rerank,
        in_memory=in_memory,
        new_games_share=settings.recommend.new_games_share,
    )


def recommend(
    settings: Settings,
    *,
    user_id: str | None = None,
    played: dict[int, float] | None = None,
    library: Path | None = None,
    genres: list[str] | None = None,
    achievements: dict[int, int] | None = None,
    k: int | None = None,
    exclude_owned: bool = True,
    include_dlc: bool = False,
) -> dict[str, Any]:
    """Recommendations for a known user and/or a history (``played``, a ``library`` file).

    Returns ``{"recommendations": [...], "history": {...}, "note": ...}``: ``history`` says how
    many of the given games are known and lists the appids that are not (or not in the model).
    """
    history = dict(played or {})
    if library is not None:
        history.update(read_library(library))
    answers = load_recommender(settings).recommend(
        user_id=user_id,
        played=history,
        genres=genres or [],
        achievements=achievements or {},
        k=settings.recommend.top_k if k is None else k,
        exclude_owned=exclude_owned,
        include_dlc=include_dlc,
    )
    return answers.to_dict()


def read_library(path: Path) -> dict[int, float]:
    """``{appid: minutes}`` from a Steam Web API GetOwnedGames response file."""
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON ({exc.msg})", path, exc.lineno) from None
    games = parse_owned_games(document, Path(path))
    if games is None:
        raise DataError(
            "is a private profile's answer (no games); make the profile's game details public",
            path,
        )
    return {int(game["appid"]): float(game["playtime_min"]) for game in games}


def serve(settings: Settings, progress: Progress = _quiet) -> dict[str, Any]:
    """Serve recommendations over HTTP until SIGTERM (``gamerec serve``); SIGHUP reloads.

    Loads the workspace's artifacts once, reports the URL through ``progress`` when it is
    listening, and returns a summary (requests answered, seconds up) after draining.
    """
    from gamerec.runtime.blas import set_blas_threads
    from gamerec.runtime.server import serve as run_server

    options = settings.serve
    # requests already run in parallel: one thread per product, not threads fighting for cores
    # (a FAISS index searches a request's one query on its calling thread alone)
    set_blas_threads(options.search_threads)
    return run_server(
        lambda: load_recommender(settings, in_memory=True),
        options.host,
        options.port,
        token=options.token.get_secret_value() if options.token else None,
        max_body_bytes=options.max_body_bytes,
        max_header_bytes=options.max_header_bytes,
        timeout_s=options.timeout_s,
        header_timeout_s=options.header_timeout_s,
        max_workers=options.max_workers,
        max_connections=options.max_connections,
        max_connections_per_client=options.max_connections_per_client,
        default_top_k=settings.recommend.top_k,
        max_top_k=options.max_top_k,
        max_history=options.max_history,
        drain_s=options.drain_s,
        processes=options.processes,
        log_level=options.log_level,
        on_ready=lambda url: progress("serve", f"listening on {url}", None),
    )


def similar(settings: Settings, game: str, k: int | None = None) -> list[dict[str, Any]]:
    """Games closest to ``game`` (appid or name) in the model's item space."""
    answers = load_recommender(settings).similar(game, settings.recommend.top_k if k is None else k)
    return [answer.to_dict() for answer in answers]


def recommend_all(
    settings: Settings, out: Path, k: int | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Top-k for every known user into ``out`` (.parquet or .jsonl), written atomically.

    Streams: each batch of users is written (a parquet row group, or its JSON lines) as soon as
    it is ranked, with columnar arrays rather than Python rows, so memory stays flat however
    many users there are.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    suffix = Path(out).suffix.lower()
    if suffix not in (".parquet", ".jsonl"):
        raise InvalidRequestError(f"--out must end in .parquet or .jsonl, got {out}")
    started = time.perf_counter()
    recommender = load_recommender(settings)
    k = settings.recommend.top_k if k is None else k
    catalog = recommender.catalog
    names = pa.array(catalog.names, type=pa.string())
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("rank", pa.int64()),
            ("appid", pa.int64()),
            ("name", pa.string()),
            ("score", pa.float64()),
        ]
    )
    total = len(recommender.known_users)
    done = rows = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, schema) if suffix == ".parquet" else None
        handle = None if writer is not None else tmp.open("w")
        try:
            for user_ids, items, scores in recommender.recommend_all(k=k):
                keep = np.logical_and.accumulate(items >= 0, axis=1)  # a user's list ends at -1
                user_of = np.repeat(np.arange(len(user_ids)), keep.sum(1))
                chosen = items[keep]
                appids = catalog.appids[chosen]
                table = pa.table(
                    {
                        "user_id": pa.array(user_ids, type=pa.string()).take(pa.array(user_of)),
                        "rank": pa.array(np.nonzero(keep)[1].astype(np.int64) + 1),
                        "appid": pa.array(appids, type=pa.int64(), mask=appids < 0),
                        "name": names.take(pa.array(chosen)),
                        "score": pa.array(scores[keep].astype(np.float64)),
                    },
                    schema=schema,
                )
                if writer is not None:
                    writer.write_table(table)
                elif handle is not None:
                    columns = table.to_pydict()
                    for row in zip(*columns.values(), strict=True):
                        handle.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
                rows += table.num_rows
                done += len(user_ids)
                progress("recommend", f"{done:,} of {total:,} users", done / max(total, 1))
        finally:
            if writer is not None:
                writer.close()
            if handle is not None:
                handle.close()
    return {
        "users": total,
        "rows": rows,
        "k": k,
        "out": str(out),
        "seconds": time.perf_counter() - started,
    }


def demo(
    settings: Settings,
    progress: Progress = _quiet,
    on_epoch: Callable[[Any], None] | None = None,
    sample_genres: tuple[str, ...] = ("RPG",),
) -> dict[str, Any]:
    """The whole pipeline on the bundled data, then two example answers.

    preprocess -> train -> index -> eval (P-SG), then recommendations for a test user (from
    their fold-in games only, so the held-out ones can be checked against the answer) and for a
    new user who gave nothing but ``sample_genres``.
    """
    settings = settings.model_copy(deep=True)
    settings.preprocess.inputs = []  # the bundled dataset, whatever gamerec.toml says
    report: dict[str, Any] = {"preprocess": preprocess(settings, progress)}
    report["train"] = train(settings, progress, on_epoch=on_epoch)
    report["index"] = build_index(settings, progress)
    report["eval"] = evaluate(settings, progress=progress)

    processed = read_processed(workspace(settings).processed)
    split = processed.split
    test_rows = split[(split["group"] == "test").to_numpy()]
    counts = test_rows.groupby("user_idx", observed=True).size()
    user_idx = int(counts.index[np.argmin(np.abs(counts.to_numpy() - 20))])
    rows = test_rows[test_rows["user_idx"] == user_idx]
    foldin = rows[(rows["role"] == "foldin").to_numpy()]
    targets = set(rows[(rows["role"] == "target").to_numpy()]["item_idx"].tolist())
    playtime = processed.interactions.set_index(["user_idx", "item_idx"])["playtime_min"]
    appids = processed.items["appid"]
    played = {}  # keyed by appid, so games known only by title are left out
    for item in foldin["item_idx"]:
        if not bool(appids.isna()[item]):
            played[int(appids[item])] = float(playtime[(user_idx, item)])
    recommender = load_recommender(settings)
    answers = recommender.recommend(played=played, k=10)
    user_id = str(processed.users["user_id"][user_idx])
    report["sample_user"] = {
        "user_id": user_id,
        "played": len(played),
        "held_out": len(targets),
        "held_out_found": sum(a.item_idx in targets for a in answers),
        "recommendations": [a.to_dict() for a in answers],
    }
    report["new_user"] = {
        "genres": list(sample_genres),
        "recommendations": [
            a.to_dict() for a in recommender.recommend(genres=list(sample_genres), k=10)
        ],
    }
    return report


def _cold_start_scorers(
    settings: Settings, data: Any, ks: list[int], progress: Progress
) -> tuple[list[Any], dict[str, Any]]:
    """The two-tower under P-COLD, as a player would meet it: trained (``train`` settings) on
    the protocol's training users with the new games hidden, so the model knows only the
    others; its co-play re-ranker and content mapping fit on the same; every game it was not
    trained on embedded by the content mapping (:func:`gamerec.towers.cold.embed_items`, what
    ``gamerec index`` does); answers ranked as the recommender ranks them, new games in
    ``recommend.new_games_share`` of the places (:class:`~gamerec.towers.inference.CatalogScorer`).

    Returns the scorers (without and with the re-ranker) and the training summary.
    """
    from gamerec.dataio.matrix import UserItems
    from gamerec.dataio.splits import HeldOutUsers
    from gamerec.evaluation.metrics import check_ks
    from gamerec.towers.cold import embed_items
    from gamerec.towers.inference import CatalogScorer, NumpyUserTower, TwoTowerScorer

    paths = workspace(settings)
    options = settings.train
    items = read_processed(paths.processed, tables=("items",)).items.iloc[: data.n_items]
    kept = np.setdiff1d(np.arange(data.n_items), data.new_items)
    column_of = np.full(data.n_items, -1, dtype=np.int64)
    column_of[kept] = np.arange(len(kept))

    def model_columns(matrix: UserItems) -> UserItems:
        rows = np.repeat(np.arange(matrix.n_rows), matrix.row_lengths())
        columns = column_of[matrix.indices]
        assert (columns >= 0).all(), "P-COLD's training rows still name a new game"
        return UserItems.from_pairs(rows, columns, matrix.values, matrix.n_rows, len(kept))

    train_matrix = model_columns(data.train)
    valid = HeldOutUsers(
        data.valid.user_idx,
        model_columns(data.valid.histories),
        model_columns(data.valid.targets),
        data.valid.skipped,
    )
    if train_matrix.n_rows == 0 or valid.histories.n_rows == 0:
        raise TrainingError(
            "P-COLD needs training and validation users to train the two-tower on; run "
            "`gamerec preprocess` with more data"
        )
    model_items = items.iloc[kept]
    progress(
        "eval", f"training the two-tower with the {len(data.new_items):,} new games hidden", None
    )
    fitted = _fit_towers(options, model_items, train_matrix, valid, progress)
    fitted = _fit_stages(options, model_items, train_matrix, valid, fitted, progress)
    vectors = embed_items(
        fitted.mapper,
        [str(key) for key in model_items["item_key"]],
        fitted.item_embeddings,
        fitted.user_tower,
        fitted.features.tokens,
        items,
    )
    tower = NumpyUserTower(
        {**fitted.user_tower, "history": vectors.history, "token_matrix": vectors.token_matrix},
        fitted.config.playtime_weight,
    )
    coplay = None
    if fitted.coplay is not None:  # in the evaluation's columns: a new game co-plays with none
        coplay = np.zeros((data.n_items, data.n_items), dtype=np.float32)
        coplay[np.ix_(kept, kept)] = fitted.coplay
    manifest = {"rerank": fitted.rerank}
    new = np.zeros(data.n_items, dtype=bool)
    new[data.new_items] = True
    length = check_ks(ks, data.n_items)[-1]
    share = settings.recommend.new_games_share
    scorers = [
        CatalogScorer(
            TwoTowerScorer(tower, vectors.item_vectors, manifest, coplay, rerank),
            new,
            share,
            length,
        )
        for rerank in ((False, True) if coplay is not None else (False,))
    ]
    summary = {k: v for k, v in fitted.summary.items() if k != "history"}
    summary["new_games_share"] = share
    return scorers, summary


def evaluate(
    settings: Settings,
    protocol: str | None = None,
    ks: list[int] | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Evaluate the baselines and, when ``model/`` exists, the two-tower model side by side.

    ``protocol`` (default ``eval.protocol``): ``sg`` (P-SG), ``loo`` (P-LOO) or ``cold``
    (P-COLD: new games; the two-tower is trained for it with the new games hidden, as
    :func:`_cold_start_scorers` says, ``model/`` is not used) on the test users of
    ``processed/``; ``ks`` (default ``eval.k``) the cut-offs. Writes ``eval/report.json``
    atomically and returns the report: per method, per metric and K, the mean over users and
    its bootstrap 95% CI, plus fit times and the chosen EASE lambda.
    """
    from gamerec.evaluation.protocol import Scorer, load_protocol
    from gamerec.evaluation.report import compare

    paths = workspace(settings)
    options = settings.eval
    protocol = protocol or options.protocol
    ks = list(ks) if ks else list(options.k)
    processed_manifest = read_processed_manifest(paths.processed, verify=True)
    progress("eval", f"reading {paths.processed} ({protocol})", None)
    data = load_protocol(paths.processed, protocol, seed=options.seed)
    baselines: list[str] = list(options.baselines)
    if protocol == "cold" and "content" not in baselines:
        baselines.append("content")  # the one baseline that ranks new games by what they are

    scorers: list[Scorer] = []
    model_status = "not trained (run `gamerec train` to compare it)"
    cold_model: dict[str, Any] | None = None
    if protocol == "cold":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            model_status = f"skipped: training it needs PyTorch ({exc})"
        else:
            scorers, cold_model = _cold_start_scorers(settings, data, ks, progress)
            model_status = "evaluated: trained for P-COLD with the new games hidden"
    elif has_manifest(paths.model):
        model_manifest = read_model_manifest(paths.model)
        check_model_matches_processed(model_manifest, processed_manifest, paths.model)
        try:
            from gamerec.towers.inference import TwoTowerScorer
        except ImportError as exc:
            model_status = f"skipped: this installation cannot load it ({exc})"
        else:
            progress("eval", f"loading the model from {paths.model}", None)
            scorers.append(TwoTowerScorer.from_dir(paths.model))
            reranked = TwoTowerScorer.from_dir(paths.model, rerank=True)
            if reranked.rerank:  # the default second stage, when the model was trained with it
                scorers.append(reranked)
            model_status = "evaluated"

    started = time.perf_counter()
    report = compare(
        data,
        baselines,
        ks,
        scorers=scorers,
        bootstrap=options.bootstrap,
        seed=options.seed,
        ease_lambdas=options.ease_lambdas,
        ease_max_items=options.ease_max_items,
        itemknn_neighbors=options.itemknn_neighbors,
        batch_size=options.batch_size,
        playtime_weight=settings.train.playtime_weight,
        progress=lambda message: progress("eval", message, None),
    )
    report.update(
        split_seed=processed_manifest.get("settings", {}).get("seed"),
        processed=str(paths.processed),
        model=model_status,
        **({"cold_model": cold_model} if cold_model is not None else {}),
        seconds=round(time.perf_counter() - started, 3),
    )
    target = paths.eval
    with staged_dir(target) as staging:
        atomic_write_json(staging / paths.eval_report.name, report)
        write_manifest(
            staging,
            "eval",
            settings={**options.model_dump(mode="json"), "protocol": protocol, "k": report["ks"]},
            inputs={
                f"processed/{name}": digest
                for name, digest in processed_manifest.get("files", {}).items()
            },
            counts={"users": report["users_evaluated"], "methods": len(report["methods"])},
        )
    return {**report, "output": str(paths.eval_report)}
