"""Stage-level guarantees of `train` and `demo`: clear errors, and nothing good ever lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import settings_for
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
    """The 0.6 s budget of a `gamerec recommend` process is mostly imports: keep them out."""
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "heavy = ('torch', 'faiss', 'pandas', 'httpx')\n"
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
def test_demo_runs_the_whole_pipeline(workdir: Path) -> None:
    result = runner.invoke(app, ["demo", "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["preprocess"]["users"] == 3752
    assert report["train"]["epochs_run"] == 2
    assert report["index"]["kind"] == "flat"
    methods = set(report["eval"]["methods"])
    assert {"popularity", "itemknn", "ease", "two-tower", "two-tower + re-rank"} <= methods
    sample = report["sample_user"]
    assert len(sample["recommendations"]) == 10
    new_user = report["new_user"]["recommendations"]
    assert all("RPG" in r["genres"] for r in new_user)
    assert np.all([r["reason"].startswith("popular with players of RPG") for r in new_user])
    for stage in ("processed", "model", "index", "eval"):
        assert (workdir / "gamerec-data" / stage / "manifest.json").is_file()
