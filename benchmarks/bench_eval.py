"""Benchmark evaluation: ``gamerec eval`` on the bundled data, and the metrics at scale.

    python benchmarks/bench_eval.py                  # both parts, eval pinned to 2 CPU cores
    python benchmarks/bench_eval.py --cores 0        # eval on every core
    python benchmarks/bench_eval.py --skip-eval --users 10000 --items 5000

Part 1 preprocesses the bundled steam-200k data into a temporary workspace and times
``gamerec eval`` (all baselines, P-SG and P-LOO, 1,000 bootstrap resamples) in a fresh child
process, pinned to ``--cores`` CPU cores with ``sched_setaffinity``.

Part 2 ranks a 10,000-user x 5,000-game score matrix and computes Recall, NDCG, Precision,
MAP and hit rate at K = 10, 20, 50, once with ``evaluate_scorer`` (batched, vectorised) and once
with a naive per-user Python loop, checks that both agree, and prints the speed-up. The load
average is printed too: other processes on the machine slow both parts down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gamerec.dataio.matrix import UserItems
from gamerec.evaluation.protocol import bootstrap_ci, evaluate_scorer

KS = [10, 20, 50]


def run_eval(data_dir: Path, protocol: str, cores: int) -> dict:
    env = dict(os.environ)
    env.pop("GAMEREC_DATA_DIR", None)

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        ["gamerec", "--data-dir", str(data_dir), "eval", "--protocol", protocol, "--json"],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=pin,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"gamerec eval failed:\n{done.stderr}")
    report = json.loads(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "report": report}


def bench_cli(cores: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        data_dir = Path(tmp) / "gamerec-data"
        subprocess.run(
            ["gamerec", "--data-dir", str(data_dir), "preprocess", "--json"],
            capture_output=True,
            check=True,
        )
        label = f"{cores} cores" if cores else "all cores"
        for protocol in ("sg", "loo"):
            result = run_eval(data_dir, protocol, cores)
            report = result["report"]
            print(
                f"gamerec eval --protocol {protocol} ({label}): {result['wall_s']:.1f} s wall, "
                f"{result['cpu_s']:.1f} s CPU, {report['users_evaluated']} test users"
            )
            for name, method in report["methods"].items():
                recall = method["metrics"]["recall@20"]
                ndcg = method["metrics"]["ndcg@20"]
                print(
                    f"    {name:<11} fit {method['fit_seconds']:6.1f} s  rank "
                    f"{method['eval_seconds']:5.1f} s   Recall@20 {recall['mean']:.3f} "
                    f"[{recall['ci'][0]:.3f}, {recall['ci'][1]:.3f}]   NDCG@20 "
                    f"{ndcg['mean']:.3f} [{ndcg['ci'][0]:.3f}, {ndcg['ci'][1]:.3f}]"
                )
            if report.get("ease_lambda") is not None:
                print(f"    EASE lambda {report['ease_lambda']:g}")


class ArrayScorer:
    """Hands out consecutive rows of a precomputed score matrix."""

    name = "array"

    def __init__(self, scores: np.ndarray):
        self.scores = scores
        self.row = 0

    def score(self, histories: UserItems) -> np.ndarray:
        block = self.scores[self.row : self.row + histories.n_rows]
        self.row += histories.n_rows
        return block


def naive(scores: np.ndarray, histories: UserItems, targets: UserItems) -> dict[str, np.ndarray]:
    """The reference: one user at a time, in Python."""
    k_max = max(KS)
    out: dict[str, list[float]] = {f"{m}@{k}": [] for m in ("recall", "ndcg") for k in KS}
    out.update({f"{m}@{k}": [] for m in ("precision", "map", "hit_rate") for k in KS})
    for u in range(len(scores)):
        row = scores[u].astype(np.float64)
        row[histories.row(u)] = -np.inf
        ranked = np.argsort(-row, kind="stable")[:k_max].tolist()
        wanted = set(targets.row(u).tolist())
        for k in KS:
            hits = [1 if item in wanted else 0 for item in ranked[:k]]
            m = min(k, len(wanted))
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(m))
            ap = sum(sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h) / m
            out[f"recall@{k}"].append(sum(hits) / m)
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"precision@{k}"].append(sum(hits) / k)
            out[f"map@{k}"].append(ap)
            out[f"hit_rate@{k}"].append(float(sum(hits) > 0))
    return {key: np.array(values) for key, values in out.items()}


def random_histories(n_users: int, n_items: int, per_user: int, rng: np.random.Generator):
    """Disjoint histories and targets, a Zipf-like popularity, ``per_user`` games each."""
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    rows, items, roles = [], [], []
    for u in range(n_users):
        games = rng.choice(n_items, size=per_user, replace=False, p=popularity)
        rows.append(np.full(per_user, u))
        items.append(games)
        roles.append(np.arange(per_user) < per_user // 5)  # a fifth are targets
    row, item, is_target = (np.concatenate(x) for x in (rows, items, roles))
    histories = UserItems.from_pairs(row[~is_target], item[~is_target], None, n_users, n_items)
    targets = UserItems.from_pairs(row[is_target], item[is_target], None, n_users, n_items)
    return histories, targets, popularity


def bench_metrics(n_users: int, n_items: int) -> None:
    rng = np.random.default_rng(0)
    histories, targets, popularity = random_histories(n_users, n_items, 25, rng)
    # scores that favour popular games and the targets a little, so the metrics are not ~0
    scores = rng.random((n_users, n_items), dtype=np.float32) + popularity.astype(np.float32) * 50
    target_rows = np.repeat(np.arange(n_users), targets.row_lengths())
    scores[target_rows, targets.indices] += rng.random(targets.nnz, dtype=np.float32) * 0.5

    started = time.perf_counter()
    result = evaluate_scorer(ArrayScorer(scores), histories, targets, KS, batch_size=1024)
    fast = time.perf_counter() - started

    started = time.perf_counter()
    reference = naive(scores, histories, targets)
    slow = time.perf_counter() - started

    for key, values in reference.items():
        np.testing.assert_allclose(result.per_user[key], values, rtol=1e-9, atol=1e-12)
    print(
        f"metrics for {n_users:,} users x {n_items:,} games, K = {KS}: vectorised {fast:.2f} s, "
        f"naive per-user loop {slow:.2f} s -> {slow / fast:.0f}x faster (results identical)"
    )
    recall, ndcg = result.mean("recall@20"), result.mean("ndcg@20")
    print(f"    e.g. Recall@20 {recall:.4f}, NDCG@20 {ndcg:.4f}")
    started = time.perf_counter()
    bootstrap_ci(result.per_user, 1000, seed=0)
    print(
        f"bootstrap, 1,000 resamples of {n_users:,} users x {len(result.per_user)} metrics: "
        f"{time.perf_counter() - started:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="CPU cores for gamerec eval (0: all)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--skip-eval", action="store_true", help="only the metrics part")
    parser.add_argument("--skip-metrics", action="store_true", help="only the gamerec eval part")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load}; numpy {np.__version__}"
    )
    if not args.skip_eval:
        bench_cli(args.cores)
    if not args.skip_metrics:
        bench_metrics(args.users, args.items)


if __name__ == "__main__":
    main()
