"""What the ``gamerec`` command shows: rich tables, JSON for scripts, progress on stderr.

Answers go to stdout, progress and problems to stderr. Every string that comes from data or from
the user (game names, reasons, paths, messages that quote them) reaches rich as a
:class:`~rich.text.Text` or escaped, never as markup: a game called ``Evil [/bold] Game`` is
printed as it is, and cannot crash the command or inject a terminal link.

Only rich and the standard library are imported here, so ``gamerec --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from gamerec.results import (
        DemoResult,
        EvalResult,
        FetchOwnedResult,
        FetchSteamspyResult,
        FetchStoreResult,
        IndexResult,
        PreprocessResult,
        ServeResult,
        TrainResult,
        UsersResult,
    )
    from gamerec.runtime.batch import BatchSummary
    from gamerec.runtime.recommender import Recommendation, Recommendations

__all__ = [
    "Renderer",
    "StageProgress",
    "config_table",
    "demo_report",
    "error",
    "eval_report",
    "failures",
    "fetch_owned_summary",
    "fetch_steamspy_summary",
    "fetch_store_summary",
    "index_summary",
    "interrupted",
    "preprocess_summary",
    "print_json",
    "progress_line",
    "recommend_all_summary",
    "recommendations",
    "result",
    "serve_summary",
    "stderr",
    "stdout",
    "train_summary",
    "users_table",
]


def stdout() -> Console:
    """A console on the current ``sys.stdout`` (a test runner may have swapped it)."""
    return Console(file=sys.stdout, highlight=False)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


def _text(value: object) -> Text:
    """``value`` as literal text: brackets in it are characters, not markup."""
    return Text("" if value is None else str(value))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def error(message: str) -> None:
    """``Error: <message>`` on stderr; messages quote user data (paths, CSV headers)."""
    stderr().print(Text.assemble(("Error:", "bold red"), " ", message), soft_wrap=True)


def interrupted() -> None:
    stderr().print("Interrupted; completed work is kept, run the command again.")


def progress_line(stage: str, message: str, fraction: float | None) -> None:
    """A :data:`gamerec.pipeline.Progress` that prints one dim line per event on stderr."""
    stderr().print(Text.assemble((f"{stage}:", "dim"), " ", message))


def failures(failed: Iterable[str]) -> None:
    for message in failed:
        stderr().print(Text.assemble(("failed:", "red"), " ", message), soft_wrap=True)


def _facts(title: str) -> Table:
    """A two-column table of facts about one run."""
    return Table(title=title, show_header=False, title_justify="left")


def _bar_chart(title: str, rows: list[list[Any]]) -> Table:
    table = Table(title=_text(title), show_header=False, box=None, title_justify="left")
    peak = max((count for _, count in rows), default=0) or 1
    for label, count in rows:
        bar = "█" * max(1 if count else 0, round(28 * count / peak))
        table.add_row(_text(label), Text(bar, style="cyan"), f"{count:,}")
    return table


def preprocess_summary(summary: PreprocessResult) -> None:
    before = summary.before_filtering
    table = _facts("Preprocessed")
    table.add_row("before filtering", f"{before['users']:,} users, {before['games']:,} games")
    if summary.duplicate_purchases:
        table.add_row("duplicate purchase rows removed", f"{summary.duplicate_purchases:,}")
    if summary.titles:
        table.add_row(
            "titles matched to an appid",
            f"{summary.titles_matched:,} of {summary.titles:,} ({summary.title_match_rate:.1%})",
        )
    table.add_row("users", f"{summary.users:,}")
    catalog = summary.catalog
    if catalog:
        table.add_row(
            "catalog games",
            f"{catalog['games']:,} ({catalog['games_with_players']:,} with players, "
            f"{catalog['games_without_players']:,} without)",
        )
        table.add_row("recommendable", f"{catalog['recommendable']:,}")
        for kind, count in catalog["not_recommendable"].items():
            examples = "; ".join(catalog["not_recommendable_examples"].get(kind, []))
            table.add_row(_text(f"  not recommended: {kind}"), _text(f"{count:,} ({examples})"))
        for reason, label in (
            ("below_min_owners", f"under {catalog['min_owners']:,} SteamSpy owners"),
            ("no_owners_figure", "no SteamSpy owners figure"),
        ):
            if catalog[reason]:
                examples = "; ".join(catalog[f"{reason}_examples"][:3])
                table.add_row(
                    _text(f"  left out: {label}"), _text(f"{catalog[reason]:,} ({examples})")
                )
        _sources_rows(table, catalog)
    else:
        table.add_row("games", f"{summary.items:,}")
    table.add_row("interactions", f"{summary.interactions:,}")
    table.add_row("density", f"{summary.density:.4%}")
    table.add_row(
        "games with genres / tags", f"{summary.items_with_genres:,} / {summary.items_with_tags:,}"
    )
    groups = summary.groups
    table.add_row(
        "split (users)",
        f"train {groups['train']:,} · valid {groups['valid']:,} · test {groups['test']:,}",
    )
    table.add_row("written to", _text(summary.output))
    console = stdout()
    console.print(table)
    for title, rows in summary.histograms.items():
        console.print(_bar_chart(title, rows))


def _sources_rows(table: Table, catalog: dict[str, Any]) -> None:
    """Which source decided the kinds and release years, and what the store inputs held."""
    if "kind_from" in catalog:
        shown = " · ".join(f"{source} {count:,}" for source, count in catalog["kind_from"].items())
        table.add_row("kind decided by", _text(shown))
    years = catalog.get("year_from")
    if years:
        shown = " · ".join(f"{source} {count:,}" for source, count in years.items())
        table.add_row("release year from", _text(shown))
        if catalog["recommendable_without_year"]:
            table.add_row(
                "  recommendable, no year",
                _text(
                    f"{catalog['recommendable_without_year']:,} (`gamerec fetch store` and a "
                    "store input give them the store's date)"
                ),
            )
    store = catalog.get("store")
    if store:
        table.add_row(
            "store records",
            f"{store['records']:,} used, {store['not_in_store']:,} apps not in the store",
        )
        if store["left_out"]:
            examples = "; ".join(store["left_out_examples"])
            table.add_row(
                "  left out: store records gamerec cannot read",
                _text(f"{store['left_out']:,} ({examples}); fix or delete them"),
            )
        if store["types_not_mapped"]:
            types = ", ".join(
                f"{name} {count:,}" for name, count in store["types_not_mapped"].items()
            )
            table.add_row("  store types left to the name rules", _text(types))
        if store["genre_ids_unknown"]:
            examples = "; ".join(store["genre_ids_unknown_examples"])
            table.add_row(
                "  records with genre ids gamerec does not know",
                _text(f"{store['genre_ids_unknown']:,} ({examples})"),
            )


def index_summary(summary: IndexResult) -> None:
    table = _facts("Index")
    table.add_row("kind", _text(summary.kind))
    params = {k: v for k, v in summary.params.items() if k != "kind"}
    if params:
        table.add_row("parameters", _text(", ".join(f"{k}={v}" for k, v in params.items())))
    table.add_row(
        "items", f"{summary.items:,} ({summary.trained:,} trained, {summary.mapped:,} mapped)"
    )
    table.add_row("dimension", str(summary.dim))
    table.add_row("build time", f"{summary.build_seconds:.2f} s")
    table.add_row(
        "recall@20 vs exact",
        f"{summary.recall_at_20:.4f} ({summary.recall_queries:,} item queries)",
    )
    table.add_row("written to", _text(summary.output))
    stdout().print(table)


def train_summary(summary: TrainResult) -> None:
    table = _facts("Trained")
    table.add_row("epochs", summary.ending())
    table.add_row("valid NDCG@20", f"{summary.valid_ndcg_at_20:.4f} (best epoch)")
    table.add_row("users x games", f"{summary.users:,} x {summary.items:,}")
    table.add_row("softmax", "sampled (logQ)" if summary.sampled_softmax else "full catalog")
    teacher = summary.teacher or {}
    if teacher.get("used"):
        table.add_row(
            "teacher",
            f"co-play (EASE λ {teacher['lambda']:g}), weight {teacher['weight']:g}, "
            f"temperature {teacher['temperature']:g}",
        )
    elif teacher.get("why") and teacher["why"] != "train.distill_weight is 0":
        table.add_row("teacher", _text(f"none: {teacher['why']}"))  # asked for, not given
    if summary.resumed_from_epoch is not None:
        table.add_row("resumed at epoch", str(summary.resumed_from_epoch + 1))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    table.add_row("written to", _text(summary.output))
    stdout().print(table)


def config_table(rows: list[tuple[str, Any, str]]) -> None:
    """``gamerec config show``: each setting, its value and where the value came from."""
    table = Table(title="gamerec settings", title_justify="left")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for name, value, source in rows:
        style = "dim" if source == "default" else "bold"
        table.add_row(_text(name), _text(json.dumps(value, default=str)), Text(source, style))
    stdout().print(table)


def fetch_steamspy_summary(summary: FetchSteamspyResult) -> None:
    pages, details = summary.pages, summary.appdetails
    table = Table(title="Fetched from SteamSpy", title_justify="left")
    for column in ("", "fetched", "skipped (saved before)", "not found", "failed"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row(
        "all pages", f"{pages.fetched:,}", f"{pages.skipped:,}", "", f"{len(pages.failed)}"
    )
    table.add_row(
        "appdetails",
        f"{details.fetched:,}",
        f"{details.skipped:,}",
        f"{details.not_found:,}",
        f"{len(details.failed)}",
    )
    console = stdout()
    console.print(table)
    end = pages.end_page
    reached = (
        f"page {end} came back empty: the catalog is complete"
        if end is not None
        else "the end of the catalog is not reached yet"
    )
    console.print(
        _text(f"{pages.apps:,} apps on the saved pages; {reached}; written to {summary.output}")
    )


def fetch_store_summary(summary: FetchStoreResult) -> None:
    table = _facts("Fetched from the Steam store")
    asked = f"{summary.requested:,} (from {summary.appids_from})"
    table.add_row("apps asked for", _text(asked))
    table.add_row("fetched", f"{summary.fetched:,}")
    table.add_row("skipped (saved before)", f"{summary.skipped:,}")
    table.add_row("not in the store (remembered)", f"{summary.not_found:,}")
    table.add_row("failed", f"{len(summary.failed):,}")
    table.add_row("written to", _text(summary.output))
    stdout().print(table)


def fetch_owned_summary(summary: FetchOwnedResult) -> None:
    table = _facts("Fetched Steam libraries")
    table.add_row("fetched", f"{summary.fetched:,}")
    table.add_row("skipped (saved before)", f"{summary.skipped:,}")
    table.add_row("private profiles (skipped)", f"{summary.private:,}")
    table.add_row("failed", f"{len(summary.failed):,}")
    table.add_row("API calls today (UTC)", f"{summary.calls_today:,} of {summary.daily_limit:,}")
    table.add_row("written to", _text(summary.output))
    stdout().print(table)
    errors = stderr()
    for steamid in summary.private_steamids:
        errors.print(_text(f"private profile, no library shown: {steamid}"))


def recommendations(title: str, answers: Sequence[Recommendation]) -> None:
    """A ranked table of games; ``title`` and every cell are printed literally."""
    table = Table(title=_text(title), title_justify="left")
    # a word wider than its column is folded onto the next line, not cut with "…": the whole
    # name stays readable, and measuring "…" alone loads rich's Unicode width tables (0.05 s
    # of a one-shot answer)
    table.add_column("#", justify="right")
    table.add_column("game", overflow="fold")
    table.add_column("appid", justify="right")
    table.add_column("year", justify="right")
    table.add_column("genres", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("why", style="dim", overflow="fold")
    for rank, answer in enumerate(answers, 1):
        # the genres a --genres filter matched come first
        matched = answer.matched_genres
        genres = [*matched, *(g for g in answer.genres if g not in matched)][:3]
        year = answer.release_year
        table.add_row(
            str(rank),
            _text(answer.name),
            _text(answer.appid or ""),
            _text("" if year is None else year),
            _text(", ".join(genres)),
            f"{answer.score:.3f}",
            _text(answer.reason),
        )
    stdout().print(table)


def recommendation_answer(title: str, answer: Recommendations) -> None:
    """The table, then one line on the given games and the answer's note, if any."""
    recommendations(title, answer)
    history = answer.history
    if history.given:
        line = f"{history.known:,} of {history.given:,} given games are known"
        if history.not_in_model:
            line += (
                f"; {len(history.not_in_model):,} nobody in the play data owns, placed by "
                f"what the catalog says about them ({_appid_list(history.not_in_model)})"
            )
        if history.unknown:
            line += f"; unknown appids: {_appid_list(history.unknown)}"
        stdout().print(Text(line, style="dim"))
    if answer.note:
        stdout().print(Text(answer.note, style="dim"))


def _appid_list(appids: list[int], most: int = 12) -> str:
    shown = ", ".join(str(a) for a in appids[:most])
    return shown + (f" and {len(appids) - most:,} more" if len(appids) > most else "")


def users_table(summary: UsersResult) -> None:
    # the title on a line of its own: as a table title it wraps to the table's narrow width
    stdout().print(_text(f"{summary.users:,} known users (those with the most games first)"))
    table = Table()
    table.add_column("user id")
    table.add_column("games", justify="right")
    for row in summary.examples:
        table.add_row(_text(row.user_id), f"{row.games:,}")
    stdout().print(table)
    if summary.examples:
        stdout().print(
            _text(f"Try: gamerec recommend --user {summary.examples[0].user_id}"), style="dim"
        )


def recommend_all_summary(summary: BatchSummary) -> None:
    stdout().print(
        _text(
            f"Wrote {summary.rows:,} recommendations for {summary.users:,} users to "
            f"{summary.out} in {summary.seconds:.1f} s"
        )
    )


def serve_summary(summary: ServeResult) -> None:
    stderr().print(f"Stopped after {summary.requests:,} requests in {summary.uptime_s:.0f} s")


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

    table = Table(title=_text(title), title_justify="left", box=box.SIMPLE_HEAD)
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


def eval_report(report: EvalResult) -> None:
    ks = report.ks
    main_k = 20 if 20 in ks else ks[-1]
    table = _ranking_table(
        f"{report.protocol_name} · {report.users_evaluated:,} test users · "
        f"{report.ranked_games:,} games ranked",
        ks,
    )
    table.add_column(f"Coverage@{main_k}", justify="right")
    table.add_column(f"Pop%@{main_k}", justify="right")
    table.add_column("fit s", justify="right")
    for name, method in report.methods.items():
        metrics = method["metrics"]
        cells = _ranking_cells(name, metrics, ks)
        cells.append(_metric_cell(metrics[f"coverage@{main_k}"]))
        cells.append(_metric_cell(metrics[f"pop_pct@{main_k}"], digits=1))
        fit = method["fit_seconds"]
        cells.append("-" if fit is None else f"{fit:.1f}")
        table.add_row(*(_text(cell) for cell in cells))
    # off a terminal rich assumes 80 columns: print wide enough for three cut-offs instead
    out = stdout()
    if not out.is_terminal:
        out = Console(file=sys.stdout, width=160, highlight=False)
    out.print(table)
    _print_versus(out, report.methods, f"ndcg@{main_k}", lambda method: method)
    if report.new_games is not None:
        _new_games_report(out, report, report.new_games, main_k)
    for note in _eval_notes(report, main_k):
        out.print(Text(note, style="dim"))


def _print_versus(
    out: Console,
    methods: dict[str, Any],
    key: str,
    section: Callable[[dict[str, Any]], dict[str, Any] | None],
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
                _text(
                    f"{name} - {reference}: {label} {difference['mean']:+.3f} "
                    f"[{low:+.3f}, {high:+.3f}], paired over the same users: {verdict}"
                )
            )


def _new_games_report(out: Console, report: EvalResult, new: dict[str, Any], main_k: int) -> None:
    """P-COLD: the same methods over the new-game targets alone."""
    ks = report.ks
    table = _ranking_table(
        f"new games only · {new['games']:,} games hidden from training · "
        f"{new['targets']:,} targets of {new['users_with_new_targets']:,} test users",
        ks,
    )
    for name, method in report.methods.items():
        table.add_row(*(_text(c) for c in _ranking_cells(name, method["new_games"]["metrics"], ks)))
    out.print(table)
    _print_versus(out, report.methods, f"recall@{main_k}", lambda method: method.get("new_games"))
    if {"itemknn", "ease"} & set(report.methods):
        out.print(
            Text("item-kNN and EASE score a new game 0 (no one in their training data owns it).")
        )
    if "popularity" in report.methods:
        out.print(Text("popularity ranks by SteamSpy owners here.", style="dim"))


def _eval_notes(report: EvalResult, main_k: int) -> list[str]:
    boot = report.bootstrap
    notes = []
    if boot["resamples"]:
        notes.append(
            f"± is half the 95% bootstrap CI ({boot['resamples']:,} resamples of the test users, "
            f"seed {boot['seed']}); split seed {report.split_seed}."
        )
    notes.append(
        f"Pop% = mean popularity percentile, among training users, of the top {main_k} "
        "(100 = the most owned game); Coverage = share of the ranked games recommended to anyone."
    )
    if report.ease_lambda is not None:
        notes.append(f"EASE lambda = {report.ease_lambda:g}, chosen on the validation users.")
    if report.targets_dropped:
        notes.append(
            f"Every method ranks the games recommend may answer: {report.targets_dropped:,} "
            "held-out targets that are not games (DLC, title-only rows, tools, ...) are dropped."
        )
    if report.users_skipped:
        notes.append(
            f"{report.users_skipped:,} test users skipped: {report.skip_reason}, or no "
            "target that may be recommended."
        )
    if report.model and report.model != "evaluated":
        notes.append(f"two-tower model: {report.model}")
    if report.output:
        notes.append(f"Report written to {report.output}")
    return notes


def demo_report(report: DemoResult) -> None:
    """Each stage's summary, the answers for a test user and a new user, then what to try."""
    preprocess_summary(report.preprocess)
    train_summary(report.train)
    index_summary(report.index)
    eval_report(report.eval)
    sample = report.sample_user
    recommendations(
        f"Test user {sample.user_id}: {sample.played} games given, "
        f"{sample.held_out_found} of {sample.held_out} held-out games found in the top 10",
        sample.recommendations,
    )
    out = stdout()
    out.print(Text(_showcase_note(report), style="dim"), soft_wrap=False)
    new_user = report.new_user
    recommendations(f"A new user who likes {', '.join(new_user.genres)}", new_user.recommendations)
    if report.next_steps:
        out.print(Text("Try next:", style="bold"))
        steps = Table.grid(padding=(0, 2))
        steps.add_column(no_wrap=True)  # a command is copied whole: never wrapped
        steps.add_column(style="dim")
        for step in report.next_steps:
            steps.add_row(_text(f"  {step.command}"), _text(step.what))
        out.print(steps)


def _showcase_note(report: DemoResult) -> str:
    """How the test user shown compares with all of them: a miss is said to be one."""
    sample = report.sample_user
    share = sample.test_users_with_a_find / max(sample.test_users, 1)
    note = (
        "Shown: the median test user by the share of held-out games found. Of "
        f"{sample.test_users:,} test users answered this way, {sample.test_users_with_a_find:,} "
        f"({share:.0%}) find at least one held-out game in their top 10"
    )
    if sample.held_out_found == 0:
        misses = sample.test_users - sample.test_users_with_a_find
        note += f"; this user is one of the {misses:,} who find none"
    if sample.eval_hit_rate is not None:
        note += f". The evaluation's hit rate@10 is {sample.eval_hit_rate:.3f}"
        if sample.new_game_places:
            note += (
                f" (it ranks the games with players alone; this answer gives "
                f"{sample.new_game_places} of its places to games new to gamerec's players)"
            )
    return note + "."


class StageProgress:
    """What the stages are doing, on stderr: a line per event, and a bar for a stage that counts.

    Called like a :data:`gamerec.progress.Progress`. An event with a fraction draws or moves its
    stage's bar, one rich progress display per stage; an event without one is a line of its
    own ("train: fitting the co-play re-ranker"), printed above a bar being drawn, never onto it,
    or, for the stage whose bar is drawn, news shown on the bar (a retry). A bar ends, left as
    its last event put it ("stopped early at epoch 23, best 17"), when another stage speaks or
    the display closes: no bar is drawn before its stage starts or stays behind, moving, after.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or stderr()
        self._bar: Any = None  # the rich Progress of the stage being counted, while drawn
        self._stage = ""

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end_bar()

    def __call__(self, stage: str, message: str, fraction: float | None) -> None:
        if self._bar is not None and stage != self._stage:
            self._end_bar()
        if self._bar is None and fraction is None:
            self._console.print(Text.assemble((f"{stage}:", "dim"), " ", message))
            return
        if self._bar is None:
            self._start_bar(stage)
        if fraction is None:
            self._bar.update(self._task, message=message)
        else:
            self._bar.update(self._task, completed=min(max(fraction, 0.0), 1.0), message=message)

    def _start_bar(self, stage: str) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self._bar = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=16, table_column=Column(min_width=16, no_wrap=True)),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            _time_left_column(),
            # one row however long the news: the news is cut, never wrapped or the bar squeezed
            TextColumn(
                "{task.fields[message]}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=self._console,
            expand=True,
            # SteamSpy's `all` pages come a minute apart: estimate speed over a longer window
            speed_estimate_period=600,
        )
        self._stage = stage
        self._task = self._bar.add_task(stage, total=1.0, message="")
        self._bar.start()

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _time_left_column() -> Any:
    """The time left while a bar runs; nothing once it is full (its news has the room)."""
    from rich.progress import Task, TimeRemainingColumn

    class Eta(TimeRemainingColumn):
        def render(self, task: Task) -> Text:
            return Text() if task.finished else Text.assemble("ETA ", super().render(task))

    return Eta()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


#: a renderer of one command's result (a summary dict, a report, a list of answers)
Renderer = Callable[[Any], None]


def result(value: Any, as_json: bool, human: Renderer) -> None:
    """``value`` as JSON for scripts (a typed result by its ``to_dict()``), else through
    ``human``."""
    if as_json:
        print_json(_jsonable(value))
    else:
        human(value)
