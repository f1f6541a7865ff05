"""The ``gamerec`` command: parse -> settings -> ONE pipeline/runtime call -> render.

Heavy libraries (torch, faiss, pandas) are imported inside commands, never here, so
``gamerec --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from gamerec.errors import GamerecError

if TYPE_CHECKING:
    from gamerec.settings import Settings

__all__ = ["app", "main"]

console = Console()
err_console = Console(stderr=True)


class _GamerecGroup(typer.core.TyperGroup):
    """Turns every GamerecError into ``Error: <message>`` on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GamerecError as exc:
            err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False, soft_wrap=True)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted; completed work is kept, run the command again.")
            raise click.exceptions.Exit(130) from None


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
    table.add_row("games with genres / tags", f"{summary['items_with_genres']:,} / "
                  f"{summary['items_with_tags']:,}")
    groups = summary["groups"]
    table.add_row(
        "split (users)",
        f"train {groups['train']:,} · valid {groups['valid']:,} · test {groups['test']:,}",
    )
    table.add_row("written to", summary.get("output", ""))
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
        table.add_row(name, json.dumps(value, default=str), f"[{style}]{source}[/]")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
