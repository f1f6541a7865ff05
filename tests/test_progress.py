"""What the stages say while they work: the terminal display, and the ``gamerec`` logger."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from conftest import run_in_terminal, settings_for, terminal_screen
from gamerec import pipeline
from gamerec.cli import app
from gamerec.progress import reported
from gamerec.render import StageProgress

BAR = "━"
FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"

#: what `gamerec demo` reports, in its order: lines, a counted stage that stops early, ...
DEMO_LIKE: list[tuple[str, str, float | None]] = [
    ("preprocess", "reading 2 input(s)", None),
    ("train", "training on 2,627 users x 3,956 games", None),
    *[
        ("training", f"epoch {e} of 40: loss 5.0, 2,000 users/s, valid NDCG@20 0.48", e / 40)
        for e in range(1, 24)
    ],
    ("training", "stopped early at epoch 23, best 17", 1.0),
    ("train", "fitting the co-play re-ranker on the training users", None),
    ("index", "building the flat index of 25,385 x 128 vectors", None),
    ("recommend", "1,000 of 3,752 users", 1000 / 3752),
    ("recommend", "3,752 of 3,752 users", 1.0),
    ("eval", "reading gamerec-data/processed (sg)", None),
]


def shown(events: list[tuple[str, str, float | None]], width: int = 80) -> list[str]:
    """The screen a terminal ``width`` wide shows after ``events`` went to the display."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, highlight=False)
    with StageProgress(console) as progress:
        for event in events:
            progress(*event)
    return [line for line in terminal_screen(out.getvalue(), width) if line]


def test_stage_lines_never_share_a_line_with_a_bar() -> None:
    screen = shown(DEMO_LIKE)
    outline = [f"<{line.split()[0]} bar>" if BAR in line else line for line in screen]
    assert outline == [
        "preprocess: reading 2 input(s)",
        "train: training on 2,627 users x 3,956 games",
        "<training bar>",
        "train: fitting the co-play re-ranker on the training users",
        "index: building the flat index of 25,385 x 128 vectors",
        "<recommend bar>",
        "eval: reading gamerec-data/processed (sg)",
    ]


def test_a_bar_ends_with_how_its_stage_ended() -> None:
    bars = [line for line in shown(DEMO_LIKE) if BAR in line]
    assert bars[0].startswith("training ") and " 100% " in bars[0]
    assert bars[0].endswith("stopped early at epoch 23, best 17")
    assert bars[1].endswith("3,752 of 3,752 users")


def test_news_for_a_drawn_bar_is_shown_on_it_and_a_long_one_is_cut() -> None:
    events: list[tuple[str, str, float | None]] = [
        ("store", "app 10 (1/4)", 0.25),
        ("store", "appdetails 20: HTTP 503 " + "and then some " * 10, None),  # a retry
        ("store", "app 20 (2/4)", 0.5),
        ("store", "appdetails 30: HTTP 429; retry 1/5 in 2.0 s", None),
    ]
    screen = shown(events, width=60)
    assert len(screen) == 1 and len(screen[0]) <= 60  # one row: the bar, with the latest news
    assert BAR in screen[0] and " 50% " in screen[0]
    assert "appdetails" in screen[0] and screen[0].endswith("…")
    assert shown(events, width=100)[0].endswith("appdetails 30: HTTP 429; retry 1/5 in 2.0 s")


def test_train_in_an_empty_folder_draws_no_bar_before_its_error(tmp_path: Path) -> None:
    code, screen = run_in_terminal([sys.executable, "-m", "gamerec", "train"], tmp_path)
    assert code == 1
    said = [line for line in screen if line]
    assert said and said[0].startswith("Error: ") and "gamerec preprocess" in " ".join(said)
    assert not any(BAR in line or "training" in line for line in said)
    # off a terminal, too: no bar printed when the display closes
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "ws"), "train"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and BAR not in result.stderr


# --- the library: what the terminal shows goes to the `gamerec` logger -----------------------

QUICK = {
    "train.epochs": 2,
    "train.patience": 5,
    "train.hidden_dim": 32,
    "train.embedding_dim": 16,
    "train.rerank": False,
}


def test_the_library_logs_what_a_terminal_shows(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = workdir / "gamerec-data"
    inputs = [
        {"kind": "steam-200k", "path": str(FIXTURES / "steam-200k-slice.csv")},
        {"kind": "steam-csv", "path": str(FIXTURES / "steam.csv")},
    ]
    small = {"preprocess.inputs": inputs, "preprocess.min_user_items": 2}
    pipeline.preprocess(settings_for(workspace, **small))
    events: list[tuple[str, str, float | None]] = []
    caplog.set_level(logging.INFO, logger="gamerec")
    settings = settings_for(workspace, **small, **QUICK)
    trained = pipeline.train(settings, progress=lambda *e: events.append(e))
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gamerec"]
    # every event of two epochs is news at INFO: each step passes a tenth of its bar
    assert logged == [(logging.INFO, f"{stage}: {message}") for stage, message, _ in events]
    said = [message for _, message in logged]
    assert said[0] == f"train: reading {workspace / 'processed'}"
    assert said.index("train: fitting the content mapping for games without players") > 0
    epochs = [m for m in said if m.startswith("training: ")]
    assert [m.split(":")[1] for m in epochs[:2]] == [" epoch 1 of 2", " epoch 2 of 2"]
    assert epochs[2] == f"training: {trained.ending()}"
    assert trained.ending() == f"ran all 2 epochs, best {trained.best_epoch + 1}"
    assert said[-1] == f"train: writing {workspace / 'model'}"


def test_a_long_bar_is_logged_each_tenth_of_the_way(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gamerec")
    seen: list[str] = []
    progress = reported(lambda stage, message, fraction: seen.append(message))
    assert reported(progress) is progress  # a stage passing its reporter on logs once
    progress("crawl", "starting", None)
    for done in range(1, 1001):
        progress("crawl", f"app {done} of 1,000", done / 1000)
    levels = [r.levelno for r in caplog.records if r.name == "gamerec"]
    assert len(seen) == len(levels) == 1001
    # the line, the bar's first step, each tenth passed (0.1 ... 0.9) and its end
    assert levels.count(logging.INFO) == 1 + 1 + 9 + 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[:3] == ["crawl: starting", "crawl: app 1 of 1,000", "crawl: app 100 of 1,000"]
    assert infos[-1] == "crawl: app 1000 of 1,000"
