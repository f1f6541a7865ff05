"""The README's evaluation table: P-SG, P-LOO and P-COLD on the bundled data, per split seed.

Prints the machine, and how long each seed took, stage by stage (the README's "about N min per
seed on 2 cores" and "P-COLD's training took N s of its eval").

    python benchmarks/eval_table.py                # split seeds 0, 1, 2
    python benchmarks/eval_table.py --seeds 0

For each seed: ``gamerec preprocess`` (``preprocess.seed``), ``train``, ``index`` and ``eval``
under each protocol, all at default settings, in a temporary workspace; then one line per
method with Recall@20 / NDCG@20 and their 95% CIs, the paired NDCG@20 difference of the default
recommender from EASE, and, for the 129-game library in the test fixtures, how many of the top
20 are games nobody in the play data owns. Writes the JSON of every report to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gamerec import pipeline
from gamerec.settings import Settings

LIBRARY = Path(__file__).parent.parent / "tests" / "fixtures" / "steam-webapi"
LIBRARY_FILE = LIBRARY / "GetOwnedGames_include_appinfo.json"


def cell(metric: dict[str, Any]) -> str:
    ci = metric.get("ci")
    return f"{metric['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def run_seed(seed: int, root: Path) -> dict[str, Any]:
    settings = Settings.load(overrides={"data_dir": root / f"seed{seed}", "preprocess.seed": seed})
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pipeline.preprocess(settings)
    timings["preprocess"] = time.perf_counter() - started
    started = time.perf_counter()
    train = pipeline.train(settings)
    timings["train"] = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.build_index(settings)
    timings["index"] = time.perf_counter() - started
    reports = {}
    for protocol in ("sg", "loo", "cold"):
        started = time.perf_counter()
        reports[protocol] = pipeline.evaluate(settings, protocol=protocol)
        timings[f"eval {protocol}"] = time.perf_counter() - started
    library = pipeline.recommend(settings, library=LIBRARY_FILE, k=20)
    return {
        "seed": seed,
        "timings": timings,
        "train": {k: v for k, v in train.to_dict().items() if k != "history"},
        "reports": {protocol: report.to_dict() for protocol, report in reports.items()},
        "library": library.to_dict(),
    }


def print_seed(result: dict[str, Any]) -> None:
    seed, timings = result["seed"], result["timings"]
    spent = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items())
    cold = result["reports"]["cold"].get("cold_model") or {}
    print(
        f"\n== split seed {seed}: {sum(timings.values()) / 60:.1f} min in all ({spent}; "
        f"P-COLD's own training {cold.get('seconds', float('nan')):.0f} s of its eval)"
    )
    for report in result["reports"].values():
        print(
            f"-- {report['protocol_name']}: {report['users_evaluated']} users, "
            f"model {report['model']}"
        )
        for name, method in report["methods"].items():
            metrics = method["metrics"]
            line = f"{name:22s} R@20 {cell(metrics['recall@20'])}  N@20 {cell(metrics['ndcg@20'])}"
            if "new_games" in method:
                new = method["new_games"]["metrics"]
                line += f"  new R@20 {cell(new['recall@20'])} N@20 {cell(new['ndcg@20'])}"
            print(line)
            for reference, versus in (method.get("versus") or {}).items():
                if reference in ("ease", "content"):
                    print(f"    - {reference}: NDCG@20 {cell(versus['ndcg@20'])}")
            for reference, versus in ((method.get("new_games") or {}).get("versus") or {}).items():
                if reference == "content":
                    print(f"    - {reference} (new games): Recall@20 {cell(versus['recall@20'])}")
    answers = result["library"]["recommendations"]
    new = [a for a in answers if a["reason"].startswith("new to gamerec's players")]
    print(
        f"-- library of {result['library']['history']['given']} games: "
        f"{len(new)} of the top {len(answers)} are games nobody in the play data owns "
        f"(ranks {[answers.index(a) + 1 for a in new]}): {[a['name'] for a in new]}; "
        f"years known: {[a['release_year'] for a in answers if a['release_year']]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("eval_table.json"))
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            result = run_seed(seed, Path(folder))
            print_seed(result)
            results.append(result)
            sys.stdout.flush()
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
