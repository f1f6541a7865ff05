"""The answering stages: ``gamerec recommend``, ``recommend --all``, ``similar``, ``users``
and ``serve``.

Part of the pipeline (``gamerec.pipeline`` exports them): each reads :class:`Settings` once and
asks the workspace's :class:`~gamerec.runtime.recommender.Recommender`. The command line calls
them here rather than through ``gamerec.pipeline``, whose other stages a one-shot ``gamerec
recommend`` would otherwise import; nothing here imports torch, FAISS (for a flat index) or
pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gamerec.dataio.history import History
from gamerec.progress import Progress, quiet, reported
from gamerec.settings import Settings

if TYPE_CHECKING:
    from gamerec.results import ServeResult, UsersResult
    from gamerec.runtime.batch import BatchSummary
    from gamerec.runtime.recommender import Recommendation, Recommendations, Recommender

__all__ = ["load_recommender", "recommend", "recommend_all", "serve", "similar", "users"]


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
    games: Sequence[int | str] | None = None,
) -> Recommendations:
    """Recommendations for a known user and/or a history (``played``, ``achievements``,
    ``history``, a GetOwnedGames ``library`` file, ``games`` owned by name or appid).

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
        games=games,
    )


def users(settings: Settings, limit: int = 20) -> UsersResult:
    """How many users the workspace knows, and ``limit`` of their ids (most games first)."""
    from gamerec.results import UserExample, UsersResult

    recommender = load_recommender(settings)
    return UsersResult(
        users=len(recommender.known_users),
        examples=[UserExample(user_id, games) for user_id, games in recommender.users(limit)],
    )


def similar(settings: Settings, game: str, k: int | None = None) -> list[Recommendation]:
    """Games closest to ``game`` (appid or name) in the model's item space."""
    return load_recommender(settings).similar(game, settings.recommend.top_k if k is None else k)


def recommend_all(
    settings: Settings, out: Path, k: int | None = None, progress: Progress = quiet
) -> BatchSummary:
    """Top-k for every known user into ``out`` (.parquet or .jsonl), written atomically;
    each user's row is what ``recommend`` answers them."""
    from gamerec.runtime.batch import write_recommendations

    progress = reported(progress)
    return write_recommendations(
        load_recommender(settings),
        out,
        settings.recommend.top_k if k is None else k,
        on_batch=lambda done, total: progress(
            "recommend", f"{done:,} of {total:,} users", done / max(total, 1)
        ),
    )


def serve(settings: Settings, progress: Progress = quiet) -> ServeResult:
    """Serve recommendations over HTTP until SIGTERM (``gamerec serve``); SIGHUP reloads.

    Loads the workspace's artifacts once, reports the URL through ``progress`` when it is
    listening, and returns a summary (requests answered, seconds up) after draining.
    """
    from gamerec.runtime.blas import set_blas_threads
    from gamerec.runtime.server import serve as run_server

    progress = reported(progress)
    options = settings.serve
    # requests already run in parallel: one thread per product, not threads fighting for cores
    # (a FAISS index searches a request's one query on its calling thread alone)
    set_blas_threads(options.search_threads)
    summary = run_server(
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
    from gamerec.results import ServeResult

    return ServeResult(**summary)
