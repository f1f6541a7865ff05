"""Recommending on the bundled catalog: in-process latency, whole-process time, --all.

    python benchmarks/bench_recommend.py
    python benchmarks/bench_recommend.py --threads 1   (numpy on one BLAS thread, as `serve` runs)

References (issue), each measured in the same run where it is a process:
- in-process `recommend` p50 <= 1 ms and p99 <= 5 ms;
- `gamerec recommend` as a whole process <= 0.6 s median, against a process that only imports
  torch (which needs over 2 s on these machines);
- `gamerec recommend --all` for every bundled user in under 10 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _workspace import trained_workspace


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


#: as an installed package runs: Python's bytecode cache on (pip compiles it at install time; a
#: PYTHONDONTWRITEBYTECODE environment would otherwise recompile gamerec's modules every run)
PROCESS_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_process(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True, env=PROCESS_ENV)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=PROCESS_ENV)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    import argparse

    from gamerec.runtime.blas import set_blas_threads
    from gamerec.runtime.recommender import Recommender

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, help="numpy's BLAS threads in process (default: numpy's own)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        set_blas_threads(args.threads)

    root = trained_workspace()
    recommender = Recommender.from_dir(root)
    rng = np.random.default_rng(0)
    users = list(recommender.known_users)
    appids = [int(a) for a in recommender.catalog.appids if a >= 0]
    requests = []
    for _ in range(2000):
        if rng.random() < 0.5:
            requests.append({"user_id": users[rng.integers(len(users))]})
        else:
            chosen = rng.choice(appids, size=rng.integers(1, 40), replace=False)
            requests.append({"played": {int(a): float(rng.integers(0, 3000)) for a in chosen}})
    for request in requests[:50]:  # warm-up
        recommender.recommend(**request, k=10)
    latencies = []
    for request in requests:
        started = time.perf_counter()
        recommender.recommend(**request, k=10)
        latencies.append((time.perf_counter() - started) * 1000)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)

    gamerec = [sys.executable, "-m", "gamerec", "--data-dir", str(root)]
    played = ",".join(f"{a}:600" for a in appids[:15])
    cli = timed_process([*gamerec, "recommend", "--played", played, "--json"], runs=15)
    torch_import = timed_process([sys.executable, "-c", "import torch"], runs=5)
    started = time.perf_counter()
    out = Path(root).parent / "recs.parquet"
    subprocess.run(
        [*gamerec, "recommend", "--all", "--out", str(out)], check=True, capture_output=True
    )
    everyone = time.perf_counter() - started

    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"{recommender.n_items:,} games, {len(users):,} users, 2,000 requests; "
        f"BLAS threads in process: {args.threads or 'numpy default'}"
    )
    print(
        f"in-process recommend: p50 {p50:.3f} ms ({p50 / 1.0:.2f}x the 1 ms reference), "
        f"p99 {p99:.3f} ms ({p99 / 5.0:.2f}x the 5 ms reference)"
    )
    cli_median = statistics.median(cli)
    torch_median = statistics.median(torch_import)
    print(
        f"`gamerec recommend` process: median {cli_median:.3f} s "
        f"({cli_median / 0.6:.2f}x the 0.6 s reference); "
        f"`python -c 'import torch'`: median {torch_median:.3f} s "
        f"(ours takes {cli_median / torch_median:.2f}x of that)"
    )
    print(
        f"`gamerec recommend --all` ({len(users):,} users, k=10): {everyone:.2f} s "
        f"({everyone / 10.0:.2f}x the 10 s reference)"
    )


if __name__ == "__main__":
    main()
