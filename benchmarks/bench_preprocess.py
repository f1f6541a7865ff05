"""Benchmark ``gamerec preprocess``: the bundled demo data, and a generated 10-million-row CSV.

    python benchmarks/bench_preprocess.py            # both runs (the CSV is generated once)
    python benchmarks/bench_preprocess.py --rows 1000000 --skip-bundled

Each run is a fresh child process, so the peak resident memory reported is that run's own
(``resource.getrusage(RUSAGE_CHILDREN)`` after the child exits). The generated file imitates a
Steam play-history export: steamid-like user ids, appid items with Zipf-like popularity, heavy-
tailed games per user, playtime in minutes (a fifth of games never played), a few duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

WORK = Path(__file__).resolve().parent / ".work"

_CHILD = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from gamerec import pipeline
from gamerec.settings import Settings
data_dir, csv_path = sys.argv[1], sys.argv[2]
overrides = {"data_dir": data_dir}
if csv_path:
    overrides["preprocess.inputs"] = [
        {"kind": "csv", "path": csv_path, "user_column": "user", "item_column": "appid",
         "value_column": "playtime", "value_kind": "playtime_min", "item_key": "appid"}
    ]
settings = Settings.load(config=None, overrides=overrides)
summary = pipeline.preprocess(settings).to_dict()
elapsed = time.perf_counter() - start
keys = ("users", "items", "interactions", "title_match_rate", "before_filtering")
result = {"seconds": elapsed, "cpu_seconds": time.process_time(), **{k: summary[k] for k in keys}}
print(json.dumps(result))
"""


def generate(path: Path, rows: int, users: int, items: int, seed: int = 0) -> None:
    """Write ``rows`` interactions ``user,appid,playtime`` to ``path`` (CSV with a header)."""
    rng = np.random.default_rng(seed)
    # games per user: heavy-tailed (log-normal), scaled so that the total is about `rows`
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=users)
    per_user = np.maximum(1, np.round(weights / weights.sum() * rows)).astype(np.int64)
    user_of_row = np.repeat(np.arange(users, dtype=np.int64), per_user)[:rows]
    if len(user_of_row) < rows:
        extra = rng.integers(0, users, rows - len(user_of_row))
        user_of_row = np.concatenate([user_of_row, extra])
    # items: Zipf-like popularity over `items` appids (exponent 1.1 over ranks)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    cumulative = np.cumsum(popularity / popularity.sum())
    rank = np.minimum(np.searchsorted(cumulative, rng.random(rows)), items - 1)
    appids = np.sort(rng.choice(np.arange(10, 3_000_000, 10), size=items, replace=False))
    appid_of_rank = rng.permutation(appids)
    playtime = np.where(
        rng.random(rows) < 0.2, 0.0, np.round(rng.lognormal(mean=5.0, sigma=2.0, size=rows))
    )
    steamid = 76561197960265728 + rng.choice(10**9, size=users, replace=False)
    table = pa.table(
        {
            "user": pa.array(steamid[user_of_row].astype(str)),
            "appid": pa.array(appid_of_rank[rank]),
            "playtime": pa.array(playtime.astype(np.int64)),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pacsv.write_csv(table, tmp)
    tmp.replace(path)


def run_child(data_dir: Path, csv_path: Path | None) -> dict:
    """Preprocess in a fresh interpreter; return its summary, wall seconds and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), str(csv_path or "")],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"preprocess failed:\n{done.stderr}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the largest of any child so far; children run largest last
    result["peak_rss_mib"] = round(max(peak_kib, before) / 1024, 1)
    result["wall_seconds_with_interpreter"] = round(wall, 2)
    result["seconds"] = round(result["seconds"], 2)
    result["cpu_seconds"] = round(result["cpu_seconds"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--skip-bundled", action="store_true")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}, "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    if not args.skip_bundled:
        bundled = run_child(WORK / "bundled", None)
        print("bundled demo data:", json.dumps(bundled))

    csv_path = WORK / f"interactions-{args.rows}-{args.users}-{args.items}.csv"
    if not csv_path.exists():
        start = time.perf_counter()
        generate(csv_path, args.rows, args.users, args.items)
        print(
            f"generated {csv_path.name} ({csv_path.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - start:.1f} s"
        )
    generated = run_child(WORK / "generated", csv_path)
    print(f"{args.rows:,}-row CSV:", json.dumps(generated))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
