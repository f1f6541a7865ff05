"""P-COLD (new games) and the baselines that can rank them: content TF-IDF, owner popularity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import QUICK_SEARCH_ENV
from gamerec.cli import app
from gamerec.dataio.content import title_words
from gamerec.dataio.families import base_title
from gamerec.dataio.matrix import UserItems
from gamerec.evaluation.baselines import EASE, ContentTfidf, ItemKNN, Popularity, content_tokens
from gamerec.evaluation.protocol import ItemMetadata, build_protocol, cold_items
from gamerec.evaluation.report import EvalConfig, compare


def matrix(rows: list[list[int]], n_items: int) -> UserItems:
    users = [u for u, items in enumerate(rows) for _ in items]
    items = [i for row in rows for i in row]
    return UserItems.from_pairs(np.array(users), np.array(items), None, len(rows), n_items)


# --- content TF-IDF --------------------------------------------------------------------------


def test_content_tokens_are_lower_case_once_and_split_on_separators() -> None:
    tokens = content_tokens(
        [["RPG", "Indie"], []],
        [["Open World", "RPG"], []],
        ["Valve;Hidden Path", "FromSoftware, Inc."],
        ["Valve, Inc.", "CAPCOM Co., Ltd."],
        ["Counter-Strike: Global Offensive", "DARK SOULS™ III: Deluxe Edition"],
    )
    assert tokens == [
        sorted(
            [
                "genre:rpg",
                "genre:indie",
                "tag:open world",
                "tag:rpg",
                "dev:valve",
                "dev:hidden path",
                "pub:valve",  # "Inc." is no studio
                "title:counter",
                "title:counter strike",
            ]
        ),
        ["dev:fromsoftware", "pub:capcom", "title:dark", "title:dark souls"],
    ]
    # without names, no title words
    assert content_tokens([[]], [[]], [""], [""]) == [[]]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Persona 3 Reload", ["persona"]),
        ("The Elder Scrolls V: Skyrim Special Edition", ["elder", "elder scrolls"]),
        ("Sid Meier's Civilization® VI", ["sid", "sid meier"]),
        ("Half-Life 2", ["half", "half life"]),
        ("FINAL FANTASY VII REMAKE INTERGRADE", ["final", "final fantasy"]),
        ("Age of Empires III (2007)", ["age", "age empires"]),
        ("Fallout 4: Game of the Year Edition", ["fallout"]),
        # a word further on tells no series: these share none
        ("Stardew Valley", ["stardew", "stardew valley"]),
        ("Everdream Valley", ["everdream", "everdream valley"]),
        ("Grimm's Hollow", ["grimm", "grimm hollow"]),
        ("Hollow Knight", ["hollow", "hollow knight"]),
        ("", []),
        (None, []),
    ],
)
def test_title_words_tell_the_series(name: object, words: list[str]) -> None:
    assert title_words(name) == words


@given(st.text(max_size=60))
def test_title_words_are_the_first_words_of_the_base_title(name: str) -> None:
    starts = title_words(name)
    assert starts == sorted(set(starts)) and len(starts) <= 2
    base = base_title(name).split()
    for start in starts:
        words = start.split()
        assert all(len(word) >= 3 and not word.isdigit() for word in words)
        # in the name's order, before any number
        assert [base.index(word) for word in words] == sorted(base.index(w) for w in words)
        assert words[0] in base
    if len(starts) == 2:
        assert starts[1].startswith(starts[0] + " ")


def test_games_sharing_tags_with_a_users_games_rank_first() -> None:
    tags = [
        ["RPG", "Fantasy"],  # 0: owned
        ["RPG", "Fantasy", "Open World"],  # 1: owned
        ["RPG", "Fantasy"],  # 2: nobody has played it, same tags
        ["Racing"],  # 3
        ["Racing", "Cars"],  # 4: nobody has played it
        ["Puzzle"],  # 5
        ["Open World"],  # 6: shares one tag
    ]
    tokens = content_tokens([[] for _ in tags], tags, [""] * 7, [""] * 7)
    train = matrix([[0, 1, 3], [3, 5]], 7)  # game 2 and 4 have no interactions at all
    scorer = ContentTfidf(tokens).fit(train)
    scores = scorer.score(matrix([[0, 1]], 7))[0]
    scores[[0, 1]] = -np.inf
    ranking = np.argsort(-scores, kind="stable").tolist()
    assert ranking[:2] == [2, 6]
    assert scores[[3, 4, 5]].tolist() == [0.0, 0.0, 0.0]  # nothing in common: cosine 0
    # identical token sets: the profile of game 0 alone is game 2's vector, cosine 1
    assert scorer.score(matrix([[0]], 7))[0, 2] == pytest.approx(1.0, abs=1e-6)


def test_content_idf_weighs_rare_tokens_more() -> None:
    # token "common" on 3 of 4 games, "rare" on 2: idf = ln(5/4) + 1 and ln(5/3) + 1
    tokens = [["common", "rare"], ["common"], ["common", "rare"], ["other"]]
    vectors = ContentTfidf(tokens).fit().vectors
    common, rare = np.log(5 / 4) + 1, np.log(5 / 3) + 1
    norm = np.hypot(common, rare)
    np.testing.assert_allclose(vectors[0], [common / norm, 0, rare / norm], rtol=1e-6)


# --- popularity by SteamSpy owners -----------------------------------------------------------


def test_owner_popularity_ranks_by_owners_then_players() -> None:
    owners = np.array([500.0, 2_000.0, 500.0, np.nan, 10_000.0])
    train = matrix([[0], [2], [2], [3], [3], [3]], 5)  # game 4: no players, most owners
    scores = Popularity(owners).fit(train).score(matrix([[]], 5))[0]
    # 4 (owners) > 1 > 2 (500 owners, 2 players) > 0 (500 owners, 1 player) > 3 (unknown)
    assert np.argsort(-scores).tolist() == [4, 1, 2, 0, 3]
    assert Popularity().fit(train).score(matrix([[]], 5))[0].tolist() == [1, 0, 2, 3, 0]


# --- the P-COLD protocol on a synthetic split ------------------------------------------------

N_ITEMS = 50


def synthetic_split(seed: int = 0) -> tuple[np.ndarray, ...]:
    """60 train, 20 valid, 20 test users owning 10 random games each; 80/20 fold-in/targets."""
    rng = np.random.default_rng(seed)
    users, items, groups, roles = [], [], [], []
    for user in range(100):
        group = "train" if user < 60 else "valid" if user < 80 else "test"
        games = rng.choice(N_ITEMS, size=10, replace=False)
        for position, game in enumerate(games):
            users.append(user)
            items.append(game)
            groups.append(group)
            roles.append("train" if group == "train" else "target" if position < 2 else "foldin")
    playtime = rng.uniform(0, 600, len(users))
    return np.array(users), np.array(items), playtime, np.array(groups), np.array(roles)


def test_new_games_are_a_seeded_fifth_of_the_eligible_ones() -> None:
    eligible = np.zeros(N_ITEMS, dtype=bool)
    eligible[::2] = True  # 25 eligible games
    first = cold_items(eligible, seed=0)
    assert len(first) == 5 and eligible[first].all()
    assert np.array_equal(first, np.sort(first))
    np.testing.assert_array_equal(cold_items(eligible, seed=0), first)
    assert not np.array_equal(cold_items(eligible, seed=1), first)


def test_no_training_or_validation_row_touches_a_new_game() -> None:
    columns = synthetic_split()
    new = cold_items(np.ones(N_ITEMS, dtype=bool), seed=3)
    cold = build_protocol(*columns, n_items=N_ITEMS, protocol="cold", new_items=new)
    sg = build_protocol(*columns, n_items=N_ITEMS, protocol="sg")
    np.testing.assert_array_equal(cold.new_items, new)
    for part in (cold.train, cold.valid.histories, cold.valid.targets):
        assert not np.isin(part.indices, new).any()
    # exactly the new games' rows are gone from training
    assert cold.train.nnz == sg.train.nnz - np.isin(sg.train.indices, new).sum()
    # the test users and their split are P-SG's, new games included
    for mine, theirs in [
        (cold.test.histories, sg.test.histories),
        (cold.test.targets, sg.test.targets),
    ]:
        np.testing.assert_array_equal(mine.indptr, theirs.indptr)
        np.testing.assert_array_equal(mine.indices, theirs.indices)
    assert np.isin(cold.test.targets.indices, new).any()
    # what is fit on the training matrix knows nothing of a new game
    assert Popularity().fit(cold.train).counts[new].sum() == 0
    assert not EASE(lam=10.0).fit(cold.train).weights[:, new].any()
    assert not ItemKNN().fit(cold.train).similarity[:, new].any()


class FixedScorer:
    """Scores every game by a fixed vector: ranks are known in advance."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores.astype(np.float32)

    def score(self, histories: UserItems) -> np.ndarray:
        return np.tile(self.scores, (histories.n_rows, 1))


def test_new_game_metrics_count_only_new_game_targets() -> None:
    columns = synthetic_split()
    new = cold_items(np.ones(N_ITEMS, dtype=bool), seed=3)
    metadata = ItemMetadata(
        genres=[[] for _ in range(N_ITEMS)],
        tags=[[f"t{i % 5}"] for i in range(N_ITEMS)],
        developer=[""] * N_ITEMS,
        publisher=[""] * N_ITEMS,
        owners=np.arange(N_ITEMS, dtype=np.float64),
    )
    data = build_protocol(
        *columns, n_items=N_ITEMS, protocol="cold", new_items=new, metadata=metadata
    )
    scores = np.zeros(N_ITEMS)
    scores[new] = 100.0 + np.arange(len(new))  # every new game above every other game
    report = compare(
        data,
        ["popularity", "ease", "content"],
        [N_ITEMS],
        scorers=[FixedScorer(scores)],
        config=EvalConfig(bootstrap=50, ease_lambdas=(10.0,)),
    )
    test = data.test
    new_targets = np.isin(test.targets.indices, new)
    rows = np.repeat(np.arange(test.n_users), test.targets.row_lengths())
    with_new = np.unique(rows[new_targets])
    assert report["new_games"] == {
        "games": len(new),
        "targets": int(new_targets.sum()),
        "users_with_new_targets": len(with_new),
    }
    fixed = report["methods"]["fixed"]
    assert fixed["new_games"]["users"] == len(with_new)
    assert fixed["users"] == test.n_users
    # at K = the whole catalog every target is found: recall 1 over any set of targets
    assert fixed["new_games"]["metrics"][f"recall@{N_ITEMS}"]["mean"] == pytest.approx(1.0)
    # the new games fill the top of the ranking: a user's first new target is at most at rank
    # len(new), so NDCG over the new targets alone beats NDCG over all targets
    assert (
        fixed["new_games"]["metrics"][f"ndcg@{N_ITEMS}"]["mean"]
        > fixed["metrics"][f"ndcg@{N_ITEMS}"]["mean"]
    )
    assert set(fixed["new_games"]["versus"]) == {"popularity", "ease", "content"}
    assert set(report["methods"]["content"]["new_games"]["versus"]) == {"popularity", "ease"}
    assert report["methods"]["popularity"]["params"]["by"].startswith("SteamSpy owners")


# --- gamerec eval --protocol cold on the bundled data ----------------------------------------


@pytest.fixture
def workspace(bundled_workspace: Path, workdir: Path) -> Path:
    import shutil

    data_dir = workdir / "gamerec-data"
    shutil.copytree(bundled_workspace / "processed", data_dir / "processed")
    return data_dir


def test_cli_eval_cold_reports_new_games(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEREC_EVAL__BASELINES", '["popularity", "itemknn"]')
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCHS", "2")  # a real model, trained quickly
    for name, value in QUICK_SEARCH_ENV.items():
        monkeypatch.setenv(name, value)
    args = ["--data-dir", str(workspace), "eval", "-p", "cold", "--k", "20", "--bootstrap", "50"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "cold" and report["protocol_name"] == "P-COLD"
    assert set(report["methods"]) == {
        "popularity",
        "itemknn",
        "content",
        "two-tower",
        "two-tower + re-rank",
        "two-tower + re-rank, fixed places",
    }
    hidden = report["new_games"]["games"]
    assert hidden > 0 and report["new_games"]["targets"] > 0
    # the model under test knows every game with players but the hidden ones
    assert report["cold_model"]["items"] == report["n_items"] - hidden
    assert report["cold_model"]["epochs_run"] == 2
    new_recall = {
        name: method["new_games"]["metrics"]["recall@20"]["mean"]
        for name, method in report["methods"].items()
    }
    # item-kNN has nothing to say about a game nobody trained on owns
    assert new_recall["content"] > new_recall["itemknn"] == 0.0
    assert new_recall["two-tower + re-rank"] > new_recall["popularity"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "P-COLD" in table.stdout and "new games only" in table.stdout
    assert "content - itemknn: Recall@20" in table.stdout
    assert "two-tower + re-rank - content: Recall@20" in table.stdout
