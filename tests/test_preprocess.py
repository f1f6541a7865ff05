"""Preprocessing: the catalog join, dedupe, k-core filtering, the P-SG split and processed/."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gamerec import pipeline
from gamerec.artifacts import read_manifest
from gamerec.artifacts.processed import Processed, read_processed
from gamerec.cli import app
from gamerec.dataio.catalog import METADATA_COLUMNS
from gamerec.dataio.files import normalise_title
from gamerec.dataio.interactions import RAW_COLUMNS, LoadedInteractions
from gamerec.dataio.preprocess import build_processed, make_split
from gamerec.errors import DataError
from gamerec.render import preprocess_summary
from gamerec.results import PreprocessResult
from gamerec.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
SPLIT: dict[str, Any] = {
    "valid_fraction": 0.1,
    "test_fraction": 0.2,
    "target_fraction": 0.2,
    "seed": 0,
}
STEAM_CSV_HEADER = (
    "appid,name,release_date,english,developer,publisher,platforms,required_age,categories,"
    "genres,steamspy_tags,achievements,positive_ratings,negative_ratings,average_playtime,"
    "median_playtime,owners,price\n"
)


def interactions(rows: Sequence[tuple[str, int | None, str | None, float]], source: str = "csv"):
    """A loader's output from (user, appid, title, minutes) rows."""
    frame = pd.DataFrame(
        {
            "user_id": pd.Series([r[0] for r in rows], dtype=str),
            "appid": pd.array([r[1] for r in rows], dtype="Int64"),
            "title": pd.Series([r[2] for r in rows], dtype=object),
            "playtime_min": np.array([r[3] for r in rows], dtype=np.float32),
            "source": source,
        }
    )
    return LoadedInteractions(frame[RAW_COLUMNS], {"rows": len(rows)})


def metadata(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(
        [{"genres": [], "tags": [], **row} for row in rows], columns=METADATA_COLUMNS
    )
    for column in ["appid", "price_cents", "owners_low", "owners_high", "positive", "negative"]:
        frame[column] = frame[column].astype("Int64")
    return frame


def build(inter: Sequence[LoadedInteractions], meta: Sequence[pd.DataFrame] = (), **options):
    options = {"min_user_items": 1, "min_item_users": 1, **SPLIT, **options}
    return build_processed(list(inter), list(meta), **options)


def triples(processed: Processed) -> dict[tuple[str, str], float]:
    """{(user_id, item_key): minutes} of the processed interactions."""
    table = processed.interactions
    users = processed.users["user_id"].to_numpy()[table["user_idx"]]
    items = processed.items["item_key"].to_numpy()[table["item_idx"]]
    return dict(zip(zip(users, items, strict=True), table["playtime_min"].tolist(), strict=True))


# --- the catalog join --------------------------------------------------------------------------


def test_title_joins_an_appid_and_unmatched_titles_stay_items(tmp_path: Path) -> None:
    plays = tmp_path / "plays.csv"
    plays.write_text(
        "u1,The Elder Scrolls V Skyrim,purchase,1.0,0\n"
        "u1,The Elder Scrolls V Skyrim,play,273.0,0\n"
        "u1,Some Unlisted Indie Game,purchase,1.0,0\n"
        "u2,The Elder Scrolls V Skyrim,purchase,1.0,0\n"
    )
    store = tmp_path / "steam.csv"
    store.write_text(
        STEAM_CSV_HEADER + "72850,The Elder Scrolls V: Skyrim,2011-11-10,1,Bethesda Game Studios,"
        "Bethesda Softworks,windows,16,Single-player,RPG,Open World;RPG;Fantasy,75,237303,14951,"
        "7089,3885,10000000-20000000,9.99\n"
    )
    from gamerec.dataio.catalog import load_steam_csv
    from gamerec.dataio.interactions import load_steam_200k

    processed = build([load_steam_200k(plays)], [load_steam_csv(store)])
    items = processed.items.set_index("item_key")
    skyrim = items.loc["a:72850"]
    assert skyrim["appid"] == 72850
    assert skyrim["name"] == "The Elder Scrolls V: Skyrim"
    assert skyrim["genres"] == ["RPG"]
    assert skyrim["tags"] == ["Open World", "RPG", "Fantasy"]
    assert skyrim["price_cents"] == 999
    assert skyrim["n_users"] == 2
    indie = items.loc["t:someunlistedindiegame"]
    assert pd.isna(indie["appid"])
    assert indie["name"] == "Some Unlisted Indie Game"
    assert indie["genres"] == [] and indie["tags"] == []
    assert processed.summary["titles"] == 2
    assert processed.summary["titles_matched"] == 1
    assert processed.summary["title_match_rate"] == 0.5
    assert triples(processed)["u1", "a:72850"] == pytest.approx(273 * 60)


def test_namesakes_resolve_to_the_most_reviewed_game() -> None:
    meta = metadata(
        [
            {"appid": 10, "name": "Doom", "positive": 5, "negative": 1},
            {"appid": 20, "name": "DOOM", "positive": 900, "negative": 100},
            {"appid": 30, "name": "D.O.O.M.", "positive": None, "negative": None},
        ]
    )
    processed = build([interactions([("u", None, "doom", 0.0)])], [meta])
    assert processed.items["appid"].tolist() == [20]
    assert processed.items["name"].tolist() == ["DOOM"]


def test_metadata_merges_first_value_wins_and_lists_unite() -> None:
    first = metadata([{"appid": 570, "name": "Dota 2", "genres": ["Action"], "tags": ["MOBA"]}])
    second = metadata(
        [{"appid": 570, "name": "DOTA II", "genres": ["Free to Play"], "tags": ["MOBA", "PvP"]}]
    )
    processed = build([interactions([("u", 570, None, 5.0)])], [first, second])
    item = processed.items.iloc[0]
    assert item["name"] == "Dota 2"
    assert item["genres"] == ["Action", "Free to Play"]
    assert item["tags"] == ["MOBA", "PvP"]


def test_the_same_game_by_appid_and_by_title_counts_once_at_its_longest_playtime() -> None:
    meta = metadata([{"appid": 72850, "name": "The Elder Scrolls V: Skyrim"}])
    owned = interactions([("u1", 72850, "The Elder Scrolls V: Skyrim", 500.0)], "owned")
    kaggle = interactions(
        [
            ("u1", None, "The Elder Scrolls V Skyrim", 16380.0),
            ("u1", None, "Half-Life 2", 10.0),
            ("u1", None, "Half Life 2", 60.0),
        ],
        "steam-200k",
    )
    processed = build([owned, kaggle], [meta])
    assert triples(processed) == {("u1", "a:72850"): 16380.0, ("u1", "t:halflife2"): 60.0}
    assert processed.summary["merged_duplicates"] == 2
    table = processed.interactions
    sources = dict(zip(table["item_idx"], table["source"], strict=True))
    skyrim_idx = int(processed.items.loc[processed.items["appid"] == 72850, "item_idx"].iloc[0])
    assert sources[skyrim_idx] == "steam-200k"
    assert processed.summary["before_filtering"]["games"] == 4
    assert processed.summary["before_filtering"]["games_after_title_normalisation"] == 2


def test_k_core_repeats_until_stable() -> None:
    rows = [(u, item, None, 1.0) for u in ("A", "B") for item in (1, 2, 3)]
    rows += [("C", 3, None, 1.0), ("C", 4, None, 1.0), ("D", 4, None, 1.0)]
    processed = build([interactions(rows)], min_user_items=2, min_item_users=2)
    # D has one game -> game 4 keeps one player -> C keeps one game -> C goes too
    assert set(triples(processed)) == {(u, f"a:{i}") for u in ("A", "B") for i in (1, 2, 3)}
    assert processed.summary["before_filtering"]["users"] == 4


def test_nothing_left_after_filtering_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"no user has 5\+ games"):
        build([interactions([("u", 1, None, 0.0)])], min_user_items=5)


# --- property: the vectorised pipeline against a plain-Python reference ------------------------


def reference(
    rows: list[tuple[str, int | None, str | None, float]],
    names: dict[int, str],
    min_user_items: int,
    min_item_users: int,
) -> dict[tuple[str, str], float]:
    by_title: dict[str, int] = {}
    for known in sorted(names):  # no reviews: the lowest appid wins among namesakes
        by_title.setdefault(normalise_title(names[known]), known)
    best: dict[tuple[str, str], float] = {}
    for user, given_appid, title, minutes in rows:
        key_title = normalise_title(title)
        appid = given_appid if given_appid is not None else by_title.get(key_title)
        key = f"a:{appid}" if appid is not None else f"t:{key_title}"
        if key == "t:":
            continue
        best[user, key] = max(best.get((user, key), -1.0), minutes)
    while True:
        per_user: dict[str, int] = {}
        per_item: dict[str, int] = {}
        for user, key in best:
            per_user[user] = per_user.get(user, 0) + 1
            per_item[key] = per_item.get(key, 0) + 1
        keep = {
            pair: minutes
            for pair, minutes in best.items()
            if per_user[pair[0]] >= min_user_items and per_item[pair[1]] >= min_item_users
        }
        if len(keep) == len(best):
            return keep
        best = keep


NAMES = {10: "Counter-Strike", 20: "Team Fortress Classic", 70: "Half-Life", 620: "Portal 2"}
raw_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4", "u5", "10"]),
        st.sampled_from([10, 20, 70, 620, 999, None]),
        st.sampled_from(["Half Life", "half-life", "Portal 2", "Unknown", "?!", "20", None]),
        st.sampled_from([0.0, 1.0, 30.0, 600.0]),
    ).filter(lambda row: row[1] is not None or row[2] is not None),
    min_size=1,
    max_size=40,
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=raw_rows,
    second=raw_rows,
    min_user_items=st.integers(1, 3),
    min_item_users=st.integers(1, 3),
)
def test_build_processed_matches_a_plain_python_reference(
    first: list, second: list, min_user_items: int, min_item_users: int
) -> None:
    meta = metadata([{"appid": appid, "name": name} for appid, name in NAMES.items()])
    expected = reference(first + second, NAMES, min_user_items, min_item_users)
    loaded = [interactions(first, "owned"), interactions(second, "csv")]
    if not expected:
        with pytest.raises(DataError):
            build(loaded, [meta], min_user_items=min_user_items, min_item_users=min_item_users)
        return
    processed = build(loaded, [meta], min_user_items=min_user_items, min_item_users=min_item_users)
    assert triples(processed) == expected
    check_tables(processed)


def check_tables(processed: Processed) -> None:
    items, users, table, split = (
        processed.items,
        processed.users,
        processed.interactions,
        processed.split,
    )
    assert items["item_idx"].tolist() == list(range(len(items)))
    assert users["user_idx"].tolist() == list(range(len(users)))
    assert users["user_id"].tolist() == sorted(users["user_id"])
    assert not items["item_key"].duplicated().any()
    played = int(items["has_players"].sum())
    assert items["has_players"].tolist() == [True] * played + [False] * (len(items) - played)
    counts = np.bincount(table["item_idx"], minlength=len(items))
    assert (np.diff(counts[:played]) <= 0).all()  # the games with players, most owned first
    assert (counts[played:] == 0).all()
    # n_users counts training users only: nothing a model learns from counts held-out users
    is_train = (users["group"].to_numpy() == "train")[table["user_idx"].to_numpy()]
    train_counts = np.bincount(table["item_idx"][is_train], minlength=len(items))
    assert items["n_users"].tolist() == train_counts.tolist()
    order = list(zip(table["user_idx"], table["item_idx"], strict=True))
    assert order == sorted(set(order))  # sorted by user then item, no repeats
    assert split["user_idx"].tolist() == table["user_idx"].tolist()
    assert split["item_idx"].tolist() == table["item_idx"].tolist()
    summary = processed.summary
    if summary:  # (read_processed returns the tables only)
        assert (summary["users"], summary["items"], summary["interactions"]) == (
            len(users),
            played,
            len(table),
        )
        assert summary["catalog"]["games"] == len(items)


# --- the split ---------------------------------------------------------------------------------


def many_players(n_users: int = 300, seed: int = 1) -> LoadedInteractions:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        games = rng.choice(200, size=int(rng.integers(5, 40)), replace=False)
        rows += [(f"p{user}", int(g) + 1, None, float(rng.integers(0, 900))) for g in games]
    return interactions(rows)


@pytest.fixture(scope="module")
def split_data() -> Processed:
    return build([many_players()], min_user_items=5, min_item_users=1)


def test_split_groups_have_the_configured_sizes(split_data: Processed) -> None:
    users = split_data.users
    n = len(users)
    assert (users["group"] == "test").sum() == round(0.2 * n)
    assert (users["group"] == "valid").sum() == round(0.1 * n)
    assert (users["group"] == "train").sum() == n - round(0.2 * n) - round(0.1 * n)
    assert split_data.summary["groups"] == {
        g: int((users["group"] == g).sum()) for g in ("train", "valid", "test")
    }


def test_split_roles_fold_in_and_targets(split_data: Processed) -> None:
    split = split_data.split
    group_of = dict(zip(split_data.users["user_idx"], split_data.users["group"], strict=True))
    assert (split["group"] == split["user_idx"].map(group_of)).all()
    assert set(split.loc[split["group"] == "train", "role"]) == {"train"}
    evaluated = split[split["group"] != "train"]
    assert set(evaluated["role"]) == {"foldin", "target"}
    per_user = evaluated.groupby("user_idx", observed=True)["role"].value_counts().unstack()
    assert (per_user["foldin"] >= 1).all()
    assert (per_user["target"] >= 1).all()
    total = per_user.sum(axis=1)
    expected = np.clip(np.rint(0.2 * total), 1, total - 1)
    assert per_user["target"].tolist() == expected.tolist()
    share = per_user["target"].sum() / total.sum()
    assert share == pytest.approx(0.2, abs=0.03)
    assert split_data.summary["targets"] == int((split["role"] == "target").sum())


def test_split_is_seeded(split_data: Processed) -> None:
    again = build([many_players()], min_user_items=5, min_item_users=1)
    pd.testing.assert_frame_equal(again.split, split_data.split)
    pd.testing.assert_frame_equal(again.users, split_data.users)
    other = build([many_players()], min_user_items=5, min_item_users=1, seed=1)
    assert not other.users["group"].equals(split_data.users["group"])
    assert not other.split["role"].equals(split_data.split["role"])


def test_users_with_one_game_are_never_evaluated() -> None:
    rows = [(f"solo{n}", n + 1, None, 1.0) for n in range(10)]
    rows += [("pair", 1, None, 1.0), ("pair", 2, None, 1.0)]
    processed = build([interactions(rows)], min_user_items=1, min_item_users=1)
    groups = dict(zip(processed.users["user_id"], processed.users["group"], strict=True))
    assert groups["pair"] != "train"  # the only user who can be evaluated
    assert all(groups[f"solo{n}"] == "train" for n in range(10))
    roles = processed.split.loc[processed.split["group"] != "train", "role"]
    assert sorted(roles) == ["foldin", "target"]


def test_make_split_matches_lexsort_order() -> None:
    rng = np.random.default_rng(0)
    users = pd.DataFrame({"user_idx": np.arange(50, dtype=np.int32)})
    user_idx = np.sort(rng.integers(0, 50, 2000)).astype(np.int32)
    table = pd.DataFrame({"user_idx": user_idx, "item_idx": rng.integers(0, 99, 2000)})
    _, split = make_split(users, table, **SPLIT)
    # rebuild the roles the straightforward way, with the same random numbers
    rng = np.random.default_rng(0)
    rng.permutation(50)
    keys = rng.random(2000)
    order = np.lexsort((keys, user_idx))
    counts = np.bincount(user_idx, minlength=50)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(2000, dtype=np.int64)
    position[order] = np.arange(2000) - np.repeat(starts, counts)
    n_targets = np.clip(np.rint(0.2 * counts), 1, np.maximum(counts - 1, 1))
    evaluated = split["group"].to_numpy() != "train"
    expected = position < n_targets[user_idx]
    got = split["role"].to_numpy() == "target"
    np.testing.assert_array_equal(got[evaluated], expected[evaluated])


# --- the pipeline stage: processed/ on disk ----------------------------------------------------


def fixture_inputs(root: Path) -> list[dict[str, str]]:
    return [
        {"kind": "steam-200k", "path": str(root / "steam-200k-slice.csv")},
        {"kind": "steam-csv", "path": str(root / "steam.csv")},
        {"kind": "ucsd", "path": str(root / "steam_games.json")},
        {"kind": "steamspy", "path": str(root / "steamspy")},
        {"kind": "owned", "path": str(root / "owned")},
    ]


def preprocess_fixtures(workdir: Path, inputs: list[dict[str, str]] | None = None) -> dict:
    settings = Settings.load(
        overrides={
            "data_dir": workdir / "ws",
            "preprocess.inputs": inputs or fixture_inputs(FIXTURES),
            "preprocess.min_user_items": 2,
        }
    )
    return pipeline.preprocess(settings)


def test_preprocess_real_fixture_slices_end_to_end(workdir: Path) -> None:
    summary = preprocess_fixtures(workdir)
    processed = read_processed(workdir / "ws" / "processed")
    check_tables(processed)
    items = processed.items.set_index("item_key")
    assert items.loc["a:72850", "name"] == "The Elder Scrolls V: Skyrim"  # joined by title
    assert "RPG" in items.loc["a:72850", "genres"]
    owned = json.loads((FIXTURES / "owned" / "76561197960287930.json").read_text())
    appids = {game["appid"] for game in owned["response"]["games"]}
    mine = processed.users.loc[processed.users["user_id"] == "76561197960287930", "user_idx"]
    rows = processed.interactions[processed.interactions["user_idx"] == int(mine.iloc[0])]
    kept = set(processed.items["appid"].to_numpy()[rows["item_idx"]].astype(int))
    assert kept <= appids
    assert set(processed.interactions["source"]) == {"steam-200k", "owned"}
    assert summary.before_filtering["users"] == 60  # 58 in the slice, 2 GetOwnedGames files
    assert summary.duplicate_purchases == 3
    assert 0 < summary.title_match_rate < 1
    assert summary.output == str(workdir / "ws" / "processed")


def test_written_parquet_schema_follows_the_contract(workdir: Path) -> None:
    preprocess_fixtures(workdir)
    folder = workdir / "ws" / "processed"
    schema = {name: pq.read_schema(folder / f"{name}.parquet") for name in ("items", "users")}
    schema["interactions"] = pq.read_schema(folder / "interactions.parquet")
    schema["split"] = pq.read_schema(folder / "split.parquet")
    items = schema["items"]
    assert items.field("item_idx").type == pa.int32()
    assert items.field("appid").type == pa.int64()
    assert items.field("n_users").type == pa.int32()
    for column in ("price_cents", "owners_low", "owners_high", "positive", "negative"):
        assert items.field(column).type == pa.int64(), column
    assert pa.types.is_list(items.field("genres").type)
    assert pa.types.is_list(items.field("tags").type)
    for column in ("name", "developer", "publisher", "release_date", "item_key", "title_key"):
        assert pa.types.is_string(items.field(column).type) or pa.types.is_large_string(
            items.field(column).type
        ), column
    assert set(METADATA_COLUMNS) <= set(items.names)
    assert schema["users"].field("user_idx").type == pa.int32()
    user_id = schema["users"].field("user_id").type
    assert pa.types.is_string(user_id) or pa.types.is_large_string(user_id)
    table = schema["interactions"]
    assert table.names == ["user_idx", "item_idx", "playtime_min", "source"]
    assert table.field("user_idx").type == pa.int32()
    assert table.field("item_idx").type == pa.int32()
    assert table.field("playtime_min").type == pa.float32()
    assert schema["split"].names == ["user_idx", "item_idx", "group", "role"]
    processed = read_processed(folder)
    assert isinstance(processed.items["genres"].iloc[0], list)
    assert str(processed.items["appid"].dtype) == "Int64"
    assert processed.items["appid"].isna().any()  # unmatched titles are items without appid


def test_manifest_records_counts_and_input_fingerprints(workdir: Path) -> None:
    summary = preprocess_fixtures(workdir)
    folder = workdir / "ws" / "processed"
    manifest = read_manifest(folder, "processed", verify=True)
    assert manifest["counts"] == {
        "users": summary.users,
        "items": summary.items,
        "interactions": summary.interactions,
    }
    assert (
        manifest["counts"]["interactions"]
        == pq.read_metadata(folder / "interactions.parquet").num_rows
    )
    plays = FIXTURES / "steam-200k-slice.csv"
    digest = hashlib.sha256(plays.read_bytes()).hexdigest()[:16]
    assert manifest["inputs"][f"steam-200k:{plays}"] == digest
    folder_files = [p for p in (FIXTURES / "steamspy").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in folder_files)
    assert manifest["inputs"][f"steamspy:{FIXTURES / 'steamspy'}"] == (
        f"{len(folder_files)} files, {size} bytes"
    )
    assert set(manifest["files"]) == {
        "items.parquet",
        "users.parquet",
        "interactions.parquet",
        "split.parquet",
    }
    assert manifest["settings"]["min_user_items"] == 2
    assert manifest["summary"]["title_match_rate"] == summary.title_match_rate


def broken_inputs(root: Path) -> dict[str, list[dict[str, str]]]:
    """Inputs that must fail, each written into ``root``."""
    good = FIXTURES / "steam-200k-slice.csv"
    lines = (FIXTURES / "steam_games.json").read_text().splitlines()
    (root / "ucsd.json").write_text("\n".join([*lines[:2], "{u'id': u'1', oops}", *lines[2:]]))
    (root / "empty.csv").write_text("")
    (root / "cut.csv.gz").write_bytes(gzip.compress(good.read_bytes())[:500])
    (root / "columns.csv").write_text("player,game\nu1,570\n")
    shutil.copytree(FIXTURES / "steamspy", root / "steamspy")
    (root / "steamspy" / "all" / "page_1.json").write_text('{"570": {"appid": 570,')
    plays = {"kind": "steam-200k", "path": str(good)}
    return {
        "missing file": [{"kind": "steam-200k", "path": str(root / "nowhere.csv")}],
        "empty file": [{"kind": "steam-200k", "path": str(root / "empty.csv")}],
        "truncated gzip": [{"kind": "steam-200k", "path": str(root / "cut.csv.gz")}],
        "wrong columns": [{"kind": "csv", "path": str(root / "columns.csv")}],
        "page not JSON": [plays, {"kind": "steamspy", "path": str(root / "steamspy")}],
        "UCSD line not a literal": [plays, {"kind": "ucsd", "path": str(root / "ucsd.json")}],
        "only metadata": [{"kind": "steam-csv", "path": str(FIXTURES / "steam.csv")}],
    }


def test_bad_inputs_fail_naming_the_file_and_leave_processed_untouched(workdir: Path) -> None:
    preprocess_fixtures(workdir)
    folder = workdir / "ws" / "processed"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (workdir / "bad").mkdir()
    expected_words = {
        "missing file": ("nowhere.csv", "file not found"),
        "empty file": ("empty.csv", "is empty"),
        "truncated gzip": ("cut.csv.gz", "truncated gzip"),
        "wrong columns": ("columns.csv, line 1", "has no column(s)"),
        "page not JSON": ("page_1.json, line 1", "is not valid JSON"),
        "UCSD line not a literal": ("ucsd.json, line 3", "is not a Python dict literal"),
        "only metadata": ("no interactions among the inputs", "steam-200k, owned or csv"),
    }
    for case, inputs in broken_inputs(workdir / "bad").items():
        with pytest.raises(DataError) as caught:
            preprocess_fixtures(workdir, inputs)
        for words in expected_words[case]:
            assert words in str(caught.value), case
        after = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert after == before, case
    leftovers = sorted(p.name for p in (workdir / "ws").iterdir() if p.suffix != ".lock")
    assert leftovers == ["processed"]  # no staging or temp files left


def test_bad_input_through_the_cli_keeps_processed(workdir: Path) -> None:
    preprocess_fixtures(workdir)
    folder = workdir / "ws" / "processed"
    manifest = (folder / "manifest.json").read_bytes()
    (workdir / "gamerec.toml").write_text(
        "data_dir = 'ws'\n[[preprocess.inputs]]\nkind = 'ucsd'\npath = 'games.json'\n"
        "[[preprocess.inputs]]\nkind = 'steam-200k'\n"
        f"path = '{FIXTURES / 'steam-200k-slice.csv'}'\n"
    )
    (workdir / "games.json").write_text("{u'id': u'10', u'app_name': u'Counter-Strike'}\nnope\n")
    result = CliRunner().invoke(app, ["preprocess"])
    assert result.exit_code == 1
    assert "Error: games.json, line 2: is not a Python dict literal" in result.stderr
    assert "Traceback" not in result.stderr
    assert (folder / "manifest.json").read_bytes() == manifest


# --- the bundled demo data ---------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_data_numbers(bundled_workspace: Path) -> None:
    manifest = read_manifest(bundled_workspace / "processed", "processed", verify=True)
    summary = manifest["summary"]
    assert summary["before_filtering"]["users"] == 12_393
    assert summary["before_filtering"]["games"] == 5_155
    assert summary["duplicate_purchases"] == 707
    assert summary["title_match_rate"] >= 0.75
    assert summary["sources"][0]["rows"] == 200_000
    processed = read_processed(bundled_workspace / "processed")
    check_tables(processed)
    assert summary["users"] == len(processed.users) > 3_000
    assert (processed.interactions.groupby("user_idx").size() >= 5).all()
    items = processed.items
    players = np.bincount(processed.interactions["item_idx"], minlength=len(items))
    assert (players[: summary["items"]] >= 2).all()
    # Dota 2 has the most owners in steam-200k, but most of them own fewer than 5 games
    top = items.iloc[0]
    assert (top["appid"], top["name"]) == (440, "Team Fortress 2")
    assert 1300 < players[0] <= 1354  # 1,354 of its owners own 5+ games before k-core
    assert top["n_users"] < players[0]  # training users only
    # the 2025 catalog: games nobody in steam-200k owns, each known by appid
    catalog = summary["catalog"]
    assert catalog["games"] == len(items) > 24_000
    assert catalog["games_with_players"] == summary["items"]
    by_name = items.set_index("name")
    elden = by_name.loc["ELDEN RING"]
    assert (elden["appid"], elden["has_players"], elden["kind"]) == (1245620, False, "game")
    assert elden["recommendable"] and elden["n_users"] == 0
    # what a player can own but is never recommended
    for name, kind in [
        ("Arma 2 Operation Arrowhead Beta (Obsolete)", "title-only"),
        ("Deadlight Original Soundtrack", "soundtrack"),
        ("Left 4 Dead 2 Dedicated Server", "server"),
    ]:
        row = by_name.loc[name]
        assert (row["kind"], bool(row["recommendable"])) == (kind, False), name


@pytest.mark.slow
def test_bundled_data_numbers_through_the_cli(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["--data-dir", "ws", "preprocess", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["before_filtering"]["users"] == 12_393
    assert summary["before_filtering"]["games"] == 5_155
    assert summary["duplicate_purchases"] == 707
    assert summary["title_match_rate"] >= 0.75
    assert summary["output"] == "ws/processed"
    # the human summary of the same numbers
    monkeypatch.setenv("COLUMNS", "200")
    preprocess_summary(PreprocessResult(**summary))
    table = capsys.readouterr().out
    assert "12,393 users, 5,155 games" in table
    assert "duplicate purchase rows removed" in table and "707" in table
    assert f"({summary['title_match_rate']:.1%})" in table
    assert "games per user" in table and "hours played" in table
    assert f"{summary['density']:.4%}" in table


# --- a bad value in any input: a clear error, and processed/ stays as it was ----------------

STORE_CSV_HEADER = (FIXTURES / "steam.csv").read_text().splitlines()[0]
STORE_CSV_ROW = (FIXTURES / "steam.csv").read_text().splitlines()[1]  # appid 10, Counter-Strike


def steam_csv_with(column: str, value: str) -> str:
    names = STORE_CSV_HEADER.split(",")
    cells = next(csv.reader([STORE_CSV_ROW]))
    cells[names.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([names, cells])
    return out.getvalue()


def steamspy_page(key: str, **fields: str) -> str:
    record = {"appid": 10, "name": "Counter-Strike", "owners": "10,000,000 .. 20,000,000"}
    body = ", ".join(f'"{name}": {value}' for name, value in fields.items())
    text = json.dumps(record)[:-1] + (", " + body if body else "") + "}"
    return "{" + f'"{key}": {text}' + "}"


def owned_library(playtime: str) -> str:
    game = '{"appid": 10, "playtime_forever": ' + playtime + "}"
    return '{"response": {"game_count": 1, "games": [' + game + "]}}"


#: case -> (kind, file name, content, words the error must contain)
BAD_VALUES: dict[str, tuple[str, str, str, list[str]]] = {
    "steamspy key not ASCII": (
        "steamspy",
        "page_0.json",
        steamspy_page("\u00b2", appid='"\u00b2"'),
        ["page_0.json", "record '\u00b2'", "not an appid"],
    ),
    "steamspy appid 1e999": (
        "steamspy",
        "page_0.json",
        steamspy_page("10", appid="1e999"),
        ["record '10'", "appid inf"],
    ),
    "steamspy appid 2**70": (
        "steamspy",
        "page_0.json",
        steamspy_page("10", appid=str(2**70)),
        ["record '10'", "not an appid"],
    ),
    "steamspy positive Infinity": (
        "steamspy",
        "page_0.json",
        steamspy_page("10", positive="Infinity"),
        ["record '10'", "positive inf"],
    ),
    "steamspy owners reversed": (
        "steamspy",
        "page_0.json",
        steamspy_page("10", owners='"50 .. 20"'),
        ["record '10'", "owners '50 .. 20'"],
    ),
    "steamspy owners text": (
        "steamspy",
        "page_0.json",
        steamspy_page("10", owners='"abc"'),
        ["record '10'", "owners 'abc'"],
    ),
    "steam.csv appid 1.5": (
        "steam-csv",
        "steam.csv",
        steam_csv_with("appid", "1.5"),
        ["steam.csv, line 2", "appid '1.5'"],
    ),
    "steam.csv appid 1e30": (
        "steam-csv",
        "steam.csv",
        steam_csv_with("appid", "1e30"),
        ["steam.csv, line 2", "appid '1e30'"],
    ),
    "steam.csv price inf": (
        "steam-csv",
        "steam.csv",
        steam_csv_with("price", "inf"),
        ["steam.csv, line 2", "price inf"],
    ),
    "steam.csv owners reversed": (
        "steam-csv",
        "steam.csv",
        steam_csv_with("owners", "50-20"),
        ["steam.csv, line 2", "owners '50-20'"],
    ),
    "ucsd id 1e999": (
        "ucsd",
        "games.json",
        "{u'id': 1e999, u'app_name': u'X'}\n",
        ["games.json, line 1", "appid inf"],
    ),
    "ucsd id not ASCII": (
        "ucsd",
        "games.json",
        "{u'id': u'\u00b2', u'app_name': u'X'}\n",
        ["games.json, line 1", "not an appid"],
    ),
    "ucsd price 1e999": (
        "ucsd",
        "games.json",
        "{u'id': u'10', u'price': 1e999}\n",
        ["games.json, line 1", "price inf"],
    ),
    "owned playtime NaN": (
        "owned",
        "76561197960287930.json",
        owned_library("NaN"),
        ["76561197960287930.json", "game #0", "playtime_forever nan"],
    ),
    "owned playtime Infinity": (
        "owned",
        "76561197960287930.json",
        owned_library("Infinity"),
        ["game #0", "playtime_forever inf"],
    ),
    "owned appid 2**70": (
        "owned",
        "76561197960287930.json",
        owned_library("1").replace('"appid": 10', f'"appid": {2**70}'),
        ["game #0", "no valid appid"],
    ),
    "steam-200k negative hours": (
        "steam-200k",
        "plays.csv",
        "1,Dota 2,purchase,1.0,0\n1,Dota 2,play,-3,0\n",
        ["plays.csv, line 2", "-3"],
    ),
    "steam-200k infinite hours": (
        "steam-200k",
        "plays.csv",
        "1,Dota 2,purchase,1.0,0\n1,Dota 2,play,inf,0\n",
        ["plays.csv, line 2", "inf"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_an_error_naming_file_and_record_and_processed_stays(
    workdir: Path, case: str
) -> None:
    preprocess_fixtures(workdir)
    folder = workdir / "ws" / "processed"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    kind, name, content, words = BAD_VALUES[case]
    target = workdir / "bad" / name
    if kind == "steamspy":
        target = workdir / "bad" / "steamspy" / "all" / name
    elif kind == "owned":
        target = workdir / "bad" / "owned" / name
    target.parent.mkdir(parents=True)
    target.write_text(content)
    path = (
        target
        if kind in ("steam-csv", "ucsd", "steam-200k")
        else target.parents[1 if kind == "steamspy" else 0]
    )
    inputs = [("steam-200k", FIXTURES / "steam-200k-slice.csv"), (kind, path)]
    (workdir / "gamerec.toml").write_text(
        "data_dir = 'ws'\n[preprocess]\nmin_user_items = 2\n"
        + "".join(f"[[preprocess.inputs]]\nkind = '{k}'\npath = '{p}'\n" for k, p in inputs)
    )

    result = CliRunner().invoke(app, ["preprocess"])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())  # the console may wrap a long line
    for word in words:
        assert word in message, (case, message)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
