"""How long a one-shot answer takes, against importing torch on the same machine.

    python benchmarks/bench_answer_time.py [--runs 15] [--data-dir DIR]

The README's claim: a one-shot `gamerec recommend --played 620:1200,400:300` (a whole process:
start Python, read the settings, load the model, answer, print the table) takes at most 0.3x
the time of `python -c "import torch"` on the same machine. The commands run interleaved
(gamerec, torch, gamerec, ...) so both meet the same load; each figure is the median of
``--runs``. CPU time (user + system) is shown beside the wall time: on a machine other work
shares it moves less. Also timed: `gamerec --help`, and the same answer as `--json`.

``--data-dir`` defaults to the benchmark workspace (`benchmarks/.work/gamerec-data`, built at
default settings on first use, which trains the model once).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _serve_common import machine as cpu_and_cores

#: as an installed package runs: Python's bytecode cache on (pip compiles it at install time)
PROCESS_ENV = {
    k: v
    for k, v in os.environ.items()
    if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("GAMEREC_")
}
#: the claim: a one-shot answer in at most this share of `python -c "import torch"`
CLAIM = 0.3


def machine() -> str:
    return f"{cpu_and_cores()}, load average {os.getloadavg()[0]:.1f} at start"


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=PROCESS_ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.data_dir is None:
        from _workspace import trained_workspace

        args.data_dir = trained_workspace()
    gamerec = [sys.executable, "-m", "gamerec", "--data-dir", str(args.data_dir)]
    commands = {
        "gamerec recommend --played 620:1200,400:300": [
            *gamerec,
            "recommend",
            "--played",
            "620:1200,400:300",
        ],
        "the same, --json": [*gamerec, "recommend", "--played", "620:1200,400:300", "--json"],
        "gamerec --help": [*gamerec, "--help"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    print(f"machine: {machine()}")
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm-up: the disk cache, bytecode
        run(command)
    for _ in range(args.runs):
        for name, command in commands.items():
            wall, cpu = run(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
    torch = 'python -c "import torch"'
    torch_wall, torch_cpu = statistics.median(walls[torch]), statistics.median(cpus[torch])
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"{name:<46} wall {wall:.3f} s ({wall / torch_wall:.2f}x importing torch), "
            f"CPU {cpu:.3f} s ({cpu / torch_cpu:.2f}x); medians of {args.runs}"
        )
    answer = "gamerec recommend --played 620:1200,400:300"
    ratio = statistics.median(walls[answer]) / torch_wall
    verdict = "holds" if ratio <= CLAIM else "does NOT hold"
    print(
        f"claim: a one-shot answer in at most {CLAIM}x the time of importing torch: "
        f"{ratio:.2f}x (wall), {verdict}; load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
