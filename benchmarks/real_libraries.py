"""Real Steam libraries, a fifth of each hidden: does gamerec find today's games?

    python benchmarks/real_libraries.py [DATA_DIR] [LIBRARY.json ...] [--seeds 5] [--json]

Each library is a Steam Web API GetOwnedGames answer: by default the two in the test fixtures
(129 games with names, and 69 games of another player with appids and playtime only), else the
ones given. Of the games the catalog knows, a seeded fifth is hidden and the rest is the
history; gamerec's top 20 for that history is compared with the 2025 crawl's most-owned games
(SteamSpy's owners, minus the history's games): how many hidden games each finds (Recall@20:
found / min(20, hidden), averaged over libraries and seeds), and how many hidden *current*
games (appid above 1,000,000: store pages from about 2019 on) each finds. The ratios gamerec /
most-owned are printed; DATA_DIR is a trained workspace with an index (default ./gamerec-data,
as `gamerec demo` leaves it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.dataio.history import History
from gamerec.runtime.recommender import Recommender

FIXTURES = [
    Path(__file__).parent.parent / "tests" / "fixtures" / "steam-webapi" / name
    for name in ("GetOwnedGames_include_appinfo.json", "GetOwnedGames_basic.json")
]
#: store pages above this appid are from about 2019 on
CURRENT_APPID = 1_000_000
K = 20


def most_owned(recommender: Recommender) -> list[int]:
    """Recommendable games by SteamSpy owners in the catalog (2025 crawl), most first."""
    catalog = recommender.catalog
    owners = (catalog.owners_low + catalog.owners_high) / 2.0
    rows = np.flatnonzero(catalog.recommendable & (catalog.appids >= 0))
    order = rows[np.lexsort((rows, -owners[rows]))]
    return [int(catalog.appids[row]) for row in order]


def one_split(
    recommender: Recommender, played: dict[int, float], popular: list[int], seed: int
) -> dict[str, Any]:
    known = sorted(a for a in played if a in recommender.catalog.by_appid)
    rng = np.random.default_rng(seed)
    hidden = set(rng.choice(known, size=max(1, round(len(known) / 5)), replace=False).tolist())
    history = {a: played[a] for a in known if a not in hidden}
    answer = [a.appid for a in recommender.recommend(played=history, k=K)]
    baseline = [a for a in popular if a not in history][:K]
    current = {a for a in hidden if a > CURRENT_APPID}
    denominator = min(K, len(hidden))
    return {
        "hidden": len(hidden),
        "hidden_current": len(current),
        "found": len(hidden & set(answer)),
        "found_current": len(current & set(answer)),
        "current_listed": sum(a is not None and a > CURRENT_APPID for a in answer),
        "recall": len(hidden & set(answer)) / denominator,
        "popular_found": len(hidden & set(baseline)),
        "popular_found_current": len(current & set(baseline)),
        "popular_recall": len(hidden & set(baseline)) / denominator,
    }


def run(data_dir: Path, libraries: list[Path], seeds: int) -> dict[str, Any]:
    recommender = Recommender.from_dir(data_dir)
    popular = most_owned(recommender)
    per_library = []
    for path in libraries:
        played = dict(History.from_library(path).played)
        splits = [one_split(recommender, played, popular, seed) for seed in range(seeds)]
        per_library.append({"library": str(path), "games": len(played), "splits": splits})
    splits = [s for library in per_library for s in library["splits"]]

    def total(key: str) -> int:
        return sum(s[key] for s in splits)

    def mean(key: str) -> float:
        return float(np.mean([s[key] for s in splits]))

    summary = {
        "libraries": len(libraries),
        "seeds": seeds,
        "hidden_current": total("hidden_current"),
        "found_current": total("found_current"),
        "popular_found_current": total("popular_found_current"),
        "recall_at_20": mean("recall"),
        "popular_recall_at_20": mean("popular_recall"),
        "current_listed_per_answer": mean("current_listed"),
    }
    summary["current_ratio"] = summary["found_current"] / max(summary["popular_found_current"], 1)
    summary["recall_ratio"] = summary["recall_at_20"] / max(summary["popular_recall_at_20"], 1e-9)
    return {"summary": summary, "libraries": per_library}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=Path("gamerec-data"))
    parser.add_argument("libraries", nargs="*", type=Path)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.data_dir, args.libraries or FIXTURES, args.seeds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s = result["summary"]
    print(f"{s['libraries']} libraries x {s['seeds']} seeded hidden fifths, top {K}")
    print(
        f"hidden current games found: gamerec {s['found_current']} of {s['hidden_current']}, "
        f"most owned {s['popular_found_current']} ({s['current_ratio']:.2f}x)"
    )
    print(
        f"Recall@20: gamerec {s['recall_at_20']:.3f}, most owned "
        f"{s['popular_recall_at_20']:.3f} ({s['recall_ratio']:.2f}x)"
    )
    print(f"current games per answer of 20: {s['current_listed_per_answer']:.1f}")


if __name__ == "__main__":
    main()
