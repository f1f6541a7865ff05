"""One function per stage; the only module that unpacks :class:`Settings` into plain arguments.

Every CLI subcommand is one call here: ``gamerec preprocess`` is ``pipeline.preprocess(settings)``.
Each stage reads the previous stage's output from ``settings.data_dir``, checks its manifest, and
writes its own output directory atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gamerec.artifacts import (
    Workspace,
    fingerprint,
    has_manifest,
    stage_lock,
    staged_dir,
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
from gamerec.artifacts.report import write_report
from gamerec.dataio.history import History
from gamerec.errors import (
    ConfigError,
    TrainingError,
)
from gamerec.settings import Settings

if TYPE_CHECKING:
    from gamerec.dataio.preprocess import Source
    from gamerec.runtime.recommender import Recommendation, Recommendations, Recommender

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

#: a progress callback: (stage, message, fraction done or None). A stage is one phase with its
#: own progress bar (e.g. "steamspy pages"); fraction is the share of that stage done, None when
#: the total is unknown or the event (a retry notice) does not move the bar.
Progress = Callable[[str, str, float | None], None]
T = TypeVar("T")


def _quiet(stage: str, message: str, fraction: float | None) -> None:
    return None


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
    from gamerec.index import IndexConfig, build_parts, resolve_kind, set_threads
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
        )
    return {
        "kind": built.params["kind"],
        "params": built.params,
        "items": n_items,
        **counts,
        "dim": dim,
        "build_seconds": round(built.build_seconds, 3),
        "recall_at_20": built.recall_at_20,
        "recall_queries": built.recall_queries,
        "threads": threads,
        "output": str(paths.index),
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


def _store_candidates(settings: Settings, details: int) -> tuple[list[int], str]:
    """The ``details`` most-owned appids of the workspace's catalog, and where they came from:
    ``processed/items.parquet`` once preprocess ran (the catalog recommended from), else the
    SteamSpy pages in ``raw/steamspy/all``, else the bundled catalog."""
    from gamerec.dataio.steamspy import page_records, top_appids_by_owners
    from gamerec.dataio.steamstore import most_owned_appids

    paths = workspace(settings)
    if has_manifest(paths.processed):
        items = read_processed(paths.processed, tables=("items",)).items
        return most_owned_appids(items, details), str(paths.processed / ITEMS_FILE)
    records = page_records(paths.steamspy / "all")
    if records:
        return top_appids_by_owners(records, details), str(paths.steamspy / "all")
    from gamerec.dataio.catalog import load_catalog_table
    from gamerec.dataio.datasets import BUNDLED_CATALOG, data_file

    return most_owned_appids(load_catalog_table(data_file(BUNDLED_CATALOG)), details), (
        f"the bundled catalog ({BUNDLED_CATALOG})"
    )


def fetch_store(
    settings: Settings,
    details: int | None = None,
    appids: list[str] | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Fetch the Steam store's ``appdetails`` (kind, base game, release date) into ``raw/store``.

    ``appids`` (texts such as ``"1086940,1245620"``) name the apps; without them, the ``details``
    (default ``fetch.store_details``) most-owned games of the workspace's catalog (see
    :func:`_store_candidates`). Apps the store does not show are remembered and not asked again;
    resumes where an earlier run stopped. Returns what was fetched, skipped and failed.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamstore import SavedStoreAnswers, StoreClient, parse_appids

    options = settings.fetch
    if appids:
        wanted, source = parse_appids(appids), "--appids"
    else:
        count = options.store_details if details is None else details
        wanted, source = _store_candidates(settings, count)
    target = workspace(settings).store
    with StoreClient(
        options.store_url, interval_s=options.store_interval_s, **_retry_options(settings)
    ) as client:
        crawled = crawl_items(
            wanted, SavedStoreAnswers(target), client.appdetails, client.http, progress
        )
    return {"appids_from": source, **crawled.counts("not_found"), "output": str(target)}


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


def _fit_config(settings: Settings) -> Any:
    """``train.*`` as the plain :class:`~gamerec.towers.fit.FitConfig` the fit takes."""
    from gamerec.towers.fit import FitConfig, ModelShape, RerankSearch
    from gamerec.towers.train import TrainConfig

    options = settings.train
    return FitConfig(
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


def _train(
    settings: Settings,
    progress: Progress,
    on_epoch: Callable[[Any], None] | None,
    workers: Any,
) -> dict[str, Any]:
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
            on_epoch=on_epoch,
            workers=workers,
        ),
        progress,
    )
    if workers is not None:
        from gamerec.towers.distributed import stop_workers

        stop_workers()  # training is over: rank 0 writes alone, the others are done
    summary = fitted.summary
    if workers is not None and workers.rank != 0:
        return {**summary, "rank": workers.rank, "written": False, "output": str(paths.model)}
    fitted = fit_stages(config, items, train_matrix, validation, fitted, progress)
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
    history: History | None = None,
    k: int | None = None,
    exclude_owned: bool = True,
    include_dlc: bool = False,
    released_since: int | None = None,
) -> Recommendations:
    """Recommendations for a known user and/or a history (``played``, ``achievements``,
    ``history``, a GetOwnedGames ``library`` file).

    The answer's ``history`` says how many of the given games are known and lists the appids
    that are not (or not in the trained model); ``to_dict()`` is the JSON form.
    """
    given = History.from_mappings(played, achievements)
    if history is not None:
        given = given.merged(history)
    if library is not None:
        given = given.merged(History.from_library(library))
    return load_recommender(settings).recommend(
        user_id=user_id,
        history=given,
        genres=genres or [],
        k=settings.recommend.top_k if k is None else k,
        exclude_owned=exclude_owned,
        include_dlc=include_dlc,
        released_since=released_since,
    )


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
        timeout_s=options.timeout_s,
        max_workers=options.max_workers,
        max_connections=options.max_connections,
        max_connections_per_client=options.max_connections_per_client,
        default_top_k=settings.recommend.top_k,
        drain_s=options.drain_s,
        processes=options.processes,
        log_level=options.log_level,
        on_ready=lambda url: progress("serve", f"listening on {url}", None),
    )


def users(settings: Settings, limit: int = 20) -> dict[str, Any]:
    """How many users the workspace knows, and ``limit`` of their ids (most games first)."""
    recommender = load_recommender(settings)
    return {
        "users": len(recommender.known_users),
        "examples": [{"user_id": u, "games": n} for u, n in recommender.users(limit)],
    }


def similar(settings: Settings, game: str, k: int | None = None) -> list[Recommendation]:
    """Games closest to ``game`` (appid or name) in the model's item space."""
    return load_recommender(settings).similar(game, settings.recommend.top_k if k is None else k)


def recommend_all(
    settings: Settings, out: Path, k: int | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Top-k for every known user into ``out`` (.parquet or .jsonl), written atomically;
    each user's row is what ``recommend`` answers them."""
    from gamerec.runtime.batch import write_recommendations

    summary = write_recommendations(
        load_recommender(settings),
        out,
        settings.recommend.top_k if k is None else k,
        on_batch=lambda done, total: progress(
            "recommend", f"{done:,} of {total:,} users", done / max(total, 1)
        ),
    )
    return summary.to_dict()


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

    from gamerec.evaluation.protocol import load_protocol

    # a test user of P-SG with about 20 games given: their held-out games can be looked for
    test = load_protocol(workspace(settings).processed, "sg").test
    row = int(np.argmin(np.abs(test.histories.row_lengths() - 20)))
    recommender = load_recommender(settings)
    appids = recommender.catalog.appids
    start, end = test.histories.indptr[row], test.histories.indptr[row + 1]
    played = {  # keyed by appid, so games known only by title are left out
        int(appids[item]): float(minutes)
        for item, minutes in zip(
            test.histories.indices[start:end], test.histories.values[start:end], strict=True
        )
        if appids[item] >= 0
    }
    targets = set(test.targets.row(row).tolist())
    answers = recommender.recommend(played=played, k=10)
    user_id = next(u for u, r in recommender.known_users.items() if r == test.user_idx[row])
    report["sample_user"] = {
        "user_id": user_id,
        "played": len(played),
        "held_out": len(targets),
        "held_out_found": sum(a.item_idx in targets for a in answers),
        "recommendations": list(answers),
    }
    report["new_user"] = {
        "genres": list(sample_genres),
        "recommendations": list(recommender.recommend(genres=list(sample_genres), k=10)),
    }
    return report


def evaluate(
    settings: Settings,
    protocol: str | None = None,
    ks: list[int] | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
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
    return {**report, "output": str(written)}


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
    from gamerec.dataio.content import content_tokens
    from gamerec.ranking import RankingEngine
    from gamerec.towers.cold import token_table

    model = read_model(paths.model, coplay="map")
    meta = data.metadata
    table = token_table(model.description)
    parts: dict[str, Any] = {}
    if meta is not None:
        parts["editions"] = meta.editions()
        if table is not None:
            tokens = content_tokens(meta.genres, meta.tags, meta.developer, meta.publisher)
            parts["content_rows"] = table.rows(tokens)
    engines = [RankingEngine.from_model(model, rerank=False, **parts)]
    if model.coplay is not None and model.description.rerank is not None:
        engines.append(RankingEngine.from_model(model, rerank=True, **parts))
    return engines, "evaluated", None
