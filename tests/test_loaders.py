"""Loaders of every input kind, on real fixture slices, generated rows and broken files."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamerec.dataio.catalog import load_steam_csv, load_steamspy, load_ucsd, parse_owners
from gamerec.dataio.files import normalise_title, read_bytes, read_text
from gamerec.dataio.ids import MAX_APPID, is_appid_text
from gamerec.dataio.interactions import (
    RAW_COLUMNS,
    load_generic_csv,
    load_owned_games,
    load_steam_200k,
)
from gamerec.dataio.matrix import UserItems
from gamerec.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
SLICE = FIXTURES / "steam-200k-slice.csv"
SCRATCH = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def gz(path: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


def minutes_by_user_and_title(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    columns = frame[["user_id", "title", "playtime_min"]].itertuples(index=False)
    return {(user, title): float(minutes) for user, title, minutes in columns}


def check_raw_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == RAW_COLUMNS
    assert str(frame["appid"].dtype) == "Int64"
    assert frame["playtime_min"].dtype == np.float32
    assert (frame["playtime_min"] >= 0).all()


# --- files -------------------------------------------------------------------------------------


def test_read_bytes_reads_gzip_by_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "plain.bin").write_bytes(gzip.compress(b"hello\n"))
    assert read_bytes(tmp_path / "plain.bin") == b"hello\n"
    (tmp_path / "not-gzip.gz").write_bytes(b"hello\n")
    assert read_bytes(tmp_path / "not-gzip.gz") == b"hello\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b"", "is empty"),
        (b"  \n\t\n", "is empty"),
        (gzip.compress(b""), "is empty"),
        (gzip.compress(b"1,a,purchase,1.0,0\n" * 100)[:40], "damaged or truncated gzip"),
    ],
    ids=["missing", "empty", "blank", "empty-gzip", "truncated-gzip"],
)
def test_unusable_files_are_data_errors_naming_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_bytes(path)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


def test_corrupt_gzip_and_folders_are_data_errors(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"".join(b"%d,x,purchase,1.0,0\n" % n for n in range(500))))
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_bytes(tmp_path / "bad.gz")
    with pytest.raises(DataError, match="is a folder"):
        read_bytes(tmp_path)


def test_a_gzip_bomb_stops_at_the_cap_without_inflating_in_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b"0" * (64 * 1024**2), compresslevel=9))  # ~64 KB on disk
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"more than 2,097,152 bytes") as caught:
            read_text(bomb, max_bytes=2 * 1024**2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.path == bomb
    assert peak < 16 * 1024**2  # not the 64 MiB the whole stream would take


def test_gzip_members_are_all_read_and_the_cap_allows_exactly_its_size(tmp_path: Path) -> None:
    path = tmp_path / "two-members.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n") + gzip.compress(b"1,2\n"))
    assert read_bytes(path) == b"a,b\n1,2\n"
    assert read_bytes(path, max_bytes=8) == b"a,b\n1,2\n"
    with pytest.raises(DataError, match="more than 7 bytes"):
        read_bytes(path, max_bytes=7)


def test_text_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "latin1.csv").write_bytes(b"user,item\nu1,caf\xe9\n")
    with pytest.raises(DataError) as caught:
        read_text(tmp_path / "latin1.csv")
    assert caught.value.line == 2
    assert "is not UTF-8" in str(caught.value)


@given(st.text(max_size=40))
def test_normalise_title_is_idempotent_and_alphanumeric(title: str) -> None:
    key = normalise_title(title)
    assert normalise_title(key) == key
    assert set(key) <= set("0123456789abcdefghijklmnopqrstuvwxyz")


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40), st.data())
def test_normalise_title_ignores_case_and_punctuation(title: str, data: st.DataObject) -> None:
    assert normalise_title(title.upper()) == normalise_title(title.lower())
    noise = data.draw(st.lists(st.sampled_from(list(" :-'!.,®™()&")), max_size=5))
    position = data.draw(st.integers(0, len(title)))
    noisy = title[:position] + "".join(noise) + title[position:]
    assert normalise_title(noisy) == normalise_title(title)


def test_normalise_title_known_answers() -> None:
    assert normalise_title("The Elder Scrolls V: Skyrim") == "theelderscrollsvskyrim"
    assert normalise_title("The Elder Scrolls V Skyrim") == "theelderscrollsvskyrim"
    assert normalise_title("Tom Clancy's Rainbow Six® Siege") == "tomclancysrainbowsixsiege"
    assert normalise_title(None) == ""
    assert normalise_title(float("nan")) == ""


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_parse_owners_round_trips_both_formats(a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    assert parse_owners(f"{low:,} .. {high:,}") == (low, high)
    assert parse_owners(f"{low}-{high}") == (low, high)
    assert parse_owners(f" {low} .. {high} ") == (low, high)


@pytest.mark.parametrize("text", [None, "", "lots", "1 .. ", "10 to 20", 12, "1..2..3"])
def test_parse_owners_rejects_what_is_not_a_range(text: object) -> None:
    assert parse_owners(text) == (None, None)


# --- steam-200k --------------------------------------------------------------------------------


def test_steam_200k_slice_agrees_with_an_independent_count() -> None:
    rows = list(csv.reader(SLICE.open(newline="")))
    purchases = Counter((r[0], r[1]) for r in rows if r[2] == "purchase")
    hours: dict[tuple[str, str], float] = defaultdict(float)
    for user, title, behaviour, value, _ in rows:
        if behaviour == "play":
            hours[user, title] += float(value)
    pairs = {(r[0], r[1]) for r in rows}

    loaded = load_steam_200k(SLICE)
    frame = loaded.frame
    check_raw_frame(frame)
    assert len(frame) == len(pairs)
    assert set(zip(frame["user_id"], frame["title"], strict=True)) == pairs
    assert loaded.stats == {
        "rows": len(rows),
        "users": len({r[0] for r in rows}),
        "games": len({r[1] for r in rows}),
        "duplicate_purchases": sum(n - 1 for n in purchases.values()),
    }
    assert loaded.stats["duplicate_purchases"] > 0  # the slice keeps a player with duplicates
    minutes = minutes_by_user_and_title(frame)
    for pair in pairs:
        assert minutes[pair] == pytest.approx(60.0 * hours.get(pair, 0.0), rel=1e-6)
    assert frame["appid"].isna().all()
    assert set(frame["source"]) == {"steam-200k"}
    skyrim = frame[(frame["user_id"] == "151603712") & (frame["title"].str.contains("Skyrim V"))]
    assert skyrim.empty  # titles are kept exactly as written
    assert minutes["151603712", "The Elder Scrolls V Skyrim"] == pytest.approx(273 * 60)


def test_steam_200k_gzip_loads_the_same(tmp_path: Path) -> None:
    plain = load_steam_200k(SLICE)
    packed = load_steam_200k(gz(SLICE, tmp_path / "slice.csv.gz"))
    pd.testing.assert_frame_equal(plain.frame, packed.frame)
    assert plain.stats == packed.stats


steam_200k_rows = st.lists(
    st.tuples(
        st.sampled_from(["1", "007", "7", "NA", "76561197960287930"]),
        st.sampled_from(
            ["Dota 2", "The Elder Scrolls V Skyrim", 'Say "hi", world', "null", "1942", "Fallout 4"]
        ),
        st.sampled_from(["purchase", "play"]),
        st.sampled_from([0.1, 0.5, 1.0, 2.3, 273.0, 11754.0]),
    ),
    min_size=1,
    max_size=40,
)


@SCRATCH
@given(rows=steam_200k_rows)
def test_steam_200k_counts_and_dedupe_invariants(
    tmp_path: Path, rows: list[tuple[str, str, str, float]]
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for user, title, behaviour, value in rows:
        writer.writerow([user, title, behaviour, 1.0 if behaviour == "purchase" else value, 0])
    path = tmp_path / "generated.csv"
    path.write_text(buffer.getvalue())

    loaded = load_steam_200k(path)
    frame = loaded.frame
    pairs = {(user, title) for user, title, _, _ in rows}
    purchases = Counter((u, t) for u, t, b, _ in rows if b == "purchase")
    assert len(frame) == len(pairs)
    assert not frame.duplicated(["user_id", "title"]).any()
    assert loaded.stats["duplicate_purchases"] == sum(n - 1 for n in purchases.values())
    assert loaded.stats["users"] == len({u for u, *_ in rows})
    expected: dict[tuple[str, str], float] = defaultdict(float)
    for user, title, behaviour, value in rows:
        if behaviour == "play":
            expected[user, title] += 60.0 * value
    got = minutes_by_user_and_title(frame)
    assert got.keys() == pairs
    for pair, minutes in got.items():
        assert minutes == pytest.approx(expected[pair], rel=1e-6)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1,Dota 2,purchase\n", 1, "has 3 columns, expected 5"),
        ("1,Dota 2,purchase,1.0,0,extra\n", 1, "has 6 columns, expected 5"),
        ("user,item\n1,Dota 2\n", 1, "has 2 columns"),
        ("1,Dota 2,purchase,1.0,0\n1,Dota 2,bought,1.0,0\n", 2, "expected 5 columns"),
        ("1,Dota 2,purchase,1.0,0\n2,Portal,play,1.0,0\n3,X,play,lots,0\n", 3, "lots"),
    ],
)
def test_steam_200k_with_wrong_columns_names_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = tmp_path / "plays.csv"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        load_steam_200k(path)
    assert caught.value.path == path
    assert caught.value.line == line
    assert words in str(caught.value)


# --- generic CSV -------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())
    return path


def item_identity(item: str) -> tuple[str, object]:
    text = item.strip()
    if is_appid_text(text):  # "0" and 99999999999 are not appids: titles then
        return ("appid", int(text))
    return ("title", text)


generic_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "007", "NA", "76561197960287930"]),
        st.one_of(
            st.sampled_from(["570", "72850", " 440 ", "0", "99999999999"]),
            st.sampled_from(["Dota 2", "Half-Life, 2", "-5", "3.5", '"Quoted"', "Über Game"]),
        ),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=50,
)


@SCRATCH
@given(rows=generic_rows)
def test_generic_csv_merges_rows_like_a_reference(
    tmp_path: Path, rows: list[tuple[str, str, int]]
) -> None:
    path = write_csv(tmp_path / "plays.csv", ["player", "game", "minutes"], [list(r) for r in rows])
    loaded = load_generic_csv(
        path, user_column="player", item_column="game", value_column="minutes"
    )
    frame = loaded.frame
    check_raw_frame(frame)

    expected: dict[tuple[str, tuple[str, object]], float] = {}
    for user, item, minutes in rows:  # dicts keep first-appearance order
        key = (user, item_identity(item))
        expected[key] = expected.get(key, 0.0) + minutes
    got = []
    for user, appid, title, minutes in frame[
        ["user_id", "appid", "title", "playtime_min"]
    ].itertuples(index=False):
        identity = ("title", title) if pd.isna(appid) else ("appid", int(appid))
        assert pd.isna(title) != pd.isna(appid)  # exactly one of appid and title
        got.append(((user, identity), float(minutes)))
    assert [key for key, _ in got] == list(expected)  # one row per pair, in order of appearance
    for key, total in got:
        assert total == pytest.approx(expected[key], rel=1e-6)
    assert loaded.stats == {"rows": len(rows), "users": len({u for u, _, _ in rows})}


def test_generic_csv_item_key_modes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", ["user", "item"], [["u", "570"], ["u", "Portal 2"]])
    auto = load_generic_csv(path).frame
    assert auto["appid"].tolist() == [570, pd.NA]
    assert pd.isna(auto["title"][0])
    assert auto["title"][1] == "Portal 2"
    titles = load_generic_csv(path, item_key="title").frame
    assert titles["appid"].isna().all()
    assert titles["title"].tolist() == ["570", "Portal 2"]
    with pytest.raises(DataError) as caught:
        load_generic_csv(path, item_key="appid")
    assert caught.value.line == 3
    assert "'Portal 2' is not an appid" in str(caught.value)


def test_generic_csv_values_hours_and_ratings(tmp_path: Path) -> None:
    rows = [["a", "10", "1.5"], ["a", "20", "0"], ["b", "10", "-1"], ["b", "30", "4"]]
    path = write_csv(tmp_path / "r.csv", ["user", "item", "value"], rows)
    rated = load_generic_csv(path, value_column="value", value_kind="rating").frame
    assert sorted(zip(rated["user_id"], rated["appid"], strict=True)) == [("a", 10), ("b", 30)]
    assert (rated["playtime_min"] == 0).all()
    rows = [["a", "10", "1.5"], ["a", "20", "0"], ["b", "10", "2"]]
    path = write_csv(tmp_path / "h.csv", ["user", "item", "value"], rows)
    hours = load_generic_csv(path, value_column="value", value_kind="playtime_hours").frame
    assert hours["playtime_min"].tolist() == [90.0, 0.0, 120.0]
    unvalued = load_generic_csv(path).frame
    assert (unvalued["playtime_min"] == 0).all()


def test_generic_csv_skips_empty_cells_and_blank_lines_and_reads_bom_and_gzip(
    tmp_path: Path,
) -> None:
    text = "\ufeffuser,item,minutes\nu1,570,5\n\nu2,,7\n,620,1\nu3,620,9\n"
    (tmp_path / "p.csv").write_text(text, encoding="utf-8")
    frame = load_generic_csv(tmp_path / "p.csv", value_column="minutes").frame
    assert list(zip(frame["user_id"], frame["appid"], frame["playtime_min"], strict=True)) == [
        ("u1", 570, 5.0),
        ("u3", 620, 9.0),
    ]
    packed = gz(tmp_path / "p.csv", tmp_path / "p.csv.gz")
    pd.testing.assert_frame_equal(load_generic_csv(packed, value_column="minutes").frame, frame)


@pytest.mark.parametrize(
    ("text", "options", "line", "words"),
    [
        ("player,game\nu,1\n", {}, 1, "has no column(s) ['user', 'item']; its header is"),
        ("user,item\nu,1\n", {"value_column": "hours"}, 1, "has no column(s) ['hours']"),
        ("user,item,v\nu,1,3\n\nu,2,many\n", {"value_column": "v"}, 4, "v 'many' is not a number"),
        ("user,item,v\nu,1,3\nu,2,\n", {"value_column": "v"}, 3, "v None is not a number"),
        ("user,item,v\nu,1,3\nu,2,-4\n", {"value_column": "v"}, 3, "v is negative"),
        ("user,item\nu,1,2\n", {}, None, "cannot be parsed as CSV"),
    ],
)
def test_generic_csv_errors_name_file_and_line(
    tmp_path: Path, text: str, options: dict[str, str], line: int | None, words: str
) -> None:
    path = tmp_path / "plays.csv"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        load_generic_csv(path, **options)
    assert caught.value.path == path
    assert caught.value.line == line
    assert words in str(caught.value)


# --- steam.csv (Steam Store Games) -------------------------------------------------------------


def test_steam_csv_parses_the_real_skyrim_row() -> None:
    lines = list(csv.DictReader((FIXTURES / "steam.csv").open(newline="")))
    frame = load_steam_csv(FIXTURES / "steam.csv")
    assert len(frame) == len(lines) == len({line["appid"] for line in lines})
    skyrim = frame.set_index("appid").loc[72850]
    assert skyrim["name"] == "The Elder Scrolls V: Skyrim"
    assert skyrim["genres"] == ["RPG"]
    assert skyrim["tags"] == ["Open World", "RPG", "Fantasy"]
    assert skyrim["developer"] == "Bethesda Game Studios"
    assert (skyrim["owners_low"], skyrim["owners_high"]) == (10_000_000, 20_000_000)
    assert skyrim["price_cents"] == 999
    assert (skyrim["positive"], skyrim["negative"]) == (237303, 14951)
    assert skyrim["release_date"] == "2011-11-10"
    assert str(frame["appid"].dtype) == "Int64"
    assert str(frame["price_cents"].dtype) == "Int64"


def test_steam_csv_with_wrong_columns_or_bad_appid(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("appid,title\n10,Counter-Strike\n")
    with pytest.raises(DataError, match=r"no column\(s\) \['name', 'genres'") as caught:
        load_steam_csv(tmp_path / "a.csv")
    assert caught.value.line == 1
    lines = (FIXTURES / "steam.csv").read_text().splitlines(keepends=True)
    (tmp_path / "b.csv").write_text("".join(lines[:3]) + "x" + lines[3])
    with pytest.raises(DataError) as caught:
        load_steam_csv(tmp_path / "b.csv")
    assert caught.value.line == 4
    assert "is not an appid" in str(caught.value)


# --- UCSD steam_games.json ---------------------------------------------------------------------


def test_ucsd_reads_python_literals_and_keeps_one_row_per_appid() -> None:
    lines = (FIXTURES / "steam_games.json").read_text().splitlines()
    assert not any(line.startswith('{"') for line in lines)  # not JSON: Python literals
    frame = load_ucsd(FIXTURES / "steam_games.json")
    assert len(frame) == len(lines) - 1  # 612880 is there twice
    assert (frame["appid"] == 612880).sum() == 1
    assert frame["appid"].isna().sum() == 1  # a record without an id is kept (title matching)
    games = frame.set_index("appid")
    assert games.loc[70, "name"] == "Half-Life"
    assert games.loc[70, "price_cents"] == 999
    assert games.loc[70, "genres"] == ["Action"]
    assert "FPS" in games.loc[70, "tags"]
    assert pd.isna(games.loc[12170, "price_cents"])  # no price in the record
    assert games.loc[612880, "name"] == "Wolfenstein II: The New Colossus"


@pytest.mark.parametrize(
    "bad_line",
    [
        "{u'id': u'1', u'app_name': oops}",
        "__import__('os').system('echo owned')",
        "[u'a list', u'not a dict']",
        "{u'id': u'1', u'app_name': u'unterminated",
    ],
)
def test_ucsd_line_that_is_not_a_dict_literal_names_the_line(tmp_path: Path, bad_line: str) -> None:
    lines = (FIXTURES / "steam_games.json").read_text().splitlines()
    path = tmp_path / "steam_games.json.gz"
    path.write_bytes(gzip.compress("\n".join([*lines[:3], bad_line, *lines[3:]]).encode()))
    with pytest.raises(DataError) as caught:
        load_ucsd(path)
    assert caught.value.path == path
    assert caught.value.line == 4


# --- SteamSpy ----------------------------------------------------------------------------------


def steamspy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "steamspy"
    shutil.copytree(FIXTURES / "steamspy", target)
    return target


def test_steamspy_pages_dedupe_overlap_and_appdetails_add_genres_and_tags(
    tmp_path: Path,
) -> None:
    folder = steamspy_copy(tmp_path)
    pages = [json.loads((folder / "all" / f"page_{n}.json").read_text()) for n in (0, 1)]
    overlap = set(pages[0]) & set(pages[1])
    assert overlap  # adjacent pages share an appid, as SteamSpy's do
    appids = set(pages[0]) | set(pages[1]) | {"379720"}
    frame = load_steamspy(folder)
    assert sorted(frame["appid"].astype(int)) == sorted(int(a) for a in appids)
    games = frame.set_index("appid")
    doom = games.loc[379720]
    assert doom["name"] == "DOOM"
    assert doom["genres"] == ["Action"]
    assert doom["tags"][:3] == ["FPS", "Gore", "Action"]
    assert len(doom["tags"]) == 20
    assert (doom["owners_low"], doom["owners_high"]) == (5_000_000, 10_000_000)
    assert doom["price_cents"] == 1999
    assert (doom["positive"], doom["negative"]) == (198001, 9278)
    assert games.loc[570, "name"] == "Dota 2"
    assert games.loc[570, "genres"] == []  # `all` pages carry no genres
    assert pd.isna(games.loc[576960, "name"])  # SteamSpy's empty name
    assert pd.isna(games.loc[530940, "price_cents"])  # price null
    assert games.loc[22490, "name"] == "Fallout: New Vegas"  # score_rank is an int there


def test_steamspy_appdetails_without_tags_and_blank_answers(tmp_path: Path) -> None:
    folder = steamspy_copy(tmp_path)
    details = folder / "appdetails"
    doom = json.loads((details / "379720.json").read_text())
    (details / "570.json").write_text(
        json.dumps(
            {**doom, "appid": 570, "name": "Dota 2", "genre": "Action, Free to Play", "tags": []}
        )
    )
    blank = {key: None for key in doom} | {"appid": 730, "tags": []}
    (details / "730.json").write_text(json.dumps(blank))
    games = load_steamspy(folder).set_index("appid")
    assert games.loc[570, "genres"] == ["Action", "Free to Play"]
    assert games.loc[570, "tags"] == []
    assert games.loc[730, "name"] == "Counter-Strike: Global Offensive"  # page record kept


def test_steamspy_gzip_pages_load_the_same(tmp_path: Path) -> None:
    folder = steamspy_copy(tmp_path)
    plain = load_steamspy(folder)
    for page in (folder / "all").glob("*.json"):
        gz(page, page.with_name(page.name + ".gz"))
        page.unlink()
    pd.testing.assert_frame_equal(load_steamspy(folder), plain)


def test_steamspy_page_that_is_not_json_names_the_page_and_line(tmp_path: Path) -> None:
    folder = steamspy_copy(tmp_path)
    page = folder / "all" / "page_1.json"
    page.write_text(page.read_text()[:-200])  # cut mid-record, as an interrupted download
    with pytest.raises(DataError) as caught:
        load_steamspy(folder)
    assert caught.value.path == page
    assert caught.value.line is not None and caught.value.line > 1
    assert "is not valid JSON" in str(caught.value)
    page.write_text("[1, 2, 3]")
    with pytest.raises(DataError, match="is not a SteamSpy page"):
        load_steamspy(folder)


def test_steamspy_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no SteamSpy pages"):
        load_steamspy(tmp_path / "empty")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(DataError, match="is not a folder"):
        load_steamspy(tmp_path / "file.json")


# --- GetOwnedGames -----------------------------------------------------------------------------


def test_owned_games_folder_one_user_per_file(tmp_path: Path) -> None:
    folder = tmp_path / "owned"
    shutil.copytree(FIXTURES / "owned", folder)
    (folder / "76561190000000000.json").write_text('{"response": {}}')  # a private profile
    loaded = load_owned_games(folder)
    frame = loaded.frame
    check_raw_frame(frame)
    assert loaded.stats == {"files": 3, "private_profiles": 1, "users": 2}
    for name in ("76561197960287930", "76561198000000001"):
        games = json.loads((folder / f"{name}.json").read_text())["response"]["games"]
        mine = frame[frame["user_id"] == name]
        assert len(mine) == len(games)
        assert dict(zip(mine["appid"], mine["playtime_min"], strict=True)) == {
            g["appid"]: g["playtime_forever"] for g in games
        }
        titles = [None if pd.isna(title) else title for title in mine["title"]]
        assert titles == [g.get("name") for g in games]
    assert frame.loc[frame["appid"] == 17390, "title"].tolist() == ["Spore"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"response": {"games": [{"appid": 10', "is not valid JSON"),
        ('{"games": []}', 'no "response" object'),
        ('{"response": {"games": {"appid": 10}}}', "is not a list"),
        ('{"response": {"games": [{"name": "x"}]}}', "game #0 has no valid appid"),
        ('{"response": {"games": [{"appid": 1, "playtime_forever": -3}]}}', "invalid playtime"),
    ],
)
def test_owned_games_errors_name_the_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "76561197960287930.json"
    path.write_text(text)
    with pytest.raises(DataError, match=words) as caught:
        load_owned_games(path)
    assert caught.value.path == path


def test_owned_games_folder_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no GetOwnedGames"):
        load_owned_games(tmp_path)


# --- UserItems ---------------------------------------------------------------------------------


@st.composite
def triples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    n_rows = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 12))
    size = draw(st.integers(0, 40))
    rows = np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=size, max_size=size)))
    items = np.array(draw(st.lists(st.integers(0, n_items - 1), min_size=size, max_size=size)))
    values = np.arange(size, dtype=np.float32) + 1
    return rows.astype(np.int64), items.astype(np.int64), values, n_rows, n_items


@settings(max_examples=50, deadline=None)
@given(triples())
def test_user_items_from_pairs_keeps_every_pair_sorted_by_row_then_item(data: tuple) -> None:
    rows, items, values, n_rows, n_items = data
    matrix = UserItems.from_pairs(rows, items, values, n_rows, n_items)
    assert matrix.n_rows == n_rows
    assert matrix.nnz == len(rows)
    assert matrix.indptr[0] == 0
    assert (np.diff(matrix.indptr) >= 0).all()
    np.testing.assert_array_equal(matrix.row_lengths(), np.bincount(rows, minlength=n_rows))
    for r in range(n_rows):
        got = sorted(
            zip(
                matrix.row(r).tolist(),
                matrix.values[matrix.indptr[r] : matrix.indptr[r + 1]].tolist(),
                strict=True,
            )
        )
        mine = rows == r
        expected = sorted(zip(items[mine].tolist(), values[mine].tolist(), strict=True))
        assert got == expected
        assert (np.diff(matrix.row(r)) >= 0).all()
    assert matrix.indices.dtype == np.int32
    assert matrix.values.dtype == np.float32


@settings(max_examples=50, deadline=None)
@given(triples(), st.data())
def test_user_items_take_rows_and_to_dense(data: tuple, draw: st.DataObject) -> None:
    rows, items, values, n_rows, n_items = data
    matrix = UserItems.from_pairs(rows, items, values, n_rows, n_items)
    chosen = np.array(draw.draw(st.lists(st.integers(0, n_rows - 1), max_size=10)), dtype=np.int64)
    taken = matrix.take_rows(chosen)
    assert taken.n_rows == len(chosen)
    for position, r in enumerate(chosen):
        np.testing.assert_array_equal(taken.row(position), matrix.row(r))
    dense = matrix.to_dense()
    assert dense.shape == (n_rows, n_items)
    expected = np.zeros((n_rows, n_items), dtype=np.float32)
    expected[rows, items] = 1
    np.testing.assert_array_equal(dense, expected)
    unique_pairs = len({(int(r), int(i)) for r, i in zip(rows, items, strict=True)}) == len(rows)
    if unique_pairs:
        played = matrix.to_dense(binary=False)
        np.testing.assert_array_equal(played[rows, items], values)
        assert played.sum() == pytest.approx(values.sum())


def test_user_items_without_values_are_zero() -> None:
    matrix = UserItems.from_pairs(np.array([1, 0]), np.array([2, 1]), None, 3, 4)
    assert matrix.row(0).tolist() == [1]
    assert matrix.row(1).tolist() == [2]
    assert matrix.row(2).tolist() == []
    assert matrix.values.tolist() == [0.0, 0.0]


# --- any value: a valid row or a DataError, never another exception ---------------------------

NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            *["1e999", "Infinity", "-Infinity", "NaN", "\u00b2", "\u0663", "1.5", "1e30"],
            *["50 .. 20", "abc", "10,000 .. 20,000", "0", "-1", " 42 ", "", "730", "20000-50000"],
            "4294967296",
        ]
    ),
)
CATALOG_FIELDS = ["appid", "name", "owners", "price", "initialprice", "positive", "negative"]


def check_catalog_frame(frame: pd.DataFrame) -> None:
    appids = frame["appid"].dropna()
    assert ((appids > 0) & (appids <= MAX_APPID)).all()
    for column in ["price_cents", "owners_low", "owners_high", "positive", "negative"]:
        assert (frame[column].dropna() >= 0).all()
    both = frame[["owners_low", "owners_high"]].dropna()
    assert (both["owners_low"] <= both["owners_high"]).all()


@SCRATCH
@given(key=NASTY, record=st.fixed_dictionaries({}, optional=dict.fromkeys(CATALOG_FIELDS, NASTY)))
def test_steamspy_pages_parse_or_raise_data_error(
    tmp_path: Path, key: object, record: dict[str, object]
) -> None:
    page = tmp_path / "steamspy" / "all" / "page_0.json"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(json.dumps({str(key): record}))
    try:
        frame = load_steamspy(page.parents[1])
    except DataError as error:
        assert error.path == page
        return
    check_catalog_frame(frame)


@SCRATCH
@given(values=st.fixed_dictionaries({}, optional={"id": NASTY, "price": NASTY, "app_name": NASTY}))
def test_ucsd_lines_parse_or_raise_data_error(tmp_path: Path, values: dict[str, object]) -> None:
    path = tmp_path / "games.json"
    path.write_text(repr(values).replace("nan", "1e999 - 1e999").replace("inf", "1e999") + "\n")
    try:
        frame = load_ucsd(path)
    except DataError as error:
        assert error.path == path and error.line == 1
        return
    check_catalog_frame(frame)


@SCRATCH
@given(
    cells=st.fixed_dictionaries({f: st.text(max_size=12) | NASTY.map(str) for f in CATALOG_FIELDS})
)
def test_steam_csv_rows_parse_or_raise_data_error(tmp_path: Path, cells: dict[str, str]) -> None:
    header = "appid,name,genres,steamspy_tags,owners,price,positive_ratings,negative_ratings"
    row = [cells["appid"], cells["name"], "Action", "FPS", cells["owners"], cells["price"]]
    row += [cells["positive"], cells["negative"]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header.split(","), row])
    path = tmp_path / "steam.csv"
    path.write_text(out.getvalue())
    try:
        frame = load_steam_csv(path)
    except DataError as error:
        assert error.path == path
        return
    check_catalog_frame(frame)


@SCRATCH
@given(
    games=st.lists(
        st.fixed_dictionaries({}, optional={"appid": NASTY, "playtime_forever": NASTY}), max_size=3
    )
)
def test_owned_games_parse_or_raise_data_error(
    tmp_path: Path, games: list[dict[str, object]]
) -> None:
    path = tmp_path / "76561197960287930.json"
    path.write_text(json.dumps({"response": {"game_count": len(games), "games": games}}))
    try:
        loaded = load_owned_games(path)
    except DataError as error:
        assert error.path == path
        return
    check_raw_frame(loaded.frame)
    appids = loaded.frame["appid"]
    assert ((appids > 0) & (appids <= MAX_APPID)).all()
    assert np.isfinite(loaded.frame["playtime_min"]).all()


@SCRATCH
@given(value=NASTY.map(str), behavior=st.sampled_from(["purchase", "play"]))
def test_steam_200k_values_parse_or_raise_data_error(
    tmp_path: Path, value: str, behavior: str
) -> None:
    path = tmp_path / "plays.csv"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["1", "Dota 2", behavior, value, "0"])
    path.write_text(out.getvalue())
    try:
        loaded = load_steam_200k(path)
    except DataError as error:
        assert error.path == path
        return
    check_raw_frame(loaded.frame)
    assert np.isfinite(loaded.frame["playtime_min"]).all()


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "nan"])
def test_generic_csv_rejects_a_non_finite_playtime(tmp_path: Path, value: str) -> None:
    path = tmp_path / "plays.csv"
    path.write_text(f"user,item,minutes\nu1,570,10\nu1,440,{value}\n")
    with pytest.raises(DataError) as caught:
        load_generic_csv(path, value_column="minutes")
    assert caught.value.line == 3
