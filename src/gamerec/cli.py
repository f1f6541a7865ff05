"""The ``gamerec`` command: parse -> settings -> ONE pipeline/runtime call -> render.

Heavy libraries (torch, faiss, pandas) are imported inside commands, never here, so
``gamerec --help`` is instant; the answering commands call :mod:`gamerec.answers` (the pipeline's
answering stages) without importing the rest of the pipeline. What a command shows lives in
:mod:`gamerec.render`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from gamerec import render
from gamerec.errors import GamerecError, StorageError

if TYPE_CHECKING:
    from gamerec.settings import Settings

__all__ = ["app", "main"]


class _GamerecGroup(typer.core.TyperGroup):
    """Turns every GamerecError into ``Error: <message>`` on stderr and its exit code (1, or 2
    for a malformed option), and so the failures that are the system's: an OSError (a full
    disk, a read-only folder) and an input nested past Python's recursion limit."""

    # typer.Exit, not click's: recent Typer vendors its own click and only knows its own Exit.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GamerecError as exc:
            if not exc.already_reported:
                render.error(exc.message)
            if exc.exit_at_once:  # what was written is written; teardown could hang
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(exc.exit_code)
            raise typer.Exit(exc.exit_code) from None
        except RecursionError:
            render.error(
                "an input is nested too deeply to be read (thousands of levels of [ or {); "
                "check the files given to this command"
            )
            raise typer.Exit(1) from None
        except OSError as exc:
            render.error(StorageError.from_os_error(exc).message)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            render.interrupted()
            raise typer.Exit(130) from None


app = typer.Typer(
    name="gamerec",
    cls=_GamerecGroup,
    help="Recommend Steam games: fetch data, preprocess, train, index, evaluate, recommend, serve."
    "\n\nStart with `gamerec demo`, which runs everything on the bundled dataset."
    "\n\nExample: gamerec --data-dir ./gamerec-data recommend --played 620:1200 --top-k 5",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(
    cls=_GamerecGroup,
    help="Inspect the effective settings.\n\nExample: gamerec config show --json",
)
app.add_typer(config_app, name="config")
fetch_app = typer.Typer(
    cls=_GamerecGroup,
    help="Download raw data politely and resumably: SteamSpy's catalog, the Steam store's "
    "app details, Steam libraries."
    "\n\nExample: gamerec fetch steamspy --pages 2 --details 100",
    no_args_is_help=True,
)
app.add_typer(fetch_app, name="fetch")


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command (``gamerec --data-dir ws train``): ``ctx.obj``."""

    config: Path | None = None
    data_dir: Path | None = None

    def settings(self, section: str = "", **flags: Any) -> Settings:
        """Settings from defaults < config file < GAMEREC_* < these flags (None: not given).

        ``flags`` are named after their setting in ``section`` (``epochs`` is ``train.epochs``).
        """
        from gamerec.settings import Settings

        overrides: dict[str, Any] = {f"{section}.{name}": value for name, value in flags.items()}
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        return Settings.load(config=self.config, overrides=overrides)


def _options(ctx: typer.Context) -> GlobalOptions:
    options = ctx.find_object(GlobalOptions)
    return GlobalOptions() if options is None else options


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: ./gamerec.toml if present)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", help="Workspace folder (default: ./gamerec-data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TopKOption = Annotated[int | None, typer.Option("--top-k", "-k", help="How many games.")]


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    ctx.obj = GlobalOptions(config=config, data_dir=data_dir)


#: the k-core thresholds of preprocess
MinUserItemsOption = Annotated[
    int | None, typer.Option(help="Drop users owning fewer games (default 5).")
]
MinItemUsersOption = Annotated[
    int | None, typer.Option(help="Drop games owned by fewer users (default 2).")
]
MinOwnersOption = Annotated[
    int | None,
    typer.Option(
        help="Keep catalog games nobody in the play data owns from this many SteamSpy owners "
        "(default 20000)."
    ),
]


@app.command()
def preprocess(
    ctx: typer.Context,
    seed: Annotated[int | None, typer.Option(help="Seed of the user split.")] = None,
    min_user_items: MinUserItemsOption = None,
    min_item_users: MinItemUsersOption = None,
    min_owners: MinOwnersOption = None,
    json_output: JsonOption = False,
) -> None:
    """Turn play histories and the catalog into processed/ (items, users, interactions, split).

    With no inputs configured it uses the bundled data: steam-200k and the 2025 catalog.

    Example: gamerec preprocess --min-user-items 10
    """
    from gamerec import pipeline

    settings = _options(ctx).settings(
        "preprocess",
        seed=seed,
        min_user_items=min_user_items,
        min_item_users=min_item_users,
        min_owners=min_owners,
    )
    with render.StageProgress() as progress:
        summary = pipeline.preprocess(settings, progress=progress)
    render.result(summary, json_output, render.preprocess_summary)


@app.command()
def index(
    ctx: typer.Context,
    kind: Annotated[
        Literal["auto", "flat", "hnsw", "ivf"] | None,
        typer.Option(
            "--kind", help="auto (exact up to index.exact_max_items, HNSW above), flat, hnsw, ivf."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Build the FAISS index of the trained model's game embeddings into index/.

    Reports the build time and the index's recall@20 against exact search.

    Example: gamerec index --kind hnsw
    """
    from gamerec import pipeline

    settings = _options(ctx).settings("index", kind=kind)
    with render.StageProgress() as progress:
        summary = pipeline.build_index(settings, progress=progress)
    render.result(summary, json_output, render.index_summary)


@config_app.command("show")
def config_show(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Print the effective settings and where each value came from.

    Example: GAMEREC_TRAIN__EPOCHS=5 gamerec config show --json
    """
    rows = _options(ctx).settings().to_display()
    if json_output:
        render.print_json(
            {name: {"value": value, "source": source} for name, value, source in rows}
        )
    else:
        render.config_table(rows)


def _fail_if_any(failed: dict[str, str], what: str) -> None:
    """Print each failure and exit 1, so scripts notice an incomplete fetch."""
    from gamerec.errors import FetchError

    if failed:
        render.failures(failed.values())
        raise FetchError(
            f"{len(failed)} {what} failed after retries (listed above); run the command again to "
            "retry them, everything else is saved"
        )


@fetch_app.command("steamspy")
def fetch_steamspy(
    ctx: typer.Context,
    pages: Annotated[
        int | None,
        typer.Option(help="Fetch only the first N `all` pages (default: until the empty page)."),
    ] = None,
    details: Annotated[
        int | None,
        typer.Option(help="Fetch appdetails (genres, tags) for the N most-owned games."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Crawl SteamSpy's catalog into raw/steamspy, politely and resumably.

    Keeps SteamSpy's limits: one `all` page a minute, other requests one a second.

    Retries transient failures; a re-run skips whatever is already saved.

    Example: gamerec fetch steamspy --pages 2 --details 100
    """
    from gamerec import pipeline

    settings = _options(ctx).settings("fetch", pages=pages, details=details)
    with render.StageProgress() as progress:
        summary = pipeline.fetch_steamspy(settings, progress=progress)
    render.result(summary, json_output, render.fetch_steamspy_summary)
    _fail_if_any(summary.failed, "requests")


@fetch_app.command("store")
def fetch_store(
    ctx: typer.Context,
    details: Annotated[
        int | None,
        typer.Option(help="Fetch the N most-owned games of the catalog (default 1000)."),
    ] = None,
    appids: Annotated[
        list[str] | None,
        typer.Option(help="Fetch these apps instead: 1086940,1245620 (repeatable)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Fetch the Steam store's appdetails (kind, base game, release date) into raw/store.

    Asks for the most-owned games of the catalog first: processed/ once preprocess ran, else
    raw/steamspy pages, else the bundled catalog. One request every fetch.store_interval_s
    (1.5 s: the store allows about 200 in 5 minutes); a re-run skips what is saved.

    Example: gamerec fetch store --details 200

    Then add [[preprocess.inputs]] kind = "store", path = "gamerec-data/raw/store".
    """
    from gamerec import pipeline

    settings = _options(ctx).settings("fetch", store_details=details)
    with render.StageProgress() as progress:
        summary = pipeline.fetch_store(settings, appids=appids, progress=progress)
    render.result(summary, json_output, render.fetch_store_summary)
    _fail_if_any(summary.failed, "requests")


@fetch_app.command("owned")
def fetch_owned(
    ctx: typer.Context,
    steamid: Annotated[
        list[str] | None,
        typer.Option("--steamid", help="A SteamID64 (17 digits); repeat for several."),
    ] = None,
    steamids_file: Annotated[
        Path | None,
        typer.Option("--steamids", help="A file with one SteamID64 per line (# comments)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Fetch players' game libraries from the Steam Web API into raw/steam/owned.

    Needs GAMEREC_STEAM_API_KEY, which is never printed or stored.

    Private profiles are reported and skipped; calls count against fetch.daily_limit per UTC day.

    Example: GAMEREC_STEAM_API_KEY=... gamerec fetch owned --steamid 76561197960287930
    """
    from gamerec import pipeline
    from gamerec.dataio.steamweb import read_steamids

    steamids = list(steamid or [])
    if steamids_file is not None:
        steamids.extend(read_steamids(steamids_file))
    settings = _options(ctx).settings()
    with render.StageProgress() as progress:
        summary = pipeline.fetch_owned(settings, steamids, progress=progress)
    render.result(summary, json_output, render.fetch_owned_summary)
    _fail_if_any(summary.failed, "libraries")


@app.command()
def train(
    ctx: typer.Context,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may end sooner).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batching.")] = None,
    device: Annotated[
        Literal["auto", "cpu", "cuda"] | None, typer.Option(help="Torch device.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Train the two-tower model on processed/ and write model/.

    Early-stops on validation NDCG@20, keeps the best epoch, resumes after an interruption.

    Example: gamerec train --epochs 20 --threads 2

    Across processes: torchrun --nproc-per-node 2 -m gamerec train (rank 0 reports and writes).
    """
    from gamerec import pipeline

    settings = _options(ctx).settings(
        "train", epochs=epochs, seed=seed, device=device, threads=threads
    )
    if settings.distributed.rank != 0:  # torchrun's other workers: rank 0 speaks for all
        pipeline.train(settings)
        return
    with render.StageProgress() as progress:  # no bar before training starts
        summary = pipeline.train(settings, progress=progress)
    render.result(summary, json_output, render.train_summary)


def _split_list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


#: what `gamerec recommend` is asked about: the fields of the server's POST /recommend
UserOption = Annotated[str | None, typer.Option("--user", "-u", help="A user id from the data.")]
PlayedOption = Annotated[
    str | None, typer.Option(help="Games played, as appid:minutes pairs: 620:1200,400:300.")
]
GameOption = Annotated[
    list[str] | None,
    typer.Option(
        "--game",
        "-G",
        help="A game owned, by name or appid; repeat it: --game Hades --game 'Dead Cells'.",
    ),
]
LibraryOption = Annotated[
    Path | None, typer.Option(help="A Steam Web API GetOwnedGames JSON file.")
]
GenresOption = Annotated[
    list[str] | None, typer.Option("--genres", "-g", help="Only these genres (rpg,action).")
]
AchievementsOption = Annotated[
    str | None, typer.Option(help="Unlocked achievements as appid:count pairs.")
]


@app.command()
def recommend(
    ctx: typer.Context,
    user: UserOption = None,
    played: PlayedOption = None,
    game: GameOption = None,
    library: LibraryOption = None,
    genres: GenresOption = None,
    achievements: AchievementsOption = None,
    top_k: TopKOption = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Recommend for every known user into --out.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --all: recs.parquet or recs.jsonl.")
    ] = None,
    include_owned: Annotated[
        bool, typer.Option(help="Allow games the player already owns.")
    ] = False,
    include_dlc: Annotated[
        bool, typer.Option(help="Allow DLC of base games the player owns.")
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(
            "--since", min=1970, max=2100, help="Only games released in or after this year."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Recommend games for a known user, the games a player owns (by name, or appid:minutes),
    or a Steam library.

    Example: gamerec recommend --user 76767 --genres rpg --top-k 5

    Example: gamerec recommend --game Hades --game "Slay the Spire"
    """
    from gamerec import answers as stages
    from gamerec.dataio.history import History
    from gamerec.errors import UsageError

    settings = _options(ctx).settings()
    if all_users:
        if out is None:
            raise UsageError("--all needs --out recs.parquet or --out recs.jsonl")
        with render.StageProgress() as progress:
            summary = stages.recommend_all(settings, out, k=top_k, progress=progress)
        render.result(summary, json_output, render.recommend_all_summary)
        return
    answers = stages.recommend(
        settings,
        user_id=user,
        history=History.from_command_line(played, achievements),
        library=library,
        genres=_split_list(genres),
        k=top_k,
        exclude_owned=not include_owned,
        include_dlc=include_dlc,
        released_since=since,
        games=game,
    )
    who = f"user {user}" if user else "you"
    render.result(
        answers,
        json_output,
        lambda a: render.recommendation_answer(f"Recommended for {who}", a),
    )


@app.command()
def users(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many ids to list.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List user ids gamerec knows (those with the most games first), for recommend --user.

    Example: gamerec users --limit 5
    """
    from gamerec import answers as stages

    summary = stages.users(_options(ctx).settings(), limit)
    render.result(summary, json_output, render.users_table)


@app.command()
def similar(
    ctx: typer.Context,
    game: Annotated[str, typer.Argument(help="A game name (case-insensitive) or appid.")],
    top_k: TopKOption = None,
    json_output: JsonOption = False,
) -> None:
    """Games similar to GAME, by the model's item embeddings.

    Example: gamerec similar "Portal 2" --top-k 5
    """
    from gamerec import answers as stages

    answers = stages.similar(_options(ctx).settings(), game, k=top_k)
    render.result(answers, json_output, lambda a: render.recommendations(f"Similar to {game}", a))


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0: any free).")] = None,
    processes: Annotated[
        str | None,
        typer.Option(
            help='Worker processes sharing the port: a number or "auto" (default: the cores, '
            "at most 8)."
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info (one line per request), warning or error.")
    ] = None,
) -> None:
    """Serve recommendations over HTTP: a page at /, /recommend, /similar, /items, /health.

    Stops cleanly on SIGTERM or Ctrl-C; SIGHUP reloads the model and index.

    The token comes from settings (GAMEREC_SERVE__TOKEN), never from the command line.

    Example: gamerec serve --host 127.0.0.1 --port 8000
    """
    from gamerec import pipeline

    settings = _options(ctx).settings(
        "serve", host=host, port=port, processes=processes, log_level=log_level
    )
    render.serve_summary(pipeline.serve(settings, progress=render.progress_line))


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    protocol: Annotated[
        Literal["sg", "loo", "cold"] | None,
        typer.Option(
            "--protocol",
            "-p",
            help="sg: 20% of each test user's games held out (P-SG); "
            "loo: the most-played game held out (P-LOO); cold: P-SG with 20% of the games "
            "hidden from training as new games (P-COLD).",
        ),
    ] = None,
    k: Annotated[
        list[int] | None,
        typer.Option("--k", metavar="K", help="Cut-off K; repeat for several (10, 20, 50)."),
    ] = None,
    bootstrap: Annotated[
        int | None, typer.Option(help="Bootstrap resamples for the 95% CIs (0: none).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Evaluate the baselines and the trained model side by side on the test users.

    Popularity, item-kNN and EASE (and the two-tower model once trained), with Recall, NDCG,
    Precision, MAP, hit rate, coverage and popularity bias; writes eval/report.json.

    Example: gamerec eval --protocol loo --k 10 --k 20
    """
    from gamerec import pipeline

    settings = _options(ctx).settings("eval", protocol=protocol, k=k or None, bootstrap=bootstrap)
    with render.StageProgress() as progress:
        report = pipeline.evaluate(settings, progress=progress)
    render.result(report, json_output, render.eval_report)


@app.command()
def demo(
    ctx: typer.Context,
    epochs: Annotated[int | None, typer.Option(help="Maximum training epochs.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Run everything on the bundled steam-200k data, then show recommendations.

    preprocess -> train -> index -> eval, then answers for a test user (from the games they
    kept, so the held-out ones can be checked) and for a new user who only likes RPGs.

    Example: gamerec demo
    """
    from gamerec import pipeline

    settings = _options(ctx).settings("train", epochs=epochs)
    with render.StageProgress() as progress:
        report = pipeline.demo(settings, progress=progress)
    render.result(report, json_output, render.demo_report)


def main() -> None:
    """The ``gamerec`` command: the app, then :func:`exit_now` with its exit status."""
    try:
        app()
    except SystemExit as done:
        exit_now(done.code)
        raise


def exit_now(code: object) -> None:
    """End the process at once when nothing is left to run: the streams flushed and the
    ``atexit`` functions run, as a normal exit does, without Python's teardown, which frees
    every object of every imported module one by one (0.1-0.2 s of a one-shot answer, most of
    it pydantic's). Returns, for the normal exit, when another thread still runs or the status
    is not a number."""
    if code is not None and not isinstance(code, int):
        return
    if threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit says so as it would
        return
    atexit._run_exitfuncs()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
