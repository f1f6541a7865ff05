"""The Recommender and the `recommend` / `similar` commands on a real (small) trained model."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from gamerec import pipeline
from gamerec.cli import app
from gamerec.dataio.files import normalise_title
from gamerec.dataio.history import History
from gamerec.errors import (
    AmbiguousNameError,
    ArtifactError,
    InvalidRequestError,
    NotFoundError,
    UsageError,
)
from gamerec.runtime.recommender import Recommender
from gamerec.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
LIBRARY = FIXTURES / "steam-webapi" / "GetOwnedGames_include_appinfo.json"
runner = CliRunner()


@pytest.fixture(scope="module")
def recommender(trained_workspace: Path) -> Recommender:
    return Recommender.from_dir(trained_workspace)


def known_user(recommender: Recommender, min_games: int = 10) -> tuple[str, set[int]]:
    for user_id, row in recommender.known_users.items():
        owned = recommender.histories.row(row)
        if len(owned) >= min_games:
            return user_id, set(owned.tolist())
    raise AssertionError("no user with enough games")


def test_owned_games_never_come_back_for_a_known_user(recommender: Recommender) -> None:
    user_id, owned = known_user(recommender)
    answers = recommender.recommend(user_id=user_id, k=50)
    assert len(answers) == 50
    assert not owned & {a.item_idx for a in answers}
    # games with players and games nobody plays each come best first; at least a fifth are
    # the latter (recommend.new_games_share), more where they score higher
    new = [a.reason.startswith("new to gamerec's players") for a in answers]
    assert sum(new) >= 10
    for kind in (True, False):
        part = [a.score for a, n in zip(answers, new, strict=True) if n is kind]
        assert part == sorted(part, reverse=True)


def test_owned_games_never_come_back_for_a_played_list(recommender: Recommender) -> None:
    played = {620: 1200.0, 400: 300.0, 570: 5000.0}
    answers = recommender.recommend(played=played, k=30)
    assert not {a.appid for a in answers} & set(played)
    played_names = {recommender.catalog.names[recommender.catalog.by_appid[a]] for a in played}
    for answer in answers:
        assert "because you played " in answer.reason, answer.reason
        because = answer.reason.split("because you played ", 1)[1].split("; ")[0]
        assert because in played_names


def test_a_new_game_above_a_higher_score_says_its_place_was_kept(
    recommender: Recommender,
) -> None:
    """Scores fall down the list on one scale, except where a game new to gamerec's players
    holds one of the places kept for new games (recommend.new_games_share): that answer, and
    only that kind, says so."""
    user_id, _ = known_user(recommender)
    for request in ({"user_id": user_id}, {"played": {620: 1200.0, 400: 300.0}}):
        answers = recommender.recommend(**request, k=30)
        scores = [a.score for a in answers]
        kept = [a.reason.startswith("new to gamerec's players (a place kept") for a in answers]
        for place, answer in enumerate(answers):
            above_a_higher = any(later > answer.score for later in scores[place + 1 :])
            assert kept[place] == above_a_higher, (place, answer.name, answer.reason)
        falling = [score for score, held in zip(scores, kept, strict=True) if not held]
        assert falling == sorted(falling, reverse=True)


def test_include_owned_allows_owned_games(recommender: Recommender) -> None:
    user_id, owned = known_user(recommender)
    answers = recommender.recommend(user_id=user_id, k=len(owned) + 20, exclude_owned=False)
    assert owned & {a.item_idx for a in answers}


def test_genre_filter_keeps_only_that_genre(recommender: Recommender) -> None:
    answers = recommender.recommend(played={620: 600}, genres=["rpg"], k=10)
    assert len(answers) == 10
    assert all("RPG" in a.genres for a in answers)


def test_genres_only_gets_genre_aware_popularity_and_says_so(recommender: Recommender) -> None:
    answers = recommender.recommend(genres=["Strategy"], k=5)
    assert all("Strategy" in a.genres for a in answers)
    assert all(a.reason == "among the most owned Strategy games on Steam" for a in answers)
    assert all(a.matched_genres == ["Strategy"] for a in answers)
    assert answers.note is not None and "no played game known" in answers.note
    # most owned on Steam today first (SteamSpy's owners, then reviews), not most played in
    # the play data: Baldur's Gate 3, which nobody in the play data owns, is among them
    catalog = recommender.catalog
    by_owners = [
        (
            catalog.owners_low[a.item_idx] + catalog.owners_high[a.item_idx],
            catalog.reviews[a.item_idx],
        )
        for a in answers
    ]
    assert by_owners == sorted(by_owners, reverse=True)
    assert "Baldur's Gate 3" in {a.name for a in answers}
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    nothing = recommender.recommend(k=3)
    assert [a.name for a in nothing] == [
        "Dota 2",  # 200,000,000 .. 500,000,000 owners
        "Counter-Strike: Global Offensive",  # 100,000,000 .. 200,000,000
        "PUBG: BATTLEGROUNDS",  # 50,000,000 .. 100,000,000, the most reviewed of them
    ]
    # nobody in the play data owns PUBG: a list by the play data's players never showed it
    assert not recommender.engine.trained[nothing[2].item_idx]


def test_similar_never_returns_the_game_itself(recommender: Recommender) -> None:
    portal2 = recommender.resolve_game("portal 2")
    for game in ("Portal 2", 620, "620"):
        answers = recommender.similar(game, k=20)
        assert len(answers) == 20
        assert portal2 not in {a.item_idx for a in answers}


def test_names_resolve_case_insensitively_and_ambiguity_lists_candidates(
    recommender: Recommender,
) -> None:
    assert recommender.resolve_game("PORTAL 2") == recommender.catalog.by_appid[620]
    with pytest.raises(AmbiguousNameError) as caught:
        recommender.resolve_game("half-life 2: ep")
    assert len(caught.value.candidates) >= 2
    assert any("Episode One" in c for c in caught.value.candidates)
    with pytest.raises(NotFoundError, match="no game named") as missing:
        recommender.resolve_game("zzzz not a game zzzz")
    # every command the message suggests exists
    suggested = re.findall(r"`gamerec (\w+)", str(missing.value))
    assert suggested
    assert set(suggested) <= set(typer.main.get_command(app).commands)
    with pytest.raises(NotFoundError, match="appid 999999999"):
        recommender.similar(999999999)


def test_a_name_no_game_has_suggests_the_names_that_hold_its_start(
    recommender: Recommender,
) -> None:
    """A game renamed since the catalog's crawl (Counter-Strike 2 is Global Offensive in the
    2025 SteamSpy crawl) or a misspelt last word: the message names the most owned games whose
    names hold the query's longest start that any name holds."""
    with pytest.raises(NotFoundError) as renamed:
        recommender.resolve_game("Counter-Strike 2")
    message = str(renamed.value)
    assert "names with 'counter-strike': Counter-Strike: Global Offensive (appid 730)" in message
    with pytest.raises(NotFoundError, match=r"'hollow knig': Hollow Knight \(appid 367520\)"):
        recommender.resolve_game("Hollow Knigt")
    # a misspelt word is cut a letter at a time: not "the", which every third name holds
    with pytest.raises(NotFoundError, match=r"'the witcher': The Witcher 3: Wild Hunt"):
        recommender.resolve_game("The Witcherr 3")
    with pytest.raises(NotFoundError, match=r"'hollow': Hollow Knight"):
        recommender.resolve_game("Hollowknigt")
    with pytest.raises(NotFoundError) as nothing:
        recommender.resolve_game("qxqxq jvjvj")
    assert "names with" not in str(nothing.value)


def test_games_given_by_name_are_owned_games(recommender: Recommender) -> None:
    """A name or an appid in ``games`` is that game owned with no playtime: the same answer
    as ``played`` with 0 minutes; an ambiguous name lists its candidates, and a game known by
    its name alone (no appid) is refused with what to do."""
    by_name = recommender.recommend(games=["PORTAL 2", "400"], k=10)
    by_appid = recommender.recommend(played={620: 0.0, 400: 0.0}, k=10)
    assert by_name.to_dict() == by_appid.to_dict()
    assert by_name.history.known == 2 and {620, 400}.isdisjoint(a.appid for a in by_name)
    with pytest.raises(AmbiguousNameError) as caught:
        recommender.recommend(games=["half-life 2: ep"])
    assert any("Episode One" in c for c in caught.value.candidates)
    catalog = recommender.catalog
    name_only = next(
        name
        for row, name in enumerate(catalog.names)
        if catalog.appids[row] < 0 and len(catalog.by_title.get(normalise_title(name), [])) == 1
    )
    with pytest.raises(NotFoundError, match=r"no Steam appid.*leave it out"):
        recommender.recommend(games=[name_only])
    with pytest.raises(InvalidRequestError, match="10,001 games given; the limit is 10,000"):
        recommender.recommend(games=["Portal 2"] * 10_001)
    # an appid no catalog has is reported as unknown, as played= reports it; numpy's ints count
    unknown = recommender.recommend(games=[np.int64(620), 999999999, "999999998"], k=10)
    assert unknown.history.unknown == [999999998, 999999999]
    assert [a.appid for a in unknown] == [a.appid for a in recommender.recommend(played={620: 0})]
    for bad, message in (([-1], "-1 is not an appid"), ([True], "a name or an appid")):
        with pytest.raises(InvalidRequestError, match=message):
            recommender.recommend(games=bad)
    with pytest.raises(InvalidRequestError, match="not one string"):
        recommender.recommend(games="Portal 2")  # type: ignore[arg-type]


def test_a_name_in_other_letters_is_found_by_its_exact_name(recommender: Recommender) -> None:
    """The title key keeps ASCII letters and digits alone: every name in Chinese letters shares
    the key "" and a Russian one keeps its digits alone; the exact name finds the game."""
    catalog = recommender.catalog
    foreign = [
        row
        for row, name in enumerate(catalog.names)
        if name
        and not any(c.isascii() and c.isalnum() for c in name)
        and catalog.lower_names.count(name.lower()) == 1
    ]
    assert len(foreign) > 10
    for row in foreign[:10]:
        assert recommender.resolve_game(catalog.names[row]) == row


@pytest.mark.parametrize("k", [0, -3, 10**9])
def test_bad_top_k_is_refused(recommender: Recommender, k: int) -> None:
    with pytest.raises(InvalidRequestError, match="top-k"):
        recommender.recommend(played={620: 10}, k=k)


def test_an_unknown_user_is_answered_like_a_new_one(recommender: Recommender) -> None:
    """Popular games of the genres asked for, and a note naming the user and what to do."""
    answer = recommender.recommend(user_id="u_123", genres=["rpg"], k=5)
    assert len(answer) == 5
    assert all("RPG" in a.genres for a in answer)
    assert answer == recommender.recommend(genres=["rpg"], k=5)
    assert answer.note is not None and "unknown user 'u_123'" in answer.note
    assert "gamerec users" in answer.note and "--played" in answer.note
    # with games given, those games answer for the unknown user
    played = recommender.recommend(user_id="u_123", played={620: 60.0}, k=5)
    assert [a.appid for a in played] == [
        a.appid for a in recommender.recommend(played={620: 60.0}, k=5)
    ]
    assert played.note is not None and "answered from the games given" in played.note


def test_an_unknown_genre_is_a_clear_error(recommender: Recommender) -> None:
    with pytest.raises(NotFoundError, match=r"unknown genre or tag 'not-a-genre'; genres: .*RPG"):
        recommender.recommend(genres=["not-a-genre"])


def test_parse_pairs() -> None:
    assert History.parse_pairs("620:1200, 400:300,570") == {620: 1200.0, 400: 300.0, 570: 0.0}
    with pytest.raises(UsageError, match="appid:amount"):
        History.parse_pairs("portal:12")


@pytest.mark.slow  # ranks every user of the bundled data
def test_recommend_all_never_includes_owned_games(trained_workspace: Path, tmp_path: Path) -> None:
    settings = Settings.load(overrides={"data_dir": trained_workspace})
    out = tmp_path / "recs.parquet"
    summary = pipeline.recommend_all(settings, out, k=5)
    table = pq.read_table(out).to_pandas()
    recommender = Recommender.from_dir(trained_workspace)
    assert summary.users == len(recommender.known_users) == table["user_id"].nunique()
    assert len(table) == 5 * summary.users
    owned_appids = {
        user_id: {int(recommender.catalog.appids[i]) for i in recommender.histories.row(row)}
        for user_id, row in recommender.known_users.items()
    }
    clashes = [
        (user, appid)
        for user, appid in zip(table["user_id"], table["appid"], strict=True)
        if appid == appid and int(appid) in owned_appids[user]  # appid == appid: not NaN
    ]
    assert clashes == []
    # only games with an appid: no title-only row, DLC, soundtrack, beta, server or tool
    assert table["appid"].notna().all()
    kinds = {
        int(a): recommender.catalog.kinds[recommender.catalog.by_appid[int(a)]]
        for a in table["appid"]
    }
    assert set(kinds.values()) == {"game"}
    jsonl = tmp_path / "recs.jsonl"
    pipeline.recommend_all(settings, jsonl, k=2)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 2 * summary.users
    assert set(rows[0]) == {"user_id", "rank", "appid", "name", "score"}


def test_library_file_gives_recommendations_without_owned_games(trained_workspace: Path) -> None:
    result = runner.invoke(
        app,
        ["--data-dir", str(trained_workspace), "recommend", "--library", str(LIBRARY), "--json"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    owned = {game["appid"] for game in json.loads(LIBRARY.read_text())["response"]["games"]}
    answers = answer["recommendations"]
    assert len(answers) == 10
    assert not owned & {a["appid"] for a in answers}
    # every game of the library is accounted for
    history = answer["history"]
    assert history["given"] == len(owned)
    assert history["used"] == history["known"] == len(owned) - len(history["unknown_appids"])
    # of the games used, those nobody in the play data owns are listed: they are placed by
    # what the catalog says about them
    mapped = set(history["not_in_model_appids"])
    assert mapped and mapped <= owned - set(history["unknown_appids"])


def test_cli_json_equals_the_library_call(
    trained_workspace: Path, recommender: Recommender
) -> None:
    user_id, _ = known_user(recommender)
    result = runner.invoke(
        app,
        [
            "--data-dir",
            str(trained_workspace),
            "recommend",
            "--user",
            user_id,
            "-k",
            "7",
            "--genres",
            "action",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    expected = recommender.recommend(user_id=user_id, genres=["action"], k=7).to_dict()
    assert json.loads(result.stdout) == expected
    similar = runner.invoke(
        app, ["--data-dir", str(trained_workspace), "similar", "portal 2", "--json"]
    )
    assert json.loads(similar.stdout) == [a.to_dict() for a in recommender.similar("portal 2")]
    by_name = runner.invoke(
        app,
        [
            *("--data-dir", str(trained_workspace), "recommend"),
            *("--game", "Portal 2", "-G", "400", "--json"),
        ],
    )
    assert by_name.exit_code == 0, by_name.output
    expected = recommender.recommend(played={620: 0.0, 400: 0.0}).to_dict()
    assert json.loads(by_name.stdout) == expected


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["recommend", "--genres", "nope"], "unknown genre or tag 'nope'", 1),
        (["recommend", "--played", "620:1", "-k", "0"], "top-k must be a positive integer", 1),
        (["recommend", "--played", "6x0"], "--played expects appid:amount", 2),
        (["recommend", "--achievements", "620:1.5"], "whole numbers", 2),
        (["similar", "half-life 2: ep"], "matches", 1),
        (["recommend", "--game", "half-life 2: ep"], "matches", 1),
        (["recommend", "--game", "zzzz not a game"], "no game named", 1),
        (["similar", "zzzz not a game"], "no game named", 1),
        (["recommend", "--all"], "--out", 2),
        (
            ["recommend", "--library", "nope.json"],
            "nope.json: no such file (given with --library)",
            1,
        ),
    ],
)
def test_cli_bad_input_is_one_error_line(trained_workspace: Path, args, message, code) -> None:
    """One line on stderr, no traceback; a malformed option exits 2, as usage errors do."""
    result = runner.invoke(app, ["--data-dir", str(trained_workspace), *args])
    assert result.exit_code == code
    assert "Error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output


def test_cli_unknown_user_gets_popular_games_and_a_note(trained_workspace: Path) -> None:
    result = runner.invoke(
        app,
        ["--data-dir", str(trained_workspace), "recommend", "--user", "u_123", "--genres", "rpg"],
    )
    assert result.exit_code == 0, result.output
    assert "unknown user 'u_123'" in " ".join(result.stdout.split())
    as_json = runner.invoke(
        app,
        ["--data-dir", str(trained_workspace), "recommend", "-u", "u_123", "-g", "rpg", "--json"],
    )
    answers = json.loads(as_json.stdout)["recommendations"]
    assert answers and all(
        a["reason"] == "among the most owned RPG games on Steam" for a in answers
    )


def _copy(workspace: Path, tmp_path: Path) -> Path:
    target = tmp_path / "gamerec-data"
    shutil.copytree(workspace, target)
    return target


def test_corrupt_index_file_is_refused(trained_workspace: Path, tmp_path: Path) -> None:
    workspace = _copy(trained_workspace, tmp_path)
    index_file = workspace / "index" / "items.faiss"
    index_file.write_bytes(index_file.read_bytes()[:100])
    # a server checks every byte of index/ once; a truncated catalog array is refused by its
    # shape on every load (a one-shot command of a flat index never reads items.faiss)
    with pytest.raises(ArtifactError, match="changed since it was written; run `gamerec index`"):
        Recommender.from_dir(workspace, in_memory=True)
    history = workspace / "index" / "history.npy"
    history.write_bytes(history.read_bytes()[:-4096])
    with pytest.raises(ArtifactError, match="gamerec index"):
        Recommender.from_dir(workspace)


def test_index_of_another_model_is_refused(trained_workspace: Path, tmp_path: Path) -> None:
    workspace = _copy(trained_workspace, tmp_path)
    embeddings = np.load(workspace / "model" / "item_embeddings.npy")
    rolled = np.roll(embeddings, 1, axis=0)
    np.save(workspace / "model" / "item_embeddings.npy", rolled)
    manifest = json.loads((workspace / "model" / "manifest.json").read_text())
    from gamerec.artifacts import fingerprint

    manifest["files"]["item_embeddings.npy"] = fingerprint(workspace / "model/item_embeddings.npy")
    (workspace / "model" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="another model"):
        Recommender.from_dir(workspace)


def test_model_of_another_catalog_is_refused(trained_workspace: Path, tmp_path: Path) -> None:
    workspace = _copy(trained_workspace, tmp_path)
    settings = Settings.load(overrides={"data_dir": workspace, "preprocess.min_item_users": 3})
    pipeline.preprocess(settings)
    with pytest.raises(ArtifactError, match="another catalog"):
        Recommender.from_dir(workspace)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_on_the_model_embeddings(trained_workspace: Path, kind: str) -> None:
    from gamerec.index import build_index, measure_recall
    from gamerec.settings import IndexSettings

    defaults = IndexSettings()
    embeddings = np.load(trained_workspace / "model" / "item_embeddings.npy")
    index, _ = build_index(
        embeddings,
        kind,
        exact_max_items=defaults.exact_max_items,
        hnsw_m=defaults.hnsw_m,
        hnsw_ef_construction=defaults.hnsw_ef_construction,
        hnsw_ef_search=defaults.hnsw_ef_search,
        ivf_nlist=defaults.ivf_nlist,
        ivf_nprobe=defaults.ivf_nprobe,
    )
    assert measure_recall(index, embeddings, k=20, n_queries=1000, seed=0) >= 0.99


def test_blas_thread_count_can_be_set_and_read_back() -> None:
    import faiss  # noqa: F401  (its wheel loads a second OpenBLAS, found first by path order)

    from gamerec.runtime.blas import numpy_blas_threads, set_blas_threads

    before = set_blas_threads(1)
    if before is None:
        pytest.skip("numpy here does not use OpenBLAS")
    try:
        assert before == 1
        assert numpy_blas_threads() in (1, None)  # numpy's own, not only FAISS's
        assert set_blas_threads(2) == 2
        assert numpy_blas_threads() in (2, None)
    finally:
        set_blas_threads(os.cpu_count() or 1)  # OpenBLAS's default: one thread per core
    with pytest.raises(ValueError, match="at least 1"):
        set_blas_threads(0)


#: real names from the bundled data that a player can own but must never be recommended
NOT_GAMES = {
    "Arma 2 Operation Arrowhead Beta (Obsolete)": "title-only",
    "Deadlight Original Soundtrack": "soundtrack",
    "Left 4 Dead 2 Dedicated Server": "server",
}


def test_what_is_not_a_game_is_never_recommended(recommender: Recommender) -> None:
    catalog = recommender.catalog
    positions = {name: catalog.names.index(name) for name in NOT_GAMES}
    assert {name: catalog.kinds[i] for name, i in positions.items()} == NOT_GAMES
    assert not catalog.recommendable[list(positions.values())].any()
    # the title-only beta is among the most played games: popularity would pick it first
    beta = positions["Arma 2 Operation Arrowhead Beta (Obsolete)"]
    assert beta < recommender.n_items and catalog.players[beta] >= np.sort(catalog.players)[-100]
    everything = [
        recommender.recommend(k=50),
        recommender.recommend(genres=["Action"], k=50),
        recommender.recommend(played={220: 600, 620: 60}, k=100),
        recommender.similar(620, k=50),
    ]
    user_id, _ = known_user(recommender)
    everything.append(recommender.recommend(user_id=user_id, k=100))
    for answers in everything:
        assert all(a.appid is not None for a in answers)
        assert {catalog.kinds[a.item_idx] for a in answers} == {"game"}


def test_dlc_only_on_request_and_only_for_an_owned_base_game(recommender: Recommender) -> None:
    catalog = recommender.catalog
    in_model = range(recommender.n_items)
    dlc = [i for i in in_model if catalog.kinds[i] == "dlc" and catalog.base_appids[i] >= 0]
    dlc = [i for i in dlc if int(catalog.base_appids[i]) in catalog.by_appid]
    assert dlc, "the bundled play data owns some DLC of known base games"
    item = dlc[0]
    base = int(catalog.base_appids[item])
    played = {base: 600.0}
    k = recommender.max_top_k
    assert item not in {a.item_idx for a in recommender.recommend(played=played, k=k)}
    with_dlc = recommender.recommend(played=played, k=k, include_dlc=True)
    assert item in {a.item_idx for a in with_dlc}
    # never the DLC of a game the player does not own
    owned_bases = {base}
    for answer in with_dlc:
        if catalog.kinds[answer.item_idx] == "dlc":
            assert int(catalog.base_appids[answer.item_idx]) in owned_bases


def test_given_games_are_reported_known_used_or_unknown(recommender: Recommender) -> None:
    catalog = recommender.catalog
    # a catalog game nobody in the play data owns: indexed from what the catalog says about it
    new_game = next(
        int(a)
        for a, players in zip(catalog.appids, catalog.players, strict=True)
        if a >= 0 and players == 0 and int(a) > 1_000_000
    )
    answers = recommender.recommend(played={620: 60, new_game: 30, 999_999_999: 5}, k=3)
    assert answers.history.to_dict() == {
        "given": 3,
        "known": 2,
        "used": 2,
        "not_in_model_appids": [new_game],
        "unknown_appids": [999_999_999],
    }


def test_filtered_searches_over_kept_subsets_answer_as_the_full_index(
    trained_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = Recommender.from_dir(trained_workspace)
    plain = Recommender.from_dir(trained_workspace)
    monkeypatch.setattr(plain.engine, "_exact_subset", lambda allowed, at_once=True: None)
    user_id, _ = known_user(fast)
    requests = [
        {"played": {620: 600.0, 400: 60.0}, "k": 20},
        {"played": {620: 600.0, 400: 60.0}, "genres": ["RPG"], "k": 20},
        {"user_id": user_id, "genres": ["Action", "Strategy"], "k": 30},
        {"user_id": user_id, "k": 10, "exclude_owned": False},
    ]
    # a filter's first search scans the whole index under its mask, the next ones its subset
    for _ in range(2):
        for request in requests:
            assert fast.recommend(**request).to_dict() == plain.recommend(**request).to_dict()
        assert fast.similar(620, k=15) == plain.similar(620, k=15)
    assert len(fast.engine._subsets) >= 3  # trained, new, and each genre filter


@pytest.mark.slow  # ranks every user of the bundled data
def test_recommend_all_rows_are_the_answers_of_recommend(recommender: Recommender) -> None:
    """One engine: for 200 known users, the batch answer (`recommend --all`) is exactly what
    `recommend --user` answers them, in the same order, new-game places included."""
    chosen = set(list(recommender.known_users)[:200])
    rows: dict[str, list[int]] = {}
    for user_ids, items, _ in recommender.recommend_all(k=20, batch_size=64):
        for user_id, row in zip(user_ids, items, strict=True):
            if user_id in chosen:
                rows[user_id] = row[row >= 0].tolist()
    assert len(rows) == 200
    new_games = 0
    for user_id in sorted(chosen):
        answer = recommender.recommend(user_id=user_id, k=20)
        assert rows[user_id] == [a.item_idx for a in answer], user_id
        new_games += sum(not recommender.engine.trained[a.item_idx] for a in answer)
    assert new_games > 0  # the batch answers carry games nobody in the play data owns too


def test_gamers_words_filter_by_the_tags_the_catalog_knows(recommender: Recommender) -> None:
    """ "shooter", "fps" and "roguelike" are tags, not genres: they filter by the tag (matched
    by letters alone, so "roguelike" finds "Rogue-like"), and the answer says which matched."""
    for word, tag in (("shooter", "Shooter"), ("FPS", "FPS"), ("roguelike", "Rogue-like")):
        answer = recommender.recommend(played={620: 600.0}, genres=[word], k=5)
        assert answer, word
        for game in answer:
            assert tag in game.tags or tag in recommender.catalog.tags[game.item_idx], game.name
            assert game.matched_genres == [tag]
    both = recommender.recommend(played={620: 600.0}, genres=["rpg", "open world"], k=10)
    for game in both:
        assert "RPG" in game.genres or "Open World" in recommender.catalog.tags[game.item_idx]


def test_released_since_keeps_only_games_of_those_years(recommender: Recommender) -> None:
    answer = recommender.recommend(played={620: 600.0}, k=10, released_since=2016)
    assert len(answer) == 10
    assert all(game.release_year is not None and game.release_year >= 2016 for game in answer)
    few = recommender.recommend(played={620: 600.0}, k=10, released_since=2099)
    assert len(few) == 0
    assert (
        few.note is not None
        and "only 0 of the 10 asked for were released in or after 2099" in few.note
    )
    with pytest.raises(InvalidRequestError, match="year"):
        recommender.recommend(played={620: 600.0}, released_since=22)
