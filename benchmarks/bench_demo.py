"""How long `gamerec demo` takes: the README's "about N minutes on two CPU cores".

    python benchmarks/bench_demo.py [--cores 2] [--epochs N]

Runs `gamerec demo --json` in a fresh folder, as a new user would, in a child process pinned to
``--cores`` CPU cores (``sched_setaffinity``; 0: every core), and prints its wall time, its CPU
time (user + system: on a machine other work shares, the wall time grows and this does not
much), how many epochs training ran, and the time of each stage the demo reports. The load
average before and after says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _serve_common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to pin to (0: all)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the settings' 40")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    command = [sys.executable, "-m", "gamerec", "demo", "--json"]
    if args.epochs is not None:
        command[-1:-1] = ["--epochs", str(args.epochs)]
    cores = sorted(os.sched_getaffinity(0))[: args.cores] if args.cores else None

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, cores)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, preexec_fn=pin
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"gamerec demo failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(done.stdout)
    train = report["train"]
    print(f"machine: {machine()}; pinned to {len(cores) if cores else 'all'} cores")
    print(f"load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(
        f"gamerec demo: wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min; training ran "
        f"{train['epochs_run']} epochs (best {train['best_epoch'] + 1}) in "
        f"{train['seconds']:.0f} s; eval {report['eval']['seconds']:.0f} s; index built in "
        f"{report['index']['build_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
