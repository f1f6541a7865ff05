"""Training across processes (torchrun, DDP on gloo): the same model as one process, rank 0 alone
writes, and clear failures when a worker is missing or dies mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import QUICK_SEARCH, QUICK_SEARCH_ENV, free_port
from gamerec import pipeline
from gamerec.errors import ConfigError, TrainingError
from gamerec.settings import Settings

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # the `torchrun` command
LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: a small model, so that a run takes seconds (the default width trains for minutes)
SMALL = {
    "GAMEREC_TRAIN__HIDDEN_DIM": "128",
    "GAMEREC_TRAIN__EMBEDDING_DIM": "64",
    "GAMEREC_TRAIN__BATCH_SIZE": "128",
    "GAMEREC_TRAIN__THREADS": "1",
}


def run_env(**settings: Any) -> dict[str, str]:
    """This environment without gamerec or torchrun variables, plus ``SMALL`` and ``settings``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_") and k not in LAUNCHER
    }
    env.update(SMALL)
    env.update(QUICK_SEARCH_ENV)
    env.update({f"GAMEREC_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def workspace(root: Path, source: Path, *, with_model: bool = False) -> Path:
    import shutil

    data = root / "gamerec-data"
    shutil.copytree(source / "processed", data / "processed")
    if with_model:
        shutil.copytree(source / "model", data / "model")
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, bundled_workspace: Path) -> Path:
    """A workspace with a small model/ trained in one process: the last good model to keep."""
    data = workspace(tmp_path_factory.mktemp("trained"), bundled_workspace)
    overrides = {f"train.{k.split('__')[1].lower()}": v for k, v in SMALL.items()}
    overrides.update({"data_dir": data, "train.epochs": 2, "train.rerank": False, **QUICK_SEARCH})
    pipeline.train(Settings.load(config=None, overrides=overrides))
    return data


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def leftovers(data: Path) -> list[str]:
    """Staging directories or swapped-out outputs a run left behind."""
    return sorted(p.name for p in data.iterdir() if p.name.endswith((".staging", ".old")))


def torchrun(data: Path, logs: Path) -> list[str]:
    """Two workers on this machine; each one's stdout and stderr go to files under ``logs``."""
    return [
        *TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "--redirects",
        "3",
        "--log-dir",
        str(logs),
        "-m",
        "gamerec",
        "--data-dir",
        str(data),
        "train",
        "--json",
    ]


def rank_output(logs: Path, rank: int, stream: str) -> str:
    """What worker ``rank`` wrote to ``stream`` (stdout or stderr) in a torchrun run."""
    files = sorted(logs.glob(f"*/attempt_*/{rank}/{stream}.log"))
    assert len(files) == 1, files
    return files[0].read_text()


def one_line(text: str) -> str:
    """Rich wraps long messages at the terminal width: undo it for matching."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- settings


def test_torchrun_variables_become_distributed_settings(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "10.0.0.5"),
        ("MASTER_PORT", "29600"),
    ]:
        monkeypatch.setenv(name, value)
    settings = Settings.load()
    options = settings.distributed
    assert (options.rank, options.world_size, options.local_rank) == (1, 2, 1)
    assert (options.master_addr, options.master_port) == ("10.0.0.5", 29600)
    assert settings.sources["distributed.rank"] == "torchrun"
    assert settings.sources["distributed.backend"] == "default"


def test_without_torchrun_training_is_one_process(workdir: Path) -> None:
    options = Settings.load().distributed
    assert (options.rank, options.world_size) == (0, 1)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"RANK": "one"}, "RANK='one' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 must be below world_size 2"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
    ],
)
def test_bad_torchrun_variables_are_config_errors(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.load()


def test_the_backend_follows_the_device() -> None:
    from gamerec.towers.distributed import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert resolve_backend("gloo", torch.device("cuda", 0)) == "gloo"
    with pytest.raises(TrainingError, match="nccl needs CUDA"):
        resolve_backend("nccl", torch.device("cpu"))


LOST_PEER_THEN_SIGTERM = """
import os, signal, torch
from gamerec.errors import TrainingError
from gamerec.towers.distributed import Workers, _group_lost, stop_on_sigterm

try:
    with stop_on_sigterm(Workers(0, 2, torch.device("cpu"), "gloo")):
        raise _group_lost(TrainingError("training worker 0 of 2 lost the other workers"))
except TrainingError as error:
    # the CLI prints what is not reported yet: it must not say it twice
    print("reported" if error.already_reported else "not reported", flush=True)
    # torchrun's SIGTERM lands as the error leaves the worker, before the CLI can print it
    os.kill(os.getpid(), signal.SIGTERM)
"""


def test_a_lost_peer_is_said_before_torchruns_sigterm_can_end_the_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOST_PEER_THEN_SIGTERM],
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGTERM
    assert done.stderr.count("Error: training worker 0 of 2 lost the other workers") == 1
    assert done.stdout == "reported\n"


def test_workers_share_every_batch_exactly_once() -> None:
    from gamerec.towers.distributed import Workers, rank_slice

    for world in range(1, 6):
        for n in range(0, 23):
            shares = [
                rank_slice(n, Workers(r, world, torch.device("cpu"), "gloo")) for r in range(world)
            ]
            assert [s for share in shares for s in range(*share)] == list(range(n))
            sizes = [end - start for start, end in shares]
            assert max(sizes) - min(sizes) <= 1


# --------------------------------------------------------------------------- DDP == one process


def _checkerboard_teacher() -> np.ndarray:
    """Co-play weights of the checkerboard's players: each worker's users learn from them."""
    from conftest import checkerboard
    from gamerec.towers.ease import ease_weights, gram_matrix

    return ease_weights(gram_matrix(checkerboard(200)[0]), 5.0)


def _checkerboard_worker(rank: int, port: int, out: str, sampled: bool) -> None:
    """One of two spawned workers: train the checkerboard model of test_towers together."""
    from conftest import train_checkerboard
    from gamerec.towers.distributed import start_workers, stop_workers

    workers = start_workers(
        rank=rank,
        world_size=2,
        local_rank=rank,
        master_addr="127.0.0.1",
        master_port=port,
        backend="gloo",
        device=torch.device("cpu"),
        timeout_s=60,
    )
    try:
        options: dict[str, Any] = {"epochs": 3, "threads": 1, "workers": workers}
        if sampled:
            options.update(max_full_softmax_items=5, sampled_negatives=8)
        result, _ = train_checkerboard(
            teacher=_checkerboard_teacher(), distill_weight=1.0, **options
        )
    finally:
        stop_workers()
    torch.save(
        {
            "losses": [r.loss for r in result.history],
            "metrics": [r.valid_metric for r in result.history],
            "state": result.model.state_dict(),
            "sampled": result.sampled_softmax,
        },
        Path(out) / f"rank{rank}.pt",
    )


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["full-softmax", "sampled-softmax"])
def test_two_workers_take_the_same_steps_as_one_process(tmp_path: Path, sampled: bool) -> None:
    """Same batches, same hold-out split, gradients averaged by DDP (and, with sampled softmax,
    item embeddings gathered across workers): the same training as one process, up to float
    rounding. Dropout is 0 in this model, so nothing random differs between the two runs. Both
    learn from a co-play teacher too, scored over each worker's own users."""
    from conftest import train_checkerboard

    torch.multiprocessing.spawn(
        _checkerboard_worker, args=(free_port(), str(tmp_path), sampled), nprocs=2, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    options: dict[str, Any] = {"epochs": 3, "threads": 1}
    if sampled:
        options.update(max_full_softmax_items=5, sampled_negatives=8)
    single, _ = train_checkerboard(teacher=_checkerboard_teacher(), distill_weight=1.0, **options)

    assert ranks[0]["sampled"] is sampled
    for name, value in ranks[0]["state"].items():  # DDP keeps the replicas identical
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    expected = [r.loss for r in single.history]
    np.testing.assert_allclose(ranks[0]["losses"], expected, rtol=1e-4)
    assert ranks[0]["metrics"] == pytest.approx([r.valid_metric for r in single.history])
    for name, value in single.model.state_dict().items():
        assert torch.allclose(ranks[0]["state"][name], value, atol=1e-4), name


# --------------------------------------------------------------------------- torchrun end to end


@pytest.mark.slow
def test_torchrun_two_workers_match_one_process_and_only_rank_0_writes(
    tmp_path: Path, bundled_workspace: Path
) -> None:
    from gamerec.artifacts.model import read_model
    from gamerec.evaluation.metrics import metric_key
    from gamerec.evaluation.protocol import bootstrap_ci, evaluate_scorer, load_protocol
    from gamerec.ranking import RankingEngine

    one = workspace(tmp_path / "one", bundled_workspace)
    two = workspace(tmp_path / "two", bundled_workspace)
    env = run_env(train__epochs=6)
    single = subprocess.run(
        [sys.executable, "-m", "gamerec", "--data-dir", str(one), "train", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    logs = tmp_path / "logs"
    both = subprocess.run(torchrun(two, logs), env=env, capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, (both.stdout + both.stderr)[-3000:]

    # rank 0 alone reports, fits the re-ranker and writes; rank 1 says nothing at all
    said = one_line(rank_output(logs, 0, "stderr"))
    assert said.count("writing") == 1
    assert f"writing{two / 'model'}" in "".join(said.split())  # however rich wrapped the path
    assert "fitting the co-play re-ranker" in said
    assert rank_output(logs, 1, "stderr") == rank_output(logs, 1, "stdout") == ""
    summary = json.loads(rank_output(logs, 0, "stdout"))
    assert summary["workers"] == 2 and summary["rerank"]
    assert leftovers(two) == []
    assert not (two / ".train-state" / "state.pt").exists()  # removed once model/ was written
    manifest = json.loads((two / "model" / "manifest.json").read_text())
    assert manifest["summary"]["workers"] == 2
    assert set(manifest["files"]) == {p.name for p in (two / "model").iterdir()} - {"manifest.json"}

    # quality: the 2-worker model is within noise of the 1-worker model on the validation
    # users (the early-stopping metric), noise being the 95% bootstrap CI of the 1-worker mean
    data = load_protocol(one / "processed", "sg")
    key = metric_key("ndcg", 20)

    def ndcg(model_dir: Path) -> np.ndarray:
        engine = RankingEngine.from_model(read_model(model_dir, coplay="skip"), rerank=False)
        return evaluate_scorer(
            engine, data.valid.histories, data.valid.targets, [20], allowed=data.allowed
        ).per_user[key]

    alone, together = ndcg(one / "model"), ndcg(two / "model")
    low, high = bootstrap_ci({key: alone}, resamples=1000, seed=0)[key]
    assert high - low < 0.1  # the CI is informative: about +-0.03 on 375 users
    assert low <= together.mean() <= high, (alone.mean(), together.mean(), (low, high))
    assert abs(together.mean() - alone.mean()) <= 0.03
    # the sharded validation during training saw every validation user: same number as here
    assert summary["valid_ndcg_at_20"] == pytest.approx(together.mean(), abs=2e-3)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("rank", [0, 1], ids=["leader-without-peer", "peer-without-leader"])
def test_a_missing_worker_is_a_clear_training_error_and_the_model_is_kept(
    tmp_path: Path, trained: Path, rank: int
) -> None:
    data = workspace(tmp_path, trained, with_model=True)
    before = snapshot(data / "model")
    port = free_port()
    settings = Settings.load(
        config=None,
        overrides={
            "data_dir": data,
            "distributed.world_size": 2,
            "distributed.rank": rank,
            "distributed.master_port": port,
            "distributed.timeout_s": 2,
        },
    )
    started = time.perf_counter()
    with pytest.raises(TrainingError, match=f"could not meet the others at 127.0.0.1:{port}"):
        pipeline.train(settings)
    assert time.perf_counter() - started < 60
    assert snapshot(data / "model") == before
    assert leftovers(data) == []
    import torch.distributed as dist

    assert not dist.is_initialized()


def test_the_cli_names_the_missing_rendezvous_and_exits_1(tmp_path: Path, trained: Path) -> None:
    data = workspace(tmp_path, trained, with_model=True)
    before = snapshot(data / "model")
    port = free_port()
    env = run_env(distributed__timeout_s=3)
    env.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    env["MASTER_PORT"] = str(port)
    done = subprocess.run(
        [sys.executable, "-m", "gamerec", "--data-dir", str(data), "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"Error: training worker 0 of 2 could not meet the others at 127.0.0.1:{port}" in (
        " ".join(done.stderr.split())
    )
    assert "Traceback" not in done.stderr
    assert snapshot(data / "model") == before


def test_torchrun_waiting_for_a_node_that_never_comes_fails_and_keeps_the_model(
    tmp_path: Path, trained: Path
) -> None:
    data = workspace(tmp_path, trained, with_model=True)
    before = snapshot(data / "model")
    command = [
        *TORCHRUN,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv-conf",
        "join_timeout=3",
        "-m",
        "gamerec",
        "--data-dir",
        str(data),
        "train",
    ]
    done = subprocess.run(command, env=run_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "RendezvousTimeoutError" in done.stderr
    assert snapshot(data / "model") == before
    assert leftovers(data) == []


def _worker_pids(launcher: int) -> dict[int, int]:
    """{rank: pid} of the workers torchrun (pid ``launcher``) started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent != launcher:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_clearly_keeps_the_model_and_the_run_resumes(
    tmp_path: Path, trained: Path
) -> None:
    data = workspace(tmp_path, trained, with_model=True)
    before = snapshot(data / "model")
    env = run_env(train__epochs=8, train__patience=8, train__rerank="false")
    state = data / ".train-state" / "state.pt"
    launcher = subprocess.Popen(
        torchrun(data, tmp_path / "killed"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not state.exists():  # rank 0 saved its first epoch: training is under way
            assert launcher.poll() is None, "training ended before a worker could be killed"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        pids = _worker_pids(launcher.pid)
        assert sorted(pids) == [0, 1], pids
        os.kill(pids[1], signal.SIGKILL)
        output, _ = launcher.communicate(timeout=180)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    # torchrun names the killed worker; the survivor says what happened and what to do
    assert "exitcode  : -9" in output and "rank      : 1" in output, output[-3000:]
    said = one_line(rank_output(tmp_path / "killed", 0, "stderr"))
    # it either notices the lost peer itself or is stopped by torchrun first (SIGTERM): a race
    assert re.search(r"Error: training worker 0 (of 2|was told to stop)", said), (
        said[-2000:] + "\n--- torchrun said:\n" + output[-3000:]
    )
    assert "run the same command again to resume" in said
    assert "Traceback" not in said
    assert snapshot(data / "model") == before
    assert leftovers(data) == []
    assert state.exists()

    logs = tmp_path / "resumed"
    resumed = subprocess.run(
        torchrun(data, logs), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    summary = json.loads(rank_output(logs, 0, "stdout"))
    assert summary["resumed_from_epoch"] >= 1
    assert summary["epochs_run"] == 8
    assert snapshot(data / "model") != before
    assert not state.exists()
