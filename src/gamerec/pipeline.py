"""One function per stage; the only module that unpacks :class:`Settings` into plain arguments.

Every CLI subcommand is one call here: ``gamerec preprocess`` is ``pipeline.preprocess(settings)``.
Each stage reads the previous stage's output from ``settings.data_dir``, checks its manifest,
writes its own output directory atomically and returns a typed result (:mod:`gamerec.results`).
What a stage is doing goes to its ``progress`` callback and to the ``gamerec`` logger
(:mod:`gamerec.progress`). The fetch stages live in :mod:`gamerec.fetching`, the answering ones
(recommend, similar, users, recommend --all) in :mod:`gamerec.answers`; both are exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gamerec.answers import load_recommender, recommend, recommend_all, serve, similar, users
from gamerec.artifacts import Workspace, fingerprint, has_manifest, stage_lock, staged_dir
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
from gamerec.artifacts.report import write_report
from gamerec.errors import TrainingError
from gamerec.fetching import fetch_owned, fetch_steamspy, fetch_store
from gamerec.progress import Progress, quiet, reported
from gamerec.results import (
    DemoResult,
    EvalResult,
    IndexResult,
    PreprocessResult,
    TrainResult,
)
from gamerec.runtime.catalog import read_catalog_arrays
from gamerec.settings import Settings

if TYPE_CHECKING:
    from gamerec.dataio.preprocess import Source
    from gamerec.towers.train import EpochReport

__all__ = [
    "Progress",
    "build_index",
    "demo",
    "evaluate",
    "fetch_owned",
    "fetch_steamspy",
    "fetch_store",
    "load_recommender",
    "preprocess",
    "recommend",
    "recommend_all",
    "serve",
    "similar",
    "train",
    "users",
    "workspace",
]

T = TypeVar("T")
#: the stage of the bar over training epochs
EPOCHS_STAGE = "training"


def _plain(config: type[T], section: Any, prefix: str = "", **given: Any) -> T:
    """The plain config dataclass ``config`` from a settings ``section``: each field from the
    setting of the same name (after ``prefix``), unless ``given``."""
    values = {
        name: getattr(section, prefix + name)
        for name in config.__dataclass_fields__  # type: ignore[attr-defined]
        if name not in given and hasattr(section, prefix + name)
    }
    return config(**values, **given)


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


def preprocess(settings: Settings, progress: Progress = quiet) -> PreprocessResult:
    """Read the configured inputs (default: the bundled demo data) and write ``processed/``.

    Returns the summary (counts, density, title match rate, histograms). On any error the
    previous ``processed/`` is left untouched.
    """
    from gamerec.dataio.preprocess import build_processed, load_sources

    progress = reported(progress)
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
    return PreprocessResult.from_summary(processed.summary, target)


def build_index(settings: Settings, progress: Progress = quiet) -> IndexResult:
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
    from gamerec.index import IndexConfig, build_parts, resolve_kind, set_threads
    from gamerec.towers.cold import embed_catalog

    progress = reported(progress)
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
    n_items, dim = vectors.item_vectors.shape
    config = _plain(
        IndexConfig, options, kind=resolve_kind(options.kind, n_items, options.exact_max_items)
    )
    progress("index", f"building the {config.kind} index of {n_items:,} x {dim} vectors", None)
    built = build_parts(
        vectors.item_vectors,
        vectors.part_members(),
        config,
        on_recall=lambda n: progress("index", f"measuring recall@20 on {n:,} item queries", None),
    )
    progress("index", f"writing {paths.index}", None)
    trained = int((vectors.model_rows >= 0).sum())
    counts = {"trained": trained, "mapped": n_items - trained}
    with staged_dir(paths.index) as staging:
        write_index(
            staging,
            built.parts,
            params=built.params,
            part_params=built.part_params,
            embeddings_fingerprint=embeddings_fingerprint,
            settings=options.model_dump(mode="json"),
            recall_at_20=built.recall_at_20,
            vectors=vectors,
            items_fingerprint=processed_manifest["files"][ITEMS_FILE],
            counts=counts,
            catalog_columns=read_catalog_arrays(paths.processed),
        )
    return IndexResult(
        kind=built.params["kind"],
        params=built.params,
        items=n_items,
        **counts,
        dim=dim,
        build_seconds=round(built.build_seconds, 3),
        recall_at_20=built.recall_at_20,
        recall_queries=built.recall_queries,
        threads=threads,
        output=str(paths.index),
    )


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
    progress: Progress = quiet,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Train the two-tower model on ``processed/`` and write ``model/``.

    Early-stops on validation NDCG@20 and keeps the best epoch. An interrupted run resumes from
    its last finished epoch (same data and settings); a failed run leaves the last good
    ``model/`` untouched. Returns a summary: best epoch, validation NDCG@20, seconds, history.
    Each epoch is a step of the ``"training"`` bar of ``progress`` (and goes to ``on_epoch``);
    its last event says how the run ended ("stopped early at epoch 23, best 17").

    Under ``torchrun`` (``settings.distributed.world_size`` > 1) this process is one of the
    training workers: they train together (DDP) and rank 0 alone reports progress, fits the
    re-ranker and writes ``model/`` and the resume state; the others return the same summary
    with ``"written": False``.
    """
    from gamerec.towers.distributed import stop_on_sigterm, stop_workers

    workers = _start_workers(settings)
    progress = reported(progress)
    if workers is None:
        # the whole run, not only the swap: two runs would share the resume state
        with stage_lock(workspace(settings).model):
            return _train(settings, progress, on_epoch, None)
    if workers.rank != 0:  # rank 0 speaks for all
        progress, on_epoch = quiet, None
        with stop_on_sigterm(workers):
            summary = _train(settings, progress, on_epoch, workers)
    else:
        with stop_on_sigterm(workers), stage_lock(workspace(settings).model):
            summary = _train(settings, progress, on_epoch, workers)
    # only after success: on failure, tearing the group down waits on the lost peer, and
    # torchrun would kill this worker before it could say what happened
    stop_workers()
    return summary


def _fit_config(settings: Settings) -> Any:
    """``train.*`` as the plain :class:`~gamerec.towers.fit.FitConfig` the fit takes."""
    from gamerec.towers.fit import (
        ContentSearch,
        FitConfig,
        ModelShape,
        NewGameSearch,
        RerankSearch,
    )
    from gamerec.towers.train import TrainConfig

    options = settings.train
    return FitConfig(
        content=ContentSearch(weights=tuple(options.content_weights)),
        new_games=NewGameSearch(
            offsets=tuple(options.new_game_offsets),
            contents=tuple(options.new_game_contents),
            history_weights=tuple(options.new_game_history_weights),
            older_weights=tuple(options.new_game_older_weights),
        ),
        shape=_plain(ModelShape, options),
        train=_plain(TrainConfig, options),
        rerank=_plain(
            RerankSearch,
            options,
            "rerank_",
            enabled=options.rerank,
            lambdas=tuple(options.rerank_lambdas),
            alphas=tuple(options.rerank_alphas),
        ),
    )


def _epoch_steps(
    progress: Progress, on_epoch: Callable[[EpochReport], None] | None, max_epochs: int
) -> Callable[[EpochReport], None]:
    """Each finished epoch as a step of the training bar, then to ``on_epoch``."""

    def step(report: EpochReport) -> None:
        best = " (best so far)" if report.best else ""
        progress(
            EPOCHS_STAGE,
            f"epoch {report.epoch + 1} of {max_epochs}: loss {report.loss:.3f}, "
            f"{report.examples_per_s:,.0f} users/s, valid NDCG@20 {report.valid_metric:.4f}{best}",
            (report.epoch + 1) / max_epochs,
        )
        if on_epoch is not None:
            on_epoch(report)

    return step


def _train(
    settings: Settings,
    progress: Progress,
    on_epoch: Callable[[EpochReport], None] | None,
    workers: Any,
) -> TrainResult:
    from gamerec.dataio.splits import training_matrices
    from gamerec.evaluation.protocol import ValidationUsers
    from gamerec.towers.checkpoint import save_checkpoint
    from gamerec.towers.fit import FitRun, fit_stages, fit_towers

    paths = workspace(settings)
    processed_manifest = read_processed_manifest(paths.processed, verify=True)
    progress("train", f"reading {paths.processed}", None)
    processed = read_processed(paths.processed)
    # the model ranks the games with players; the rest of the catalog is not in it
    n_items = games_with_players(processed.items["has_players"])
    items = processed.items.iloc[:n_items]
    recommendable = items["recommendable"].to_numpy(dtype=bool)
    recommendable.setflags(write=False)
    matrices = training_matrices(processed.split, processed.interactions, n_items, recommendable)
    train_matrix, valid = matrices.train, matrices.valid
    if train_matrix.n_rows == 0:
        raise TrainingError(
            f"{paths.processed} has no training users; run `gamerec preprocess` with more data"
        )
    if valid.histories.n_rows == 0:
        raise TrainingError(
            "no validation users to early-stop on; run `gamerec preprocess` with more users or a "
            "larger preprocess.valid_fraction"
        )
    validation = ValidationUsers(valid, recommendable)
    config = _fit_config(settings)
    resume_path = paths.train_resume_file
    resume_path.parent.mkdir(parents=True, exist_ok=True)
    fitted = fit_towers(
        config,
        items,
        train_matrix,
        validation,
        FitRun(
            device=settings.train.device,
            threads=settings.train.threads,
            resume_path=resume_path,
            resume_key=config.train.resume_key(
                asdict(config.shape), processed_manifest.get("files")
            ),
            on_epoch=_epoch_steps(progress, on_epoch, config.train.epochs),
            workers=workers,
        ),
        progress,
    )
    if workers is not None:
        from gamerec.towers.distributed import stop_workers

        stop_workers()  # training is over: rank 0 writes alone, the others are done
    summary = fitted.summary
    max_epochs = config.train.epochs
    if workers is not None and workers.rank != 0:
        return TrainResult.from_summary(
            summary, paths.model, max_epochs, rank=workers.rank, written=False
        )
    ending = TrainResult.from_summary(summary, paths.model, max_epochs).ending()
    progress(EPOCHS_STAGE, ending, 1.0)
    fitted = fit_stages(
        config, items, train_matrix, validation, fitted, progress, catalog=processed.items
    )
    assert fitted.mapper is not None
    progress("train", f"writing {paths.model}", None)
    with staged_dir(paths.model) as staging:
        write_model(
            staging,
            write_checkpoint=lambda path: save_checkpoint(
                path, fitted.result.model, {"tokens": fitted.features.tokens}
            ),
            item_embeddings=fitted.item_embeddings,
            user_tower=fitted.user_tower,
            coplay=fitted.coplay,
            content=fitted.mapper.arrays(),
            content_vocabulary=fitted.mapper.vocabulary.to_dict(),
            item_keys=[str(k) for k in items["item_key"]],
            processed_manifest=processed_manifest,
            settings=settings.train.model_dump(mode="json"),
            counts={"items": n_items, "train_users": train_matrix.n_rows},
            extra={
                **fitted.description(),
                "summary": {k: v for k, v in summary.items() if k != "history"},
                "history": summary["history"],
            },
        )
    resume_path.unlink(missing_ok=True)
    return TrainResult.from_summary(summary, paths.model, max_epochs)


def demo(
    settings: Settings,
    progress: Progress = quiet,
    on_epoch: Callable[[EpochReport], None] | None = None,
    sample_genres: tuple[str, ...] = ("RPG",),
) -> DemoResult:
    """The whole pipeline on the bundled data, then two example answers and what to try next.

    preprocess -> train -> index -> eval (P-SG), then the answer for a test user (from the games
    they kept, so the held-out ones can be looked for: the median test user, beside how all of
    them fared, :mod:`gamerec.showcase`) and for a new user who gave nothing but
    ``sample_genres``.
    """
    from gamerec import showcase

    given_dir = settings.sources.get("data_dir") in ("flag", "init")
    settings = settings.model_copy(deep=True)
    settings.preprocess.inputs = []  # the bundled dataset, whatever gamerec.toml says
    progress = reported(progress)
    preprocessed = preprocess(settings, progress)
    trained = train(settings, progress, on_epoch=on_epoch)
    indexed = build_index(settings, progress)
    evaluated = evaluate(settings, progress=progress)
    progress("demo", "answering every test user from the games they kept", None)
    recommender = load_recommender(settings)
    default = "two-tower + re-rank" if settings.recommend.rerank else "two-tower"
    sample = showcase.sample_user(
        recommender,
        workspace(settings).processed,
        evaluated.metric(default, f"hit_rate@{showcase.TOP_K}"),
    )
    return DemoResult(
        preprocess=preprocessed,
        train=trained,
        index=indexed,
        eval=evaluated,
        sample_user=sample,
        new_user=showcase.new_user(recommender, list(sample_genres)),
        next_steps=showcase.next_steps(recommender, settings.data_dir if given_dir else None),
    )


def evaluate(
    settings: Settings,
    protocol: str | None = None,
    ks: list[int] | None = None,
    progress: Progress = quiet,
) -> EvalResult:
    """Evaluate the baselines and, when ``model/`` exists, the two-tower model side by side.

    ``protocol`` (default ``eval.protocol``): ``sg`` (P-SG), ``loo`` (P-LOO) or ``cold``
    (P-COLD: new games; the two-tower is trained for it with the new games hidden, as
    :mod:`gamerec.evaluation.cold` says, ``model/`` is not used) on the test users of
    ``processed/``; ``ks`` (default ``eval.k``) the cut-offs. Every method ranks the games
    ``recommend`` may answer; the two-tower ranks through the one ranking engine, as
    ``recommend`` does. Writes ``eval/report.json`` atomically and returns the report: per
    method, per metric and K, the mean over users and its bootstrap 95% CI, plus fit times
    and the chosen EASE lambda.
    """
    from gamerec.evaluation.protocol import load_protocol
    from gamerec.evaluation.report import EvalConfig, compare

    progress = reported(progress)
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
    engines, model_status, cold_model = _evaluated_engines(
        settings, data, processed_manifest, progress
    )
    started = time.perf_counter()
    report = compare(
        data,
        baselines,
        ks,
        scorers=engines,
        config=_plain(
            EvalConfig,
            options,
            ease_lambdas=tuple(options.ease_lambdas),
            playtime_weight=settings.train.playtime_weight,
        ),
        progress=lambda message: progress("eval", message, None),
    )
    if data.protocol == "cold" and engines:
        from gamerec.evaluation.cold import history_effect

        default = (
            next(e for e in engines if e.reranks) if any(e.reranks for e in engines) else engines[0]
        )
        report["history_effect"] = history_effect(default, data)
    report.update(
        split_seed=processed_manifest.get("settings", {}).get("seed"),
        processed=str(paths.processed),
        model=model_status,
        **({"cold_model": cold_model} if cold_model is not None else {}),
        seconds=round(time.perf_counter() - started, 3),
    )
    written = write_report(
        paths.eval,
        report,
        {**options.model_dump(mode="json"), "protocol": protocol, "k": report["ks"]},
        processed_manifest,
    )
    return EvalResult.from_report(report, output=str(written))


def _evaluated_engines(
    settings: Settings,
    data: Any,
    processed_manifest: dict[str, Any],
    progress: Progress,
) -> tuple[list[Any], str, dict[str, Any] | None]:
    """The two-tower's engines to evaluate (first stage alone, and with the re-ranker), what
    became of the model, and P-COLD's training summary."""
    paths = workspace(settings)
    if data.protocol == "cold":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return [], f"skipped: training it needs PyTorch ({exc})", None
        from gamerec.evaluation.cold import cold_start_engines

        items = read_processed(paths.processed, tables=("items",)).items.iloc[: data.n_items]
        engines, summary = cold_start_engines(
            _fit_config(settings), items, data, settings.recommend.new_games_share, progress
        )
        return engines, "evaluated: trained for P-COLD with the new games hidden", summary
    if not has_manifest(paths.model):
        return [], "not trained (run `gamerec train` to compare it)", None
    check_model_matches_processed(read_model_manifest(paths.model), processed_manifest, paths.model)
    progress("eval", f"loading the model from {paths.model}", None)
    from gamerec.evaluation.protocol import model_engines

    engines = model_engines(read_model(paths.model, coplay="map"), data.metadata)
    return engines, "evaluated", None
