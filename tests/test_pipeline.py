"""Stage-level guarantees of `train` and `demo`: clear errors, and nothing good ever lost."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUICK_SEARCH_ENV, run_in_terminal, settings_for
from gamerec import pipeline
from gamerec.artifacts import fingerprint
from gamerec.cli import app
from gamerec.errors import ArtifactError, TrainingError

runner = CliRunner()
QUICK = {
    "train.epochs": 1,
    "train.hidden_dim": 32,
    "train.embedding_dim": 16,
    "train.rerank": False,
}


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: fingerprint(p) for p in sorted(directory.iterdir()) if p.is_file()}


def test_train_without_processed_names_the_command(workdir: Path) -> None:
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1
    assert "run `gamerec preprocess` first" in result.stderr
    assert "Traceback" not in result.output


def test_train_with_an_empty_training_split_is_a_clear_error(
    bundled_workspace: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "gamerec-data"
    shutil.copytree(bundled_workspace / "processed", workspace / "processed")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gamerec.artifacts import write_manifest

    split_path = workspace / "processed" / "split.parquet"
    split = pq.read_table(split_path).to_pandas()
    split["group"] = split["group"].where(split["group"] != "train", "test")
    pq.write_table(pa.Table.from_pandas(split, preserve_index=False), split_path)
    old = json.loads((workspace / "processed" / "manifest.json").read_text())
    (workspace / "processed" / "manifest.json").unlink()
    write_manifest(workspace / "processed", "processed", settings=old["settings"])
    with pytest.raises(TrainingError, match="no training users"):
        pipeline.train(settings_for(workspace, **QUICK))


def test_a_failed_training_run_leaves_the_last_good_model(
    trained_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "gamerec-data"
    shutil.copytree(trained_workspace, workspace)
    before = snapshot(workspace / "model")

    def broken_validation(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("gamerec.evaluation.protocol.mean_ndcg", broken_validation)
    with pytest.raises(RuntimeError, match="disk on fire"):
        pipeline.train(settings_for(workspace, **QUICK))
    assert snapshot(workspace / "model") == before
    assert not list(workspace.glob(".model.*.staging"))  # no staging directory left behind


def test_a_model_for_another_split_is_refused_by_eval(
    trained_workspace: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "gamerec-data"
    shutil.copytree(trained_workspace, workspace)
    pipeline.preprocess(settings_for(workspace, **{"preprocess.seed": 7}))
    with pytest.raises(ArtifactError, match="gamerec train"):
        pipeline.evaluate(settings_for(workspace))


def test_model_files_rebuild_the_recommender_without_torch(trained_workspace: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from gamerec import Recommender\n"
        f"r = Recommender.from_dir({str(trained_workspace)!r})\n"
        "print(len(r.recommend(played={620: 60}, k=3)), 'torch' in sys.modules,"
        " 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "False", "False"]


def test_cli_recommend_process_imports_nothing_it_does_not_need(
    trained_workspace: Path,
) -> None:
    """A one-shot `gamerec recommend` is mostly imports: keep out all it does not need (the
    catalog comes from index/, so not even pyarrow)."""
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "heavy = ('torch', 'faiss', 'pandas', 'pyarrow', 'httpx')\n"
        "atexit.register(lambda: print('loaded:', [m for m in heavy if m in sys.modules]))\n"
        "from gamerec.cli import main\n"
        f"sys.argv = ['gamerec', '--data-dir', {str(trained_workspace)!r},"
        " 'recommend', '--played', '620:60', '-k', '3', '--json']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout[: out.stdout.rindex("loaded:")])) == 3
    assert out.stdout.strip().endswith("loaded: []")


@pytest.mark.slow
@pytest.mark.timeout(900)  # the whole pipeline, on two busy cores
def test_demo_in_a_terminal_reads_well_and_ends_with_what_to_try(workdir: Path) -> None:
    """`gamerec demo` as a user sees it in a terminal (two epochs, set as the environment
    allows, so the command is the README's own): one line per stage event, a bar that ends
    saying how training ended, the showcase said honestly, and commands that work."""
    code, screen = run_in_terminal(
        [sys.executable, "-m", "gamerec", "demo"],
        workdir,
        GAMEREC_TRAIN__EPOCHS="2",
        **QUICK_SEARCH_ENV,
    )
    said = [line for line in screen if line]
    assert code == 0, "\n".join(said[-40:])
    # no bar before preprocessing starts, none glued to a stage line, one bar that ends
    assert said[0] == "preprocess: reading 2 input(s)"
    bars = [line for line in said if "━" in line and not line.startswith(("┏", "┡", "└", "┗"))]
    assert len(bars) == 1 and bars[0].startswith("training ")
    assert re.search(r" ran all 2 epochs, best [12]$", bars[0])
    stages = ("preprocess: ", "train: ", "index: ", "eval: ", "demo: ")
    progress = [line for line in said[: said.index("Preprocessed")] if line not in bars]
    assert all(line.startswith(stages) for line in progress), progress
    assert "train: fitting the co-play re-ranker on the training users" in progress
    # the stages' summaries, the showcase and a new user's answer
    text = " ".join(said)  # a sentence may wrap
    assert "│ users " in text and "3,752" in text
    assert "ran all 2 epochs" in text
    assert "two-tower + re-rank" in text and "popularity" in text
    showcase = next(line for line in said if line.startswith("Test user "))
    assert re.fullmatch(
        r"Test user \S+: \d+ games given, \d+ of \d+ held-out games found in the top 10", showcase
    )
    assert "Shown: the median test user" in text and "hit rate@10" in text
    # (the reason may wrap inside its column)
    assert "A new user who likes RPG" in text
    assert "among the most owned" in text and "RPG games on Steam" in text
    # most owned on Steam today, not in the play data of 2017: today's games among them
    assert "ELDEN RING" in text and "Baldur's Gate 3" in text
    # it ends with what to try next, each command whole on its line
    commands = said[said.index("Try next:") + 1 :]
    assert commands[-1].split()[:2] == ["gamerec", "serve"]  # the last line of all
    runnable = [c.strip().split("  ")[0] for c in commands if c.strip().startswith("gamerec ")]
    assert {c.split()[1] for c in runnable} == {"recommend", "similar", "serve"}
    for command in runnable:
        if "serve" in command or "--library" in command:
            continue  # a server, and a file of the player's own
        words = [sys.executable, "-m", *shlex.split(command), "--json"]
        done = subprocess.run(words, cwd=workdir, capture_output=True)
        assert done.returncode == 0, (command, done.stderr)
    for stage in ("processed", "model", "index", "eval"):
        assert (workdir / "gamerec-data" / stage / "manifest.json").is_file()
