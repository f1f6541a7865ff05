"""FAISS indexes (flat, HNSW, IVF) against exact numpy search, on synthetic item embeddings.

Run: python benchmarks/bench_index.py            (4k, 100k and 1M items; several minutes)
     python benchmarks/bench_index.py --sizes 4000

For each catalog size it builds each index kind and measures the build time, single-query
latency (p50/p99 over one query at a time through ``gamerec.index.search``, as the runtime
calls it), batch throughput, and recall@20 against the exact numpy reference, which is
measured in the same run; speed-ups are ratios against that reference.

Embeddings: ``clustered_embeddings`` (L2-normalised, long-tailed clusters, within-cluster
variation of rank 32 in 128 dimensions). Queries are held-out draws from the same
distribution, so no query is an indexed item.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import glob
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from gamerec.index import (
    build_index,
    clustered_embeddings,
    configure_index,
    exact_search,
    recall_at_k,
    search,
    set_threads,
)

K = 20
DIM = 128
INTRINSIC_DIM = 32
#: above this catalog size flat is left out (it is what the numpy row measures) and the ANN
#: builds use lighter parameters, to keep the 1M run within minutes on 2 cores
LARGE = 100_000
LARGE_PLAN: list[tuple[str, dict[str, Any]]] = [
    ("hnsw", {"hnsw_m": 16, "hnsw_ef_construction": 40, "hnsw_ef_search": 128}),
    ("ivf", {"ivf_nlist": 1024, "ivf_nprobe": 32}),
]
SMALL_PLAN: list[tuple[str, dict[str, Any]]] = [("flat", {}), ("hnsw", {}), ("ivf", {})]
#: extra search-time settings measured on the same built index (no rebuild)
SWEEP: dict[str, list[dict[str, int]]] = {"hnsw": [{"ef_search": 512}], "ivf": [{"nprobe": 8}]}


@dataclass
class Row:
    name: str
    params: str
    build_s: float | None
    p50_ms: float
    p99_ms: float
    qps: float
    recall: float


def _call_with_int(function: Any, value: int) -> None:
    function(ctypes.c_int(value))


def _numpy_blas_threads() -> Callable[[int], None] | None:
    """A setter for numpy's OpenBLAS thread count, when numpy bundles OpenBLAS."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*"))
    for path in libs:
        if "openblas" not in os.path.basename(path):
            continue
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return functools.partial(_call_with_int, getattr(lib, name))
    return None


def _latencies(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    fn(queries[:1])  # warm-up
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        fn(queries[i : i + 1])
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _qps(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    start = time.perf_counter()
    fn(queries)
    return len(queries) / (time.perf_counter() - start)


def bench_size(n_items: int, args: argparse.Namespace) -> list[Row]:
    large = n_items > LARGE
    n_ref = args.ref_queries_large if large else args.ref_queries
    n_single = args.single
    data = clustered_embeddings(
        n_items + args.batch, DIM, intrinsic_dim=INTRINSIC_DIM, seed=args.seed
    )
    items, queries = data[:n_items], data[n_items:]
    ref_queries = queries[:n_ref]

    rows = []
    start = time.perf_counter()
    _, truth = exact_search(items, ref_queries, K)
    ref_qps = n_ref / (time.perf_counter() - start)
    ref_single = max(20, n_single // 10) if large else n_single
    # one query on a multi-threaded BLAS mostly waits for its threads (FAISS's search runs
    # small batches on one thread for the same reason), so time numpy's on one BLAS thread
    blas_threads = _numpy_blas_threads()
    if blas_threads is not None:
        blas_threads(1)
    p50, p99 = _latencies(lambda q: exact_search(items, q, K), queries[:ref_single])
    if blas_threads is not None:
        blas_threads(os.cpu_count() or 1)
    rows.append(Row("numpy exact", "argpartition", 0.0, p50, p99, ref_qps, 1.0))
    print(f"  numpy exact: p50 {p50:.3f} ms, {ref_qps:,.0f} q/s", file=sys.stderr, flush=True)

    for kind, params in LARGE_PLAN if large else SMALL_PLAN:
        start = time.perf_counter()
        index, resolved = build_index(items, kind, **params)
        build_s: float | None = time.perf_counter() - start
        for override in [{}, *SWEEP.get(kind, [])]:
            configure_index(index, **override)
            settings = {**resolved, **override}
            run = functools.partial(search, index, k=K)
            p50, p99 = _latencies(run, queries[:n_single])
            qps = _qps(run, queries)
            _, found = search(index, ref_queries, K)
            shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "kind") or "exact"
            rows.append(Row(kind, shown, build_s, p50, p99, qps, recall_at_k(found, truth)))
            print(
                f"  {kind} {shown}: build {build_s or 0:.1f} s, p50 {p50:.3f} ms, "
                f"recall {rows[-1].recall:.4f}",
                file=sys.stderr,
                flush=True,
            )
            build_s = None  # the sweep rows reuse the index built above
        del index
    return rows


def _build(row: Row) -> str:
    return "(same index)" if row.build_s is None else f"{row.build_s:.2f}"


def machine() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return [
        f"- CPU: {cpu}; `nproc` = {os.cpu_count()}; FAISS threads = {faiss.omp_get_max_threads()}",
        f"- Python {platform.python_version()}, faiss-cpu {faiss.__version__}, "
        f"numpy {np.__version__}, {platform.system()} {platform.machine()}",
        f"- load average at start: {load[0]:.1f} (other work was running on the machine)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,100000,1000000", help="catalog sizes")
    parser.add_argument("--single", type=int, default=500, help="single queries timed")
    parser.add_argument("--batch", type=int, default=10_000, help="queries in the batch run")
    parser.add_argument("--ref-queries", type=int, default=1000, help="recall queries")
    parser.add_argument("--ref-queries-large", type=int, default=200, help="... above 100k")
    parser.add_argument("--threads", type=int, default=None, help="FAISS threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",")]

    started = time.perf_counter()
    command = " ".join(["python benchmarks/bench_index.py", *sys.argv[1:]])
    lines = [*machine(), f"- command: `{command}`"]
    for n_items in sizes:
        print(f"{n_items:,} items x {DIM}", file=sys.stderr, flush=True)
        rows = bench_size(n_items, args)
        ref = rows[0]
        n_ref = args.ref_queries_large if n_items > LARGE else args.ref_queries
        lines += [
            "",
            f"**{n_items:,} items x {DIM}** (recall@{K} over {n_ref:,} held-out queries; "
            f"batch of {args.batch:,} queries)",
            "",
            "| index | parameters | build s | p50 ms | p99 ms | p50 vs numpy | batch q/s "
            f"| q/s vs numpy | recall@{K} |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in rows:
            lines.append(
                f"| {row.name} | {row.params} | {_build(row)} | {row.p50_ms:.3f} "
                f"| {row.p99_ms:.3f} | {ref.p50_ms / row.p50_ms:.1f}x | {row.qps:,.0f} "
                f"| {row.qps / ref.qps:.1f}x | {row.recall:.4f} |"
            )
    lines += ["", f"Total run time: {time.perf_counter() - started:.0f} s."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
