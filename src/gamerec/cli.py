"""The ``gamerec`` command: parse -> settings -> ONE pipeline/runtime call -> render.

Heavy libraries (torch, faiss, pandas) are imported inside commands, never here, so
``gamerec --help`` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gamerec.errors import GamerecError

if TYPE_CHECKING:
    from gamerec.settings import Settings

__all__ = ["app", "main"]

console = Console()
err_console = Console(stderr=True)


class _GamerecGroup(typer.core.TyperGroup):
    """Turns every GamerecError into ``Error: <message>`` on stderr and exit code 1."""

    # typer.Exit, not click's: recent Typer vendors its own click and only knows its own Exit.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GamerecError as exc:
            if not exc.already_reported:
                # messages quote user data (paths, CSV headers): never parse them as markup
                err_console.print(
                    f"[bold red]Error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True
                )
            if exc.exit_at_once:  # what was written is written; teardown could hang
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted; completed work is kept, run the command again.")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="gamerec",
    cls=_GamerecGroup,
    help="Recommend Steam games: fetch data, preprocess, train, index, evaluate, recommend, serve."
    "\n\nStart with `gamerec demo`, which runs everything on the bundled dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(cls=_GamerecGroup, help="Inspect the effective settings.")
app.add_typer(config_app, name="config")
fetch_app = typer.Typer(
    cls=_GamerecGroup,
    help="Download raw data politely and resumably: SteamSpy's catalog, Steam libraries.",
    no_args_is_help=True,
)
app.add_typer(fetch_app, name="fetch")


class _State:
    config: Path | None = None
    data_dir: Path | None = None


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: ./gamerec.toml if present)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", help="Workspace folder (default: ./gamerec-data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def _root(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    _State.config = config
    _State.data_dir = data_dir


def _settings(**overrides: Any) -> Settings:
    from gamerec.settings import Settings

    if _State.data_dir is not None:
        overrides.setdefault("data_dir", _State.data_dir)
    return Settings.load(config=_State.config, overrides=overrides)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _progress_printer(stage: str, message: str, fraction: float | None) -> None:
    err_console.print(f"[dim]{stage}:[/] {message}", highlight=False)


def _bar_chart(title: str, rows: list[list[Any]]) -> Table:
    table = Table(title=title, show_header=False, box=None, title_justify="left")
    peak = max((count for _, count in rows), default=0) or 1
    for label, count in rows:
        bar = "█" * max(1 if count else 0, round(28 * count / peak))
        table.add_row(str(label), f"[cyan]{bar}[/]", f"{count:,}")
    return table


def render_preprocess_summary(summary: dict[str, Any]) -> None:
    before = summary["before_filtering"]
    table = Table(title="Preprocessed", show_header=False, title_justify="left")
    table.add_row("before filtering", f"{before['users']:,} users, {before['games']:,} games")
    if summary.get("duplicate_purchases"):
        table.add_row("duplicate purchase rows removed", f"{summary['duplicate_purchases']:,}")
    if summary["titles"]:
        table.add_row(
            "titles matched to an appid",
            f"{summary['titles_matched']:,} of {summary['titles']:,} "
            f"({summary['title_match_rate']:.1%})",
        )
    table.add_row("users", f"{summary['users']:,}")
    table.add_row("games", f"{summary['items']:,}")
    table.add_row("interactions", f"{summary['interactions']:,}")
    table.add_row("density", f"{summary['density']:.4%}")
    table.add_row(
        "games with genres / tags",
        f"{summary['items_with_genres']:,} / {summary['items_with_tags']:,}",
    )
    groups = summary["groups"]
    table.add_row(
        "split (users)",
        f"train {groups['train']:,} · valid {groups['valid']:,} · test {groups['test']:,}",
    )
    table.add_row("written to", escape(summary.get("output", "")))
    console.print(table)
    for title, rows in summary["histograms"].items():
        console.print(_bar_chart(title, rows))


@app.command()
def preprocess(
    seed: Annotated[int | None, typer.Option(help="Seed of the user split.")] = None,
    min_user_items: Annotated[
        int | None, typer.Option(help="Drop users owning fewer games (default 5).")
    ] = None,
    min_item_users: Annotated[
        int | None, typer.Option(help="Drop games owned by fewer users (default 2).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Turn play histories into processed/ (items, users, interactions, split).

    With no inputs configured it uses the bundled steam-200k demo dataset.

    Example: gamerec preprocess --min-user-items 10
    """
    from gamerec import pipeline

    settings = _settings(
        **{
            "preprocess.seed": seed,
            "preprocess.min_user_items": min_user_items,
            "preprocess.min_item_users": min_item_users,
        }
    )
    summary = pipeline.preprocess(settings, progress=_progress_printer)
    if json_output:
        _print_json(summary)
    else:
        render_preprocess_summary(summary)


def render_index_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Index", show_header=False, title_justify="left")
    table.add_row("kind", summary["kind"])
    params = {k: v for k, v in summary["params"].items() if k != "kind"}
    if params:
        table.add_row("parameters", ", ".join(f"{k}={v}" for k, v in params.items()))
    table.add_row("items", f"{summary['items']:,}")
    table.add_row("dimension", str(summary["dim"]))
    table.add_row("build time", f"{summary['build_seconds']:.2f} s")
    table.add_row(
        "recall@20 vs exact",
        f"{summary['recall_at_20']:.4f} ({summary['recall_queries']:,} item queries)",
    )
    table.add_row("written to", escape(summary["output"]))
    console.print(table)


@app.command()
def index(
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

    settings = _settings(**{"index.kind": kind})
    summary = pipeline.build_index(settings, progress=_progress_printer)
    if json_output:
        _print_json(summary)
    else:
        render_index_summary(summary)


@config_app.command("show")
def config_show(json_output: JsonOption = False) -> None:
    """Print the effective settings and where each value came from.

    Example: GAMEREC_TRAIN__EPOCHS=5 gamerec config show --json
    """
    settings = _settings()
    rows = settings.to_display()
    if json_output:
        _print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    table = Table(title="gamerec settings", title_justify="left")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for name, value, source in rows:
        style = "dim" if source == "default" else "bold"
        table.add_row(name, escape(json.dumps(value, default=str)), f"[{style}]{escape(source)}[/]")
    console.print(table)


class _ProgressBars:
    """One rich progress bar per pipeline stage on stderr, with an ETA and the latest message.

    Called like a :data:`gamerec.pipeline.Progress`: a stage's first event adds its bar; a
    ``None`` fraction leaves the bar where it is (or pulsing, when the total is unknown).
    """

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskID,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(text_format_no_percentage=""),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[message]}", markup=False),
            console=err_console,
            # SteamSpy's `all` pages come a minute apart: estimate speed over a longer window
            speed_estimate_period=600,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _ProgressBars:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def __call__(self, stage: str, message: str, fraction: float | None) -> None:
        task = self._tasks.get(stage)
        if task is None:
            total = None if fraction is None else 1.0
            task = self._progress.add_task(stage, total=total, message=message)
            self._tasks[stage] = task
        if fraction is None:
            self._progress.update(task, message=message)
        else:
            self._progress.update(task, total=1.0, completed=fraction, message=message)


def _raise_if_failed(failed: dict[str, str], what: str) -> None:
    """Print each failure and exit 1, so scripts notice an incomplete fetch."""
    from gamerec.errors import FetchError

    if not failed:
        return
    for message in failed.values():
        err_console.print(f"[red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise FetchError(
        f"{len(failed)} {what} failed after retries (listed above); run the command again to "
        "retry them, everything else is saved"
    )


def render_fetch_steamspy_summary(summary: dict[str, Any]) -> None:
    pages, details = summary["pages"], summary["appdetails"]
    table = Table(title="Fetched from SteamSpy", title_justify="left")
    for column in ("", "fetched", "skipped (saved before)", "not found", "failed"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row(
        "all pages", f"{pages['fetched']:,}", f"{pages['skipped']:,}", "", f"{len(pages['failed'])}"
    )
    table.add_row(
        "appdetails",
        f"{details['fetched']:,}",
        f"{details['skipped']:,}",
        f"{details['not_found']:,}",
        f"{len(details['failed'])}",
    )
    console.print(table)
    end = pages["end_page"]
    console.print(
        f"{pages['apps']:,} apps on the saved pages; "
        + (
            f"page {end} came back empty: the catalog is complete"
            if end is not None
            else "the end of the catalog is not reached yet"
        )
        + f"; written to {escape(summary['output'])}",
        highlight=False,
    )


@fetch_app.command("steamspy")
def fetch_steamspy(
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

    settings = _settings(**{"fetch.pages": pages, "fetch.details": details})
    with _ProgressBars() as progress:
        summary = pipeline.fetch_steamspy(settings, progress=progress)
    if json_output:
        _print_json(summary)
    else:
        render_fetch_steamspy_summary(summary)
    _raise_if_failed({**summary["pages"]["failed"], **summary["appdetails"]["failed"]}, "requests")


def render_fetch_owned_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Fetched Steam libraries", show_header=False, title_justify="left")
    table.add_row("fetched", f"{summary['fetched']:,}")
    table.add_row("skipped (saved before)", f"{summary['skipped']:,}")
    table.add_row("private profiles (skipped)", f"{summary['private']:,}")
    table.add_row("failed", f"{len(summary['failed']):,}")
    table.add_row(
        "API calls today (UTC)", f"{summary['calls_today']:,} of {summary['daily_limit']:,}"
    )
    table.add_row("written to", escape(summary["output"]))
    console.print(table)
    for steamid in summary["private_steamids"]:
        err_console.print(f"private profile, no library shown: {steamid}", highlight=False)


@fetch_app.command("owned")
def fetch_owned(
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
    settings = _settings()
    with _ProgressBars() as progress:
        summary = pipeline.fetch_owned(settings, steamids, progress=progress)
    if json_output:
        _print_json(summary)
    else:
        render_fetch_owned_summary(summary)
    _raise_if_failed(summary["failed"], "libraries")


def _epoch_display(total_epochs: int) -> tuple[Any, Any]:
    """A rich progress bar over epochs; returns (progress, on_epoch callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]training[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        transient=False,
    )
    task = progress.add_task("train", total=total_epochs, status="")

    def on_epoch(report: Any) -> None:
        star = " [green]★ best[/]" if report.best else ""
        progress.update(
            task,
            completed=report.epoch + 1,
            status=f"loss {report.loss:.3f} · {report.examples_per_s:,.0f} users/s · "
            f"valid NDCG@20 {report.valid_metric:.4f}{star}",
        )

    return progress, on_epoch


def render_train_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Trained", show_header=False, title_justify="left")
    table.add_row("best epoch", f"{summary['best_epoch'] + 1} of {summary['epochs_run']} run")
    table.add_row("valid NDCG@20", f"{summary['valid_ndcg_at_20']:.4f}")
    table.add_row("users x games", f"{summary['users']:,} x {summary['items']:,}")
    table.add_row("softmax", "sampled (logQ)" if summary["sampled_softmax"] else "full catalog")
    if summary.get("resumed_from_epoch") is not None:
        table.add_row("resumed at epoch", str(summary["resumed_from_epoch"] + 1))
    table.add_row("seconds", f"{summary['seconds']:.1f}")
    table.add_row("written to", summary.get("output", ""))
    console.print(table)


@app.command()
def train(
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may end sooner).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batching.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Train the two-tower model on processed/ and write model/.

    Early-stops on validation NDCG@20, keeps the best epoch, resumes after an interruption.

    Example: gamerec train --epochs 20 --threads 2

    Across processes: torchrun --nproc-per-node 2 -m gamerec train (rank 0 reports and writes).
    """
    from gamerec import pipeline

    settings = _settings(
        **{
            "train.epochs": epochs,
            "train.seed": seed,
            "train.device": device,
            "train.threads": threads,
        }
    )
    if settings.distributed.rank != 0:  # torchrun's other workers: rank 0 speaks for all
        pipeline.train(settings)
        return
    display, on_epoch = _epoch_display(settings.train.epochs)
    with display:
        summary = pipeline.train(settings, progress=_progress_printer, on_epoch=on_epoch)
    if json_output:
        _print_json(summary)
    else:
        render_train_summary(summary)


def _split_list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def render_recommendations(title: str, answers: list[dict[str, Any]]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("game")
    table.add_column("appid", justify="right")
    table.add_column("genres")
    table.add_column("score", justify="right")
    table.add_column("why", style="dim")
    for rank, answer in enumerate(answers, 1):
        table.add_row(
            str(rank),
            answer["name"],
            str(answer["appid"] or ""),
            ", ".join(answer["genres"][:3]),
            f"{answer['score']:.3f}",
            answer["reason"],
        )
    console.print(table)


@app.command()
def recommend(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="A user id from the data.")
    ] = None,
    played: Annotated[
        str | None, typer.Option(help="Games played, as appid:minutes pairs: 620:1200,400:300.")
    ] = None,
    library: Annotated[
        Path | None, typer.Option(help="A Steam Web API GetOwnedGames JSON file.")
    ] = None,
    genres: Annotated[
        list[str] | None, typer.Option("--genres", "-g", help="Only these genres (rpg,action).")
    ] = None,
    achievements: Annotated[
        str | None, typer.Option(help="Unlocked achievements as appid:count pairs.")
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="How many games.")] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Recommend for every known user into --out.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --all: recs.parquet or recs.jsonl.")
    ] = None,
    include_owned: Annotated[
        bool, typer.Option(help="Allow games the player already owns.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Recommend games for a known user, a list of played games, or a Steam library.

    Example: gamerec recommend --user 76767 --genres rpg --top-k 5
    """
    from gamerec import pipeline
    from gamerec.errors import InvalidRequestError
    from gamerec.runtime.recommender import parse_played

    settings = _settings()
    if all_users:
        if out is None:
            raise InvalidRequestError("--all needs --out recs.parquet or --out recs.jsonl")
        summary = pipeline.recommend_all(settings, out, k=top_k, progress=_progress_printer)
        if json_output:
            _print_json(summary)
        else:
            console.print(
                f"Wrote {summary['rows']:,} recommendations for {summary['users']:,} users to "
                f"{summary['out']} in {summary['seconds']:.1f} s"
            )
        return
    answers = pipeline.recommend(
        settings,
        user_id=user,
        played=parse_played(played) if played else None,
        library=library,
        genres=_split_list(genres),
        achievements={a: int(n) for a, n in parse_played(achievements).items()}
        if achievements
        else None,
        k=top_k,
        exclude_owned=not include_owned,
    )
    if json_output:
        _print_json(answers)
    else:
        who = f"user {user}" if user else "you"
        render_recommendations(f"Recommended for {who}", answers)


@app.command()
def similar(
    game: Annotated[str, typer.Argument(help="A game name (case-insensitive) or appid.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="How many games.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Games similar to GAME, by the model's item embeddings.

    Example: gamerec similar "Portal 2" --top-k 5
    """
    from gamerec import pipeline

    answers = pipeline.similar(_settings(), game, k=top_k)
    if json_output:
        _print_json(answers)
    else:
        render_recommendations(f"Similar to {game}", answers)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0: any free).")] = None,
    processes: Annotated[
        int | None, typer.Option(help="Worker processes sharing the port (default 1).")
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

    settings = _settings(
        **{
            "serve.host": host,
            "serve.port": port,
            "serve.processes": processes,
            "serve.log_level": log_level,
        }
    )
    summary = pipeline.serve(settings, progress=_progress_printer)
    err_console.print(
        f"Stopped after {summary['requests']:,} requests in {summary['uptime_s']:.0f} s",
        highlight=False,
    )


def _metric_cell(metric: dict[str, Any], digits: int = 3) -> str:
    """``mean ±half-width`` of the 95% CI (just the mean when there is no CI)."""
    mean, ci = metric["mean"], metric.get("ci")
    if not ci:
        return f"{mean:.{digits}f}"
    half = f"{(ci[1] - ci[0]) / 2:.{digits}f}"
    return f"{mean:.{digits}f} ±{half[1:] if half.startswith('0.') else half}"


def _ranking_table(title: str, ks: list[int]) -> Table:
    """A table with a method column and Recall@K, NDCG@K for each cut-off."""
    from rich import box

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("method")
    for k in ks:
        table.add_column(f"Recall@{k}", justify="right")
        table.add_column(f"NDCG@{k}", justify="right")
    return table


def _ranking_cells(name: str, metrics: dict[str, Any], ks: list[int]) -> list[str]:
    cells = [name]
    for k in ks:
        cells += [_metric_cell(metrics[f"recall@{k}"]), _metric_cell(metrics[f"ndcg@{k}"])]
    return cells


def render_eval_report(report: dict[str, Any]) -> None:
    ks = report["ks"]
    main_k = 20 if 20 in ks else ks[-1]
    table = _ranking_table(
        f"{report['protocol_name']} · {report['users_evaluated']:,} test users · "
        f"{report['n_items']:,} games",
        ks,
    )
    table.add_column(f"Coverage@{main_k}", justify="right")
    table.add_column(f"Pop%@{main_k}", justify="right")
    table.add_column("fit s", justify="right")
    for name, method in report["methods"].items():
        metrics = method["metrics"]
        cells = _ranking_cells(name, metrics, ks)
        cells.append(_metric_cell(metrics[f"coverage@{main_k}"]))
        cells.append(_metric_cell(metrics[f"pop_pct@{main_k}"], digits=1))
        fit = method["fit_seconds"]
        cells.append("-" if fit is None else f"{fit:.1f}")
        table.add_row(*(escape(cell) for cell in cells))
    # off a terminal rich assumes 80 columns: print wide enough for three cut-offs instead
    out = console if console.is_terminal else Console(file=sys.stdout, width=160)
    out.print(table)
    _print_versus(out, report["methods"], f"ndcg@{main_k}", lambda method: method)
    if "new_games" in report:
        _render_new_games(out, report, ks, main_k)
    boot = report["bootstrap"]
    notes = []
    if boot["resamples"]:
        notes.append(
            f"± is half the 95% bootstrap CI ({boot['resamples']:,} resamples of the test users, "
            f"seed {boot['seed']}); split seed {report.get('split_seed')}."
        )
    notes.append(
        f"Pop% = mean popularity percentile, among training users, of the top {main_k} "
        "(100 = the most owned game); Coverage = share of the catalog recommended to anyone."
    )
    if report.get("ease_lambda") is not None:
        notes.append(f"EASE lambda = {report['ease_lambda']:g}, chosen on the validation users.")
    if report.get("users_skipped"):
        notes.append(f"{report['users_skipped']:,} test users skipped: {report['skip_reason']}.")
    if report.get("model") and report["model"] != "evaluated":
        notes.append(f"two-tower model: {report['model']}")
    if report.get("output"):
        notes.append(f"Report written to {report['output']}")
    for note in notes:
        out.print(escape(note), style="dim", highlight=False)


def _print_versus(
    out: Console, methods: dict[str, Any], key: str, section: Callable[[dict], dict | None]
) -> None:
    """One line per paired difference of ``key`` in ``section(method)["versus"]``."""
    label = key.replace("ndcg", "NDCG").replace("recall", "Recall")
    for name, method in methods.items():
        for reference, metrics in ((section(method) or {}).get("versus") or {}).items():
            difference = metrics.get(key)
            if not difference or not difference.get("ci"):
                continue
            low, high = difference["ci"]
            verdict = "ahead" if low > 0 else "behind" if high < 0 else "no clear difference"
            out.print(
                escape(
                    f"{name} - {reference}: {label} {difference['mean']:+.3f} "
                    f"[{low:+.3f}, {high:+.3f}], paired over the same users: {verdict}"
                ),
                highlight=False,
            )


def _render_new_games(out: Console, report: dict[str, Any], ks: list[int], main_k: int) -> None:
    """P-COLD: the same methods over the new-game targets alone."""
    new = report["new_games"]
    table = _ranking_table(
        f"new games only · {new['games']:,} games hidden from training · "
        f"{new['targets']:,} targets of {new['users_with_new_targets']:,} test users",
        ks,
    )
    for name, method in report["methods"].items():
        cells = _ranking_cells(name, method["new_games"]["metrics"], ks)
        table.add_row(*(escape(cell) for cell in cells))
    out.print(table)
    _print_versus(
        out, report["methods"], f"recall@{main_k}", lambda method: method.get("new_games")
    )
    if {"itemknn", "ease"} & set(report["methods"]):
        out.print(
            "item-kNN and EASE score a new game 0 (no one in their training data owns it).",
            style="dim",
            highlight=False,
        )
    if "popularity" in report["methods"]:
        out.print("popularity ranks by SteamSpy owners here.", style="dim", highlight=False)


@app.command("eval")
def evaluate(
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

    # eval.protocol (a setting) offers sg and loo; cold is asked for here only
    settings_protocol = None if protocol == "cold" else protocol
    settings = _settings(
        **{"eval.protocol": settings_protocol, "eval.k": k or None, "eval.bootstrap": bootstrap}
    )
    report = pipeline.evaluate(settings, protocol, progress=_progress_printer)
    if json_output:
        _print_json(report)
    else:
        render_eval_report(report)


@app.command()
def demo(
    epochs: Annotated[int | None, typer.Option(help="Maximum training epochs.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Run everything on the bundled steam-200k data, then show recommendations.

    preprocess -> train -> index -> eval, then answers for a test user (from the games they
    kept, so the held-out ones can be checked) and for a new user who only likes RPGs.

    Example: gamerec demo
    """
    from gamerec import pipeline

    settings = _settings(**{"train.epochs": epochs})
    display, on_epoch = _epoch_display(settings.train.epochs)
    with display:
        report = pipeline.demo(settings, progress=_progress_printer, on_epoch=on_epoch)
    if json_output:
        _print_json(report)
        return
    render_preprocess_summary(report["preprocess"])
    render_train_summary(report["train"])
    render_index_summary(report["index"])
    render_eval_report(report["eval"])
    sample = report["sample_user"]
    render_recommendations(
        f"Test user {sample['user_id']}: {sample['played']} games given, "
        f"{sample['held_out_found']} of {sample['held_out']} held-out games found in the top 10",
        sample["recommendations"],
    )
    new_user = report["new_user"]
    render_recommendations(
        f"A new user who likes {', '.join(new_user['genres'])}", new_user["recommendations"]
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
