"""Each script in examples/ runs as a user would run it, on the bundled data, with known answers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gamerec.dataio.history import History
from gamerec.runtime.recommender import Recommender

EXAMPLES = Path(__file__).parents[1] / "examples"
LIBRARY = Path(__file__).parent / "fixtures" / "steam-webapi" / "GetOwnedGames_include_appinfo.json"

pytestmark = pytest.mark.slow


def run_example(name: str, *args: object, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def catalog_appids(workspace: Path) -> set[int]:
    items = pq.read_table(workspace / "processed" / "items.parquet", columns=["appid"])
    return {appid for appid in items.column("appid").to_pylist() if appid is not None}


def test_recommend_for_a_steam_library_file(trained_workspace: Path, tmp_path: Path) -> None:
    lines = run_example(
        "recommend_for_steam_library.py", LIBRARY, trained_workspace, 5, cwd=tmp_path
    )
    library = dict(History.from_library(LIBRARY).played)
    assert lines[0] == f"{len(library)} games in the library"
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    appids = [int(row[1]) for row in rows]
    assert set(appids) <= catalog_appids(trained_workspace) - set(library)  # owned ones left out
    expected = Recommender.from_dir(trained_workspace).recommend(played=library, k=5)
    assert appids == [answer.appid for answer in expected]
    assert all(
        any(part.startswith("because you played ") for part in row[4].split("; ")) for row in rows
    )


def test_batch_recommendations_to_parquet(trained_workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    lines = run_example("batch_to_parquet.py", trained_workspace, out, 3, cwd=tmp_path)
    recs = pq.read_table(out).to_pandas()
    users = recs["user_id"].nunique()
    assert lines[0] == f"wrote {len(recs)} rows for {users} users to {out}"
    assert lines[1] == f"read back {len(recs)} rows; rows per user: 3 to 3"
    assert len(recs) == 3 * users
    assert {tuple(ranks) for ranks in recs.groupby("user_id")["rank"].apply(list)} == {(1, 2, 3)}
    items = pq.read_table(trained_workspace / "processed" / "items.parquet").to_pandas()
    assert set(recs["name"]) <= set(items["name"])
    assert set(recs["appid"].dropna().astype(int)) <= catalog_appids(trained_workspace)
    assert len(lines) == 3 + 3  # the first user's three games


def test_a_client_of_gamerec_serve(trained_workspace: Path, tmp_path: Path) -> None:
    lines = run_example("serve_client.py", trained_workspace, cwd=tmp_path)
    assert lines[0] == "health: ok"
    answer = json.loads("\n".join(lines[1:]))
    appids = [game["appid"] for game in answer["recommendations"]]
    assert len(appids) == 5
    assert set(appids) <= catalog_appids(trained_workspace) - {620, 400}  # played: left out


def test_training_on_your_own_csv(tmp_path: Path) -> None:
    lines = run_example("train_on_your_csv.py", tmp_path / "mine", cwd=tmp_path)
    assert lines[0] == "preprocessed 300 players and 20 games"
    assert (tmp_path / "mine" / "workspace" / "index" / "manifest.json").is_file()
    recommended = [int(appid) for appid in lines[-1].split(":", 1)[1].split()]
    # a player of three strategy games is offered the other strategy games, no racing game
    assert len(recommended) == 5
    assert set(recommended) <= set(range(1004, 1011))


def test_preprocess_and_inspect(tmp_path: Path) -> None:
    lines = run_example("preprocess_and_inspect.py", "ws", cwd=tmp_path)
    assert lines[0] == "read 12,393 players and 5,155 games"
    assert lines[1].startswith("kept 3,752 players, 3,956 games")
    assert "most owned games:" in lines
    ranked = lines[lines.index("most owned games:") + 1 :]
    assert len(ranked) == 10
    assert ranked[0].startswith(" 1. Team Fortress 2 (appid 440): ")
    assert ranked[1].startswith(" 2. Dota 2 (appid 570): ")
    counts = [re.search(r"\): ([\d,]+) players; ", line) for line in ranked]
    players = [int(match.group(1).replace(",", "")) for match in counts if match]
    assert len(players) == 10
    assert players == sorted(players, reverse=True)
    assert (tmp_path / "ws" / "processed" / "manifest.json").is_file()
