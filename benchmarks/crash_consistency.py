"""Kill -9 ``gamerec preprocess``, ``train`` and ``index`` anywhere: the workspace stays readable.

Run: python benchmarks/crash_consistency.py                     (about 20 minutes on 2 cores)
     python benchmarks/crash_consistency.py --stages index --random-kills 3

Builds a small workspace once (the bundled data, the test suite's model size, two epochs),
then for each stage:

* **at every rename**: runs the stage under ``strace`` once to list its rename system calls
  (``rename``, ``renameat``, ``renameat2``: atomic file writes and the swap of the stage
  folder), then once per call with ``strace -e inject=SYSCALL:signal=KILL:when=N``, so that
  the process is killed as it enters that very rename;
* **at seeded random moments**: starts the stage and sends SIGKILL after a random delay
  within its normal running time.

After each kill the copy of the workspace must be readable: every stage folder that was there
before is still there, its manifest lists files that are all present with their recorded
fingerprints, and a Recommender loads it and answers trial requests. Then the same stage
runs again and must succeed, and the workspace must again be readable. Without ``strace``
only the random kills run.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RENAMES = ("rename", "renameat", "renameat2")
STAGES = {"preprocess": "processed", "train": "model", "index": "index"}
#: the stage commands, small enough to run dozens of times
ARGUMENTS = {
    "preprocess": ["preprocess"],
    "train": ["train", "--epochs", "2"],
    "index": ["index"],
}
#: the test suite's model size (see _serve_common.COMPACT_MODEL), as GAMEREC_* variables
ENVIRONMENT = {
    "GAMEREC_TRAIN__HIDDEN_DIM": "128",
    "GAMEREC_TRAIN__EMBEDDING_DIM": "64",
    "GAMEREC_TRAIN__BATCH_SIZE": "128",
    # one choice per validation search: what is under test is the files, not the search
    "GAMEREC_TRAIN__RERANK_LAMBDAS": "[50.0]",
    "GAMEREC_TRAIN__RERANK_ALPHAS": "[0.25]",
    "GAMEREC_TRAIN__CONTENT_WEIGHTS": "[0.15]",
    "GAMEREC_TRAIN__NEW_GAME_OFFSETS": "[-0.5]",
    "GAMEREC_TRAIN__NEW_GAME_CONTENTS": "[1.0]",
    "GAMEREC_TRAIN__NEW_GAME_HISTORY_WEIGHTS": "[2.0]",
}

#: run in a fresh interpreter: what "readable" means for a workspace
_READABLE = """
import sys
from pathlib import Path
from gamerec.artifacts.store import read_manifest
from gamerec.runtime.recommender import Recommender

workspace = Path(sys.argv[1])
for stage, folder in (("processed", "processed"), ("model", "model"), ("index", "index")):
    read_manifest(workspace / folder, stage, verify=True)
Recommender.from_dir(workspace, in_memory=True).check()
"""


@dataclass
class Outcome:
    stage: str
    how: str  # "rename N of SYSCALL" or "after X s"
    killed: bool
    readable: str  # "" when readable, else why not
    rerun: str  # "" when the next run succeeded and left a readable workspace


def _environment() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    return {**clean, **ENVIRONMENT}


def _command(workspace: Path, stage: str) -> list[str]:
    return [sys.executable, "-m", "gamerec", "--data-dir", str(workspace), *ARGUMENTS[stage]]


def _run(command: list[str], timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=_environment(), capture_output=True, text=True, timeout=timeout_s
    )


def readable(workspace: Path) -> str:
    """'' when every stage of ``workspace`` reads whole and a Recommender answers; else why."""
    for folder in STAGES.values():
        if not (workspace / folder).is_dir():
            return f"{folder}/ is missing"
    done = _run([sys.executable, "-c", _READABLE, str(workspace)], timeout_s=300)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        return lines[-1][:300]
    return ""


def build(root: Path) -> tuple[Path, dict[str, float]]:
    """The base workspace, and how long each stage took to build it (seconds)."""
    workspace = root / "base" / "gamerec-data"
    seconds = {}
    for stage in STAGES:
        started = time.monotonic()
        done = _run(_command(workspace, stage))
        if done.returncode != 0:
            sys.exit(f"gamerec {stage} failed while building the base workspace:\n{done.stderr}")
        seconds[stage] = time.monotonic() - started
    problem = readable(workspace)
    if problem:
        sys.exit(f"the base workspace is not readable: {problem}")
    return workspace, seconds


def renames_of(base: Path, root: Path, stage: str) -> tuple[dict[str, int], float]:
    """How many times each rename system call runs in ``stage``, and how long it ran (s)."""
    workspace = _copy(base, root / "count")
    trace = root / "count.strace"
    started = time.monotonic()
    done = _run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            f"trace={','.join(RENAMES)}",
            "-o",
            str(trace),
            *_command(workspace, stage),
        ]
    )
    if done.returncode != 0:
        sys.exit(f"gamerec {stage} failed under strace:\n{done.stderr[-2000:]}")
    counts = dict.fromkeys(RENAMES, 0)
    for line in trace.read_text().splitlines():
        match = re.match(r"\d+\s+(rename|renameat|renameat2)\(", line)
        if match:
            counts[match.group(1)] += 1
    shutil.rmtree(workspace.parent)
    return {name: count for name, count in counts.items() if count}, time.monotonic() - started


def _copy(base: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(base.parent, target, symlinks=True)
    return target / base.name


def _after_kill(workspace: Path, stage: str, outcome: Outcome) -> Outcome:
    outcome.readable = readable(workspace)
    again = _run(_command(workspace, stage))
    if again.returncode != 0:
        lines = again.stderr.strip().splitlines() or ["no output"]
        outcome.rerun = f"the next run failed: {lines[-1][:300]}"
    else:
        outcome.rerun = readable(workspace)
    shutil.rmtree(workspace.parent)
    return outcome


def kill_at_rename(base: Path, root: Path, stage: str, syscall: str, nth: int) -> Outcome:
    workspace = _copy(base, root / "run")
    inject = f"inject={syscall}:signal=KILL:when={nth}"
    done = _run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            f"trace={syscall}",
            "-e",
            inject,
            *_command(workspace, stage),
        ]
    )
    killed = done.returncode != 0
    return _after_kill(workspace, stage, Outcome(stage, f"{syscall} #{nth}", killed, "", ""))


def kill_after(base: Path, root: Path, stage: str, delay_s: float) -> Outcome:
    workspace = _copy(base, root / "run")
    process = subprocess.Popen(
        _command(workspace, stage),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches any helper too
    )
    try:
        process.wait(delay_s)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed = True
    return _after_kill(workspace, stage, Outcome(stage, f"after {delay_s:.2f} s", killed, "", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated")
    parser.add_argument("--random-kills", type=int, default=8, help="per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    root = args.keep or Path(tempfile.mkdtemp(prefix="gamerec-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    have_strace = shutil.which("strace") is not None
    rng = random.Random(args.seed)
    started = time.monotonic()
    try:
        base, seconds = build(root)
        print("base workspace:", ", ".join(f"{s} {t:.1f} s" for s, t in seconds.items()))
        outcomes: list[Outcome] = []
        for stage in stages:
            if have_strace:
                renames, seconds[stage] = renames_of(base, root, stage)  # timed afresh
                for syscall, count in renames.items():
                    for nth in range(1, count + 1):
                        outcomes.append(kill_at_rename(base, root, stage, syscall, nth))
                        _report(outcomes[-1])
            for _ in range(args.random_kills):
                # within the stage's own run (a busy machine makes it longer or shorter)
                delay = rng.uniform(0.05, 0.8) * seconds[stage]
                outcomes.append(kill_after(base, root, stage, delay))
                _report(outcomes[-1])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return _summary(outcomes, have_strace, time.monotonic() - started)


def _report(outcome: Outcome) -> None:
    verdict = "ok" if not outcome.readable and not outcome.rerun else "FAIL"
    killed = "killed" if outcome.killed else "finished first"
    problems = "; ".join(p for p in (outcome.readable, outcome.rerun) if p)
    print(f"  {outcome.stage:10} {outcome.how:18} {killed:15} {verdict} {problems}", flush=True)


def _summary(outcomes: list[Outcome], have_strace: bool, seconds: float) -> int:
    failed = [o for o in outcomes if o.readable or o.rerun]
    killed = sum(o.killed for o in outcomes)
    at_renames = sum(1 for o in outcomes if "#" in o.how)
    print(
        f"{len(outcomes)} runs ({at_renames} killed at a rename, {killed} killed in all) in "
        f"{seconds / 60:.1f} min; workspaces unreadable or next run failing: {len(failed)}"
        + ("" if have_strace else " (no strace: random kills only)")
    )
    print("PASS" if not failed else "FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
