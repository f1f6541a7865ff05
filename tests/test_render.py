"""What the command prints: data and user input are shown literally, never read as rich markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gamerec.cli import app
from gamerec.runtime.recommender import HistoryReport, Recommendation, Recommendations

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
#: a closing tag that matches nothing (rich raises on it) and a terminal hyperlink
EVIL = "Evil [/bold] Game [link=http://x]y[/link]"
WIDE = {"COLUMNS": "400"}  # one table row per line, so names are not wrapped


def answer(name: str, reason: str, appid: int = 620) -> Recommendation:
    return Recommendation(
        appid=appid, name=name, score=0.5, genres=["[red]Action", "RPG"], reason=reason, item_idx=0
    )


@pytest.fixture
def evil_answers(monkeypatch: pytest.MonkeyPatch) -> list[Recommendation]:
    answers = [answer(EVIL, f"because you played {EVIL}"), answer("Portal 2", "popular", 620)]
    history = HistoryReport(given=2, used=1, not_in_model=[], unknown=[999])
    monkeypatch.setattr(
        "gamerec.answers.recommend",
        lambda settings, **kwargs: Recommendations(answers, history, EVIL),
    )
    monkeypatch.setattr("gamerec.answers.similar", lambda settings, game, k=None: answers)
    return answers


def test_a_game_name_with_markup_is_printed_as_it_is(workdir: Path, evil_answers: list) -> None:
    result = CliRunner().invoke(app, ["recommend", "--played", "620:60"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert EVIL in result.stdout
    assert f"because you played {EVIL}" in result.stdout
    assert "[red]Action" in result.stdout
    assert "\x1b]8;" not in result.stdout  # no terminal hyperlink
    assert "1 of 2 given games are known; unknown appids: 999" in result.stdout
    assert result.stdout.rstrip().endswith(EVIL)  # the note, literally


def test_a_query_with_markup_is_printed_as_it_is(workdir: Path, evil_answers: list) -> None:
    result = CliRunner().invoke(app, ["similar", EVIL], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"Similar to {EVIL}" in result.stdout
    as_json = CliRunner().invoke(app, ["similar", EVIL, "--json"], env=WIDE)
    assert json.loads(as_json.stdout)[0]["name"] == EVIL


def test_a_data_dir_with_markup_is_printed_as_it_is(workdir: Path) -> None:
    (workdir / "gamerec.toml").write_text(
        f"[[preprocess.inputs]]\nkind = 'steam-200k'\n"
        f"path = '{FIXTURES / 'steam-200k-slice.csv'}'\n"
        f"[[preprocess.inputs]]\nkind = 'steam-csv'\npath = '{FIXTURES / 'steam.csv'}'\n"
    )
    data_dir = "ws/[/x]"
    result = CliRunner().invoke(
        app, ["--data-dir", data_dir, "preprocess", "--min-user-items", "2"], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert f"{data_dir}/processed" in result.stdout  # "written to"
    assert f"preprocess: writing {data_dir}/processed" in result.stderr  # progress lines
    assert (workdir / "ws" / "[" / "x]" / "processed" / "manifest.json").is_file()

    missing = CliRunner().invoke(app, ["--data-dir", "[/x] [link=x]y[/link]", "index"])
    assert missing.exit_code == 1
    assert "index: reading [/x] [link=x]y[/link]/model and [/x] [link=x]y[/link]/processed\n" in (
        missing.stderr
    )
    assert "Error: no model output in [/x] [link=x]y[/link]/model;" in missing.stderr


def test_a_long_name_in_a_narrow_table_is_shown_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word wider than its column is folded onto the next line, never cut with "…"."""
    from gamerec import render

    monkeypatch.setenv("COLUMNS", "60")
    name = "Counter-Strike:GlobalOffensiveDefinitiveEdition"
    answer = Recommendation(
        appid=730,
        name=name,
        score=1.0,
        genres=["Action"],
        reason="because you played Portal",
        item_idx=0,
    )
    render.recommendations("Recommended for you", [answer])
    shown = capsys.readouterr().out
    assert "…" not in shown
    # the name's pieces, read down the game column, make the whole name
    cells = [line.split("│")[2].strip() for line in shown.splitlines() if line.count("│") > 3]
    assert "".join(cells) == name


@pytest.mark.parametrize(
    ("teacher", "row"),
    [
        (
            {"used": True, "lambda": 50.0, "weight": 1.0, "temperature": 0.02},
            "teacher   co-play (EASE λ 50), weight 1, temperature 0.02",
        ),
        ({"used": False, "why": "train.rerank is off"}, "teacher   none: train.rerank is off"),
        ({"used": False, "why": "train.distill_weight is 0"}, None),  # not asked for: not said
    ],
)
def test_the_training_summary_names_the_teacher_when_one_was_asked_for(
    capsys: pytest.CaptureFixture[str], teacher: dict, row: str | None
) -> None:
    from gamerec import render
    from gamerec.results import TrainResult

    summary = TrainResult(
        best_epoch=3,
        valid_ndcg_at_20=0.5,
        epochs_run=9,
        seconds=1.0,
        resumed_from_epoch=None,
        sampled_softmax=False,
        users=10,
        items=20,
        workers=1,
        history=[],
        teacher=teacher,
        output="model",
    )
    render.train_summary(summary)
    out = capsys.readouterr().out.replace("│", " ")
    lines = [" ".join(line.split()) for line in out.splitlines()]
    teacher_lines = [line for line in lines if "teacher" in line]
    if row is None:
        assert teacher_lines == []
    else:
        assert teacher_lines == [" ".join(row.split())], lines
