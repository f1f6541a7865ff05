"""Games nobody in the play data owns: the content mapping, `gamerec index` over the whole
catalog, and recommending them without retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamerec import pipeline
from gamerec.artifacts.model import read_model
from gamerec.artifacts.processed import read_processed
from gamerec.dataio.content import TokenRows, identity_tokens
from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError
from gamerec.evaluation.cold import catalog_engines
from gamerec.ranking.stages import ContentSimilarity, interleave, new_game_slots
from gamerec.results import IndexResult, TrainResult
from gamerec.runtime.recommender import Recommender
from gamerec.settings import Settings
from gamerec.towers.cold import (
    CONTENT_LAYOUT,
    NEIGHBOUR_SHARE,
    ContentMapper,
    catalog_tokens,
    neighbour_history,
    ridge_path,
    token_table,
)

STEAM_CSV_HEADER = (
    "appid,name,release_date,english,developer,publisher,platforms,required_age,categories,"
    "genres,steamspy_tags,achievements,positive_ratings,negative_ratings,average_playtime,"
    "median_playtime,owners,price\n"
)
#: cluster A and B: disjoint tags, genres and studios
CLUSTERS = {
    "A": ("Action", "Sword;Fantasy;Dungeon", "Blade Studio"),
    "B": ("Racing", "Cars;Driving;Speed", "Wheel Works"),
}
PLAYED = {"A": range(1000, 1015), "B": range(2000, 2015)}
NEW = {"A": range(3000, 3005), "B": range(4000, 4005)}


def catalog_rows(appids: range, cluster: str) -> str:
    genre, tags, studio = CLUSTERS[cluster]
    return "".join(
        f"{appid},{cluster} game {appid},2015-03-0{1 + appid % 9},1,{studio},{studio},windows,0,"
        f"Single-player,{genre},{tags},0,{900 + appid % 50},{100 + appid % 7},10,10,"
        f"20000-50000,{4.99 + appid % 3}\n"
        for appid in appids
    )


def write_inputs(root: Path) -> dict[str, Path]:
    """Plays of 120 users (half play only cluster A, half only B), the catalog of the played
    games, and a second catalog file of new games of each cluster that nobody plays."""
    rng = np.random.default_rng(0)
    lines = ["user,item,playtime\n"]
    for user in range(300):
        cluster = "A" if user % 2 == 0 else "B"
        for appid in rng.choice(list(PLAYED[cluster]), size=6, replace=False):
            lines.append(f"u{user},{appid},{int(rng.integers(0, 600))}\n")
    root.mkdir(parents=True, exist_ok=True)
    paths = {"plays": root / "plays.csv", "played": root / "played.csv", "new": root / "new.csv"}
    paths["plays"].write_text("".join(lines))
    paths["played"].write_text(
        STEAM_CSV_HEADER + catalog_rows(PLAYED["A"], "A") + catalog_rows(PLAYED["B"], "B")
    )
    paths["new"].write_text(
        STEAM_CSV_HEADER + catalog_rows(NEW["A"], "A") + catalog_rows(NEW["B"], "B")
    )
    return paths


def settings(data_dir: Path, inputs: dict[str, Path], with_new: bool) -> Settings:
    specs = [
        {"kind": "csv", "path": str(inputs["plays"]), "value_column": "playtime"},
        {"kind": "steam-csv", "path": str(inputs["played"])},
    ]
    if with_new:
        specs.append({"kind": "steam-csv", "path": str(inputs["new"])})
    return Settings.load(
        overrides={
            "data_dir": data_dir,
            "preprocess.inputs": specs,
            "train.epochs": 12,
            "train.hidden_dim": 32,
            "train.embedding_dim": 16,
            "train.batch_size": 32,
            "train.rerank": True,
        }
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Trained on the played games' catalog; then the catalog grows by the new games."""
    root = tmp_path_factory.mktemp("grown")
    inputs = write_inputs(root / "inputs")
    data_dir = root / "gamerec-data"
    before = settings(data_dir, inputs, with_new=False)
    pipeline.preprocess(before)
    train_summary = pipeline.train(before)
    first_index = pipeline.build_index(before)
    first_catalog = len(Recommender.from_dir(data_dir).catalog.names)
    after = settings(data_dir, inputs, with_new=True)
    pipeline.preprocess(after)  # the catalog grows; no `gamerec train`
    with pytest.raises(ArtifactError, match=r"another catalog.*run `gamerec index`"):
        Recommender.from_dir(data_dir)
    second_index = pipeline.build_index(after)
    return {
        "data_dir": data_dir,
        "train": train_summary,
        "first_index": first_index,
        "first_catalog": first_catalog,
        "second_index": second_index,
        "recommender": Recommender.from_dir(data_dir),
    }


def new_game_ranks(recommender: Recommender, cluster: str) -> tuple[list[int], list[int]]:
    """Ranks of cluster A's and B's new games for a player of ``cluster``'s played games."""
    played = {appid: 120.0 for appid in list(PLAYED[cluster])[:6]}
    recommender.new_games_share = 0.5  # room for all ten new games among the 40 places
    answer = recommender.recommend(played=played, k=len(recommender.catalog.names))
    rank = {r.appid: position for position, r in enumerate(answer)}
    return [rank[a] for a in NEW["A"]], [rank[a] for a in NEW["B"]]


def test_index_after_a_grown_catalog_embeds_the_new_games_without_training(
    grown: dict[str, object],
) -> None:
    first, second = grown["first_index"], grown["second_index"]
    assert isinstance(first, IndexResult) and isinstance(second, IndexResult)
    assert (first.items, first.trained, first.mapped) == (30, 30, 0)
    assert grown["first_catalog"] == 30
    assert (second.items, second.trained, second.mapped) == (40, 30, 10)
    recommender = grown["recommender"]
    assert isinstance(recommender, Recommender)
    assert recommender.n_items == 40
    # the new games can be recommended, and a history naming them uses them (placed by what
    # the catalog says about them, which the answer reports)
    recommender.new_games_share = 0.5
    answer = recommender.recommend(played={3000: 60.0, 1000: 60.0}, k=40)
    assert answer.history.not_in_model == [3000]
    assert answer.history.known == answer.history.used == 2
    assert {r.appid for r in answer} >= set(NEW["A"][1:]) | set(NEW["B"])
    # new games compete on merit, and hold at least a fifth of the places by default: one in
    # the first five, two in the first ten
    recommender.new_games_share = 0.2
    answer = recommender.recommend(played={1000: 60.0}, k=10)
    fresh = [rank for rank, r in enumerate(answer) if r.reason.startswith("new to gamerec")]
    assert len([r for r in fresh if r < 5]) >= 1 and len(fresh) >= 2
    assert [a.score for a in answer] == sorted((a.score for a in answer), reverse=True) or fresh


def test_players_of_a_cluster_get_its_new_games_first(grown: dict[str, object]) -> None:
    recommender = grown["recommender"]
    assert isinstance(recommender, Recommender)
    for cluster, (mine, theirs) in (
        ("A", new_game_ranks(recommender, "A")),
        ("B", tuple(reversed(new_game_ranks(recommender, "B")))),
    ):
        assert max(mine) < min(theirs), (cluster, mine, theirs)


def test_players_of_a_cluster_get_its_new_games_first_without_co_play(
    grown: dict[str, object],
) -> None:
    recommender = Recommender.from_dir(grown["data_dir"], rerank=False)  # type: ignore[arg-type]
    mine, theirs = new_game_ranks(recommender, "A")
    assert max(mine) < min(theirs)


def test_train_records_the_content_mapping_quality(grown: dict[str, object]) -> None:
    summary = grown["train"]
    assert isinstance(summary, TrainResult) and summary.content_mapping is not None
    quality = summary.content_mapping
    assert quality["games"] == 30 and quality["held_out_games"] == 3
    # two clusters with disjoint tags: the mapping beats each target's mean vector
    assert quality["embedding_held_out_cosine"] > quality["embedding_mean_vector_cosine"]


def test_a_model_of_another_content_layout_must_be_retrained(grown: dict[str, object]) -> None:
    data_dir = grown["data_dir"]
    assert isinstance(data_dir, Path)
    model = read_model(data_dir / "model", coplay="skip", content=True)
    vocabulary = {**(model.content_vocabulary or {}), "layout": CONTENT_LAYOUT + 1}
    with pytest.raises(ArtifactError, match=r"layout .*run `gamerec train`"):
        ContentMapper.from_arrays(vocabulary, model.content)
    with pytest.raises(ArtifactError, match=r"no content mapping.*run `gamerec train`"):
        ContentMapper.from_arrays(None, model.content)


def test_index_refuses_a_model_written_with_another_content_layout(tmp_path: Path) -> None:
    from gamerec.artifacts.store import write_manifest

    inputs = write_inputs(tmp_path / "inputs")
    data_dir = tmp_path / "gamerec-data"
    chosen = settings(data_dir, inputs, with_new=True)
    pipeline.preprocess(chosen)
    pipeline.train(
        chosen.model_copy(update={"train": chosen.train.model_copy(update={"epochs": 1})})
    )
    manifest = json.loads((data_dir / "model" / "manifest.json").read_text())
    manifest["content"]["layout"] = CONTENT_LAYOUT + 1
    extra = {k: v for k, v in manifest.items() if k not in ("stage", "format_version", "created")}
    write_manifest(
        data_dir / "model",
        "model",
        settings=extra.pop("settings"),
        inputs=extra.pop("inputs"),
        counts=extra.pop("counts"),
        extra={k: v for k, v in extra.items() if k != "files"},
    )
    with pytest.raises(ArtifactError, match=r"layout .*run `gamerec train`"):
        pipeline.build_index(chosen)


def test_a_new_games_history_row_is_half_its_nearest_trained_games_rows() -> None:
    """Games 0-3 are trained (0 and 1 hold tokens a and b, 2 and 3 hold c and d, 3 also e);
    game 4 is new with a and b (the twin of 0 and 1), game 5 new with c and e (closer to 3
    than to 2), game 6 new with a token no trained game has. Their history rows: half the
    closeness-weighted (cubed) mean of the nearest trained rows, half the mapping's row; game
    6 keeps the mapping's row."""
    tokens = [[0, 1], [0, 1], [2, 3], [2, 3, 4], [0, 1], [2, 4], [5]]
    rows = TokenRows(
        np.cumsum([0] + [len(t) for t in tokens]).astype(np.int64),
        np.concatenate(tokens).astype(np.int32),
    )
    content = ContentSimilarity(rows, np.ones(6, dtype=np.float32))
    trained = np.array([0, 1, 2, 3])
    history = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    mapped = np.full((3, 2), 0.5, dtype=np.float32)
    out = neighbour_history(content, np.array([4, 5, 6]), trained, history, mapped)
    share = NEIGHBOUR_SHARE
    np.testing.assert_allclose(out[0], share * np.array([1.0, 0.0]) + (1 - share) * 0.5, atol=1e-6)
    # closeness to game 2: 1/sqrt(2*2) = 0.5; to game 3: 2/sqrt(2*3)
    to_2, to_3 = 0.5**3, (2 / np.sqrt(6)) ** 3
    expected = (to_2 * history[2] + to_3 * history[3]) / (to_2 + to_3)
    np.testing.assert_allclose(out[1], share * expected + (1 - share) * 0.5, atol=1e-6)
    np.testing.assert_allclose(out[2], mapped[2])
    np.testing.assert_allclose(mapped, 0.5)  # the mapping's rows are not written over


def test_index_gives_new_games_rows_of_their_own_cluster(grown: dict[str, object]) -> None:
    """The indexed history row of a new game is half the mapping's row and half its nearest
    trained games' rows, found by the catalog's own tokens: games of its own cluster only."""
    recommender = grown["recommender"]
    assert isinstance(recommender, Recommender)
    catalog = recommender.catalog
    history = recommender.engine.user_tower.history
    data_dir = Path(grown["data_dir"])  # type: ignore[arg-type]
    model = read_model(data_dir / "model", content=True)
    mapper = ContentMapper.from_arrays(model.content_vocabulary, model.content)
    items = read_processed(data_dir / "processed", tables=("items",)).items
    table = token_table(model.description)
    assert table is not None
    content = ContentSimilarity(
        table.rows(catalog_tokens(items)), table.idf, identity_tokens(table.tokens)
    )
    trained = np.sort([catalog.by_appid[a] for cluster in PLAYED.values() for a in cluster])
    mean_of = {
        cluster: history[[catalog.by_appid[a] for a in PLAYED[cluster]]].mean(0)
        for cluster in PLAYED
    }
    for cluster, other in (("A", "B"), ("B", "A")):
        rows = np.array([catalog.by_appid[a] for a in NEW[cluster]])
        assert list(items["appid"].iloc[rows]) == list(NEW[cluster])
        _, mapped = mapper.map_items(items.iloc[rows])
        expected = neighbour_history(content, rows, trained, history[trained], mapped)
        np.testing.assert_allclose(history[rows], expected, atol=1e-5)
        assert np.abs(history[rows] - mapped).max() > 1e-3
        neighbours = (history[rows] - (1 - NEIGHBOUR_SHARE) * mapped) / NEIGHBOUR_SHARE
        for row in neighbours:
            to_mine = np.linalg.norm(row - mean_of[cluster])
            assert to_mine < 0.5 * np.linalg.norm(row - mean_of[other]), (cluster, to_mine)


def test_ridge_recovers_a_linear_map_and_shrinks_with_the_penalty() -> None:
    rng = np.random.default_rng(3)
    features = rng.standard_normal((200, 4))
    weight = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0]])
    targets = features @ weight + np.array([0.25, -0.5])
    (exact_w, exact_b), (shrunk_w, _) = ridge_path(features, targets, [1e-9, 1e6])
    np.testing.assert_allclose(exact_w, weight, atol=1e-6)
    np.testing.assert_allclose(exact_b, [0.25, -0.5], atol=1e-6)
    assert np.abs(shrunk_w).max() < 0.01  # a huge penalty leaves little but the intercept
    # a tiny known answer: y = 2x on centred x = (-1, 0, 1); lambda 1 gives 2 * 2 / (2 + 1)
    ((w, b),) = ridge_path(np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0], [4.0]]), [1.0])
    assert w[0, 0] == pytest.approx(4 / 3) and b[0] == pytest.approx(2 - 4 / 3)


# --- where new games go in an answer ---------------------------------------------------------


def test_new_games_take_every_fifth_place_at_the_default_share() -> None:
    assert new_game_slots(20, 0.2).tolist() == [4, 9, 14, 19]
    assert new_game_slots(10, 0.5).tolist() == [1, 3, 5, 7, 9]
    assert new_game_slots(4, 0.2).tolist() == []
    assert new_game_slots(3, 0.0).tolist() == []
    assert new_game_slots(3, 1.0).tolist() == [0, 1, 2]


@given(
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(1, 60),
    st.sampled_from([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5, 1.0]),
)
def test_interleave_keeps_each_list_in_order_and_its_top_is_the_shorter_answer(
    n_trained: int, n_new: int, k: int, share: float
) -> None:
    trained = [f"t{i}" for i in range(n_trained)]
    new = [f"n{i}" for i in range(n_new)]
    answer = interleave(trained, new, k, share)
    assert len(answer) == min(k, n_trained + n_new)
    assert [a for a in answer if a[0] == "t"] == trained[: sum(a[0] == "t" for a in answer)]
    assert [a for a in answer if a[0] == "n"] == new[: sum(a[0] == "n" for a in answer)]
    for shorter in range(1, k):  # what the evaluation measures at K is the answer of K
        assert interleave(trained, new, shorter, share) == answer[:shorter]
    slots = set(new_game_slots(k, share).tolist())
    for place, item in enumerate(answer):
        if place in slots and item[0] == "t":
            assert sum(a[0] == "n" for a in answer) == n_new  # only when new games ran out
        if place not in slots and item[0] == "n":
            assert sum(a[0] == "t" for a in answer) == n_trained


@pytest.mark.parametrize("rerank", [True, False])
def test_the_evaluation_ranks_what_the_recommender_answers(
    grown: dict[str, object], rerank: bool
) -> None:
    """P-COLD's engines, built from a model as the evaluation builds them (every catalog game
    embedded as `gamerec index` embeds it), rank every history exactly as
    Recommender.recommend answers it, new games and re-ranking included: the evaluation
    measures what a player gets."""
    from gamerec.artifacts.processed import read_processed

    data_dir = grown["data_dir"]
    assert isinstance(data_dir, Path)
    recommender = Recommender.from_dir(data_dir, rerank=rerank, new_games_share=0.2)
    items = read_processed(data_dir / "processed", tables=("items",)).items
    model = read_model(data_dir / "model", coplay="copy", content=True)
    engines = catalog_engines(model, items, 0.2)
    # the last is the fixed-places policy of old, measured beside the model's own
    engine = next(e for e in engines if e.reranks is rerank and "fixed places" not in e.name)
    n_items = engine.n_items
    allowed = recommender.catalog.recommendable.copy()
    histories = [
        {1000: 60.0, 1003: 600.0, 1007: 0.0},
        {2001: 30.0, 2002: 90.0},
        {1001: 10.0, 2004: 300.0, 3000: 45.0},  # a new game in the history too
    ]
    by_appid = recommender.catalog.by_appid
    for played in histories:
        items_played = np.array(sorted(by_appid[a] for a in played), dtype=np.int32)
        minutes = np.array(
            [played[int(recommender.catalog.appids[i])] for i in items_played], dtype=np.float32
        )
        one = UserItems(np.array([0, len(items_played)]), items_played, minutes, n_items)
        ranked = engine.rank_lists(one, 20, allowed)[0]
        answer = recommender.recommend(played=played, k=20)
        assert ranked[ranked >= 0].tolist() == [a.item_idx for a in answer], played
        assert sum(not engine.trained[i] for i in ranked) >= 4  # at least a fifth: places 5 ... 20


def test_eval_cold_trains_the_two_tower_without_the_new_games(tmp_path: Path) -> None:
    """`gamerec eval --protocol cold` trains a model that never saw the hidden games, and it
    finds a player's new games of their own cluster from what the catalog says of them."""
    inputs = write_inputs(tmp_path / "inputs")
    cold_settings = settings(tmp_path / "gamerec-data", inputs, with_new=True)
    pipeline.preprocess(cold_settings)
    report = pipeline.evaluate(cold_settings, protocol="cold", ks=[10])
    assert report.new_games is not None and report.cold_model is not None
    hidden = report.new_games["games"]
    assert hidden == 6  # a fifth of the 30 games with players
    assert report.model.startswith("evaluated: trained for P-COLD")
    assert report.cold_model["items"] == report.n_items - hidden == 24
    assert not (tmp_path / "gamerec-data" / "model").exists()  # model/ is not touched
    methods = report.methods
    new_recall = {
        name: method["new_games"]["metrics"]["recall@10"]["mean"]
        for name, method in methods.items()
    }
    assert new_recall["two-tower"] >= 0.8 and new_recall["two-tower + re-rank"] >= 0.8
    assert new_recall["two-tower"] > new_recall["ease"] + 0.5
