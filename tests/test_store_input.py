"""The ``store`` input: the Steam store's records decide kinds, base games and release dates.

Known answers come from the 572 real records of ``tests/fixtures/steam-store`` (see its README);
the parsers are also fed arbitrary input, which must end in a result or a DataError that names
the file and the record, never in another exception.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamerec import pipeline
from gamerec.artifacts.processed import read_processed
from gamerec.dataio.catalog import METADATA_COLUMNS, load_catalog_table, merge_metadata
from gamerec.dataio.datasets import BUNDLED_CATALOG, data_file
from gamerec.dataio.interactions import RAW_COLUMNS, LoadedInteractions
from gamerec.dataio.preprocess import Source, build_processed, load_sources
from gamerec.dataio.store_records import (
    NOT_FOUND_FILE,
    STORE_GENRES,
    ReleaseDate,
    load_store,
    parse_release_date,
    parse_store_record,
)
from gamerec.errors import DataError
from gamerec.render import preprocess_summary
from gamerec.settings import Settings
from replay_server import ReplayServer, fetch_overrides, live_form, recorded_store

STORE_FIXTURES = Path(__file__).parent / "fixtures" / "steam-store"
SPLIT: dict[str, Any] = {"valid_fraction": 0.1, "test_fraction": 0.2, "target_fraction": 0.2}
#: the store's type, as a kind
BY_TYPE = {"game": "game", "dlc": "dlc", "demo": "demo", "music": "soundtrack"}
#: DLC the store types "dlc" whose names say soundtrack (kinds.py: the name is more precise)
SOUNDTRACK_DLC = {1086040, 1086190, 1087011, 1087290, 1087590, 1088450, 1088680}
#: "games" whose store genres are software genres (kinds.py rule 3)
SOFTWARE = {292230, 292350, 1086240, 1086920, 1087080, 1087320, 1246040, 1247240, 1247290}


def plays(appids: list[int], users: int = 2) -> LoadedInteractions:
    """Every one of ``users`` players owns every app of ``appids``."""
    rows = [(f"u{user}", appid) for user in range(users) for appid in appids]
    frame = pd.DataFrame(
        {
            "user_id": pd.Series([user for user, _ in rows], dtype=str),
            "appid": pd.array([appid for _, appid in rows], dtype="Int64"),
            "title": pd.Series([None] * len(rows), dtype=object),
            "playtime_min": np.full(len(rows), 60.0, dtype=np.float32),
            "source": "csv",
        }
    )
    return LoadedInteractions(frame[RAW_COLUMNS], {"rows": len(rows)})


def build(appids: list[int], metadata: list[pd.DataFrame]) -> Any:
    return build_processed(
        [plays(appids)], metadata, min_user_items=1, min_item_users=1, seed=0, **SPLIT
    )


@pytest.fixture(scope="module")
def store_frame() -> pd.DataFrame:
    return load_store(STORE_FIXTURES)


@pytest.fixture(scope="module")
def every_fixture_app(store_frame: pd.DataFrame) -> pd.DataFrame:
    """The processed items of a play log that owns every recorded app, with the store input."""
    processed = build(sorted(recorded_store()), [store_frame])
    return processed.items.set_index("appid")


# -- known answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("appid", "kind", "base", "year", "released"),
    [
        (1088000, "dlc", 760060, 2019, "2019-07-30"),  # Mutant Year Zero: Seed of Evil
        (1088670, "demo", 1008080, 2023, "2023-04-11"),  # SYNCED Demo
        (1247270, "soundtrack", 435150, 2017, "2017-09"),  # "Sep 2017"
        (1086940, "game", None, 2023, "2023-08-03"),  # Baldur's Gate 3
        (1245620, "game", None, 2022, "2022-02-24"),  # ELDEN RING
        (1245960, "game", None, 2024, "2024"),  # "2024", coming soon
        (1088030, "game", None, None, None),  # "To be announced"
        (293057, "dlc", 243470, None, None),  # "": Watch_Dogs - Conspiracy
        (1088190, "game", None, 2026, "2026-03-18"),  # a future date, coming_soon false
        (1086040, "soundtrack", 623320, 2019, "2019-08-09"),  # a soundtrack typed "dlc"
        (292230, "tool", None, 2014, "2014-05-23"),  # Game Character Hub: software genres
    ],
)
def test_known_apps_get_the_stores_kind_base_game_and_date(
    every_fixture_app: pd.DataFrame,
    appid: int,
    kind: str,
    base: int | None,
    year: int | None,
    released: str | None,
) -> None:
    item = every_fixture_app.loc[appid]
    assert item["kind"] == kind
    assert (None if pd.isna(item["base_appid"]) else int(item["base_appid"])) == base
    assert (None if pd.isna(item["release_year"]) else int(item["release_year"])) == year
    assert (None if pd.isna(item["release_date"]) else item["release_date"]) == released
    assert item["recommendable"] == (kind == "game")


def test_every_fixture_apps_kind_and_base_game_are_the_stores(
    every_fixture_app: pd.DataFrame,
) -> None:
    records = recorded_store()
    assert len(every_fixture_app) == len(records) == 572
    for appid, record in records.items():
        item = every_fixture_app.loc[appid]
        expected = BY_TYPE[record["type"]]
        if appid in SOUNDTRACK_DLC:
            expected = "soundtrack"
        if appid in SOFTWARE:
            expected = "tool"
        assert item["kind"] == expected, (appid, record["name"])
        fullgame = record.get("fullgame")
        base = int(fullgame["appid"]) if fullgame else None
        shown = None if pd.isna(item["base_appid"]) else int(item["base_appid"])
        assert shown == base, (appid, record["name"])
    kinds = every_fixture_app["kind"].value_counts().to_dict()
    assert kinds == {"game": 309, "dlc": 198, "soundtrack": 32, "demo": 24, "tool": 9}


def test_every_fixture_game_with_a_date_gets_its_year(every_fixture_app: pd.DataFrame) -> None:
    dated = 0
    for appid, record in recorded_store().items():
        text = record["release_date"]["date"]
        year = every_fixture_app.at[appid, "release_year"]
        if text in ("Coming soon", "To be announced", ""):
            assert pd.isna(year), (appid, text)
            continue
        dated += 1
        assert year == int(text[-4:]), (appid, text)
    assert dated == 546  # 544 full dates, "Sep 2017" and "2024"
    assert every_fixture_app["release_year"].notna().sum() == 546


def test_the_summary_says_which_source_decided() -> None:
    processed = build([1086940, 1245620, 1088030], [load_store(STORE_FIXTURES)])
    catalog = processed.summary["catalog"]
    assert catalog["kind_from"] == {"store": 3}
    assert catalog["year_from"] == {"store": 2, "other sources": 0, "none": 1}
    assert catalog["recommendable_without_year"] == 1
    assert catalog["store"] == {
        "records": 572,
        "not_in_store": 0,
        "left_out": 0,
        "left_out_examples": [],
        "types_not_mapped": {},
        "genre_ids_unknown": 0,
        "genre_ids_unknown_examples": [],
    }


# -- the store's word against the other sources ------------------------------------------------


def other_source(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(
        [{"genres": [], "tags": [], **row} for row in rows], columns=METADATA_COLUMNS
    )
    for column in ["appid", "price_cents", "owners_low", "owners_high", "positive", "negative"]:
        frame[column] = frame[column].astype("Int64")
    return frame


def test_the_store_wins_for_kind_base_and_date_and_fills_the_other_gaps() -> None:
    older = other_source(
        [
            {  # an early-access date, a name the store spells alike, a developer of its own
                "appid": 1086940,
                "name": "Baldur's Gate 3",
                "developer": "Larian Studios Games",
                "publisher": None,
                "genres": ["RPG", "Early Access"],
                "release_date": "2020-10-06",
                "owners_low": 10_000_000,
                "owners_high": 20_000_000,
            },
            # a name the rules call a game; the store says it is a DLC of 760060
            {"appid": 1088000, "name": "Mutant Year Zero: Seed of Evil", "release_date": "2019"},
            # a date the store does not give ("To be announced"): the other source's stays
            {"appid": 1088030, "name": "Operation Empty Quiver", "release_date": "2021-01-01"},
        ]
    )
    store = load_store(STORE_FIXTURES)
    for order in ([older, store], [store, older]):  # the store's place does not matter
        merged = merge_metadata(order).set_index("appid")
        bg3 = merged.loc[1086940]
        assert bg3["release_date"] == "2023-08-03" and bg3["release_year"] == 2023
        assert bg3["developer"] == "Larian Studios Games"  # a gap only is filled
        assert bg3["publisher"] == "Larian Studios"
        assert bg3["genres"] == ["RPG", "Early Access", "Strategy", "Adventure"]
        assert bg3["owners_low"] == 10_000_000
        assert (bg3["kind"], bg3["kind_from"], bg3["year_from"]) == ("game", "store", "store")
        dlc = merged.loc[1088000]
        assert (dlc["kind"], dlc["base_appid"], dlc["release_year"]) == ("dlc", 760060, 2019)
        tba = merged.loc[1088030]
        assert tba["release_date"] == "2021-01-01" and pd.isna(tba["release_year"])
        assert pd.isna(tba["year_from"]) and tba["kind_from"] == "store"


def test_the_store_overrides_a_catalog_tables_kind_base_and_year(tmp_path: Path) -> None:
    bundled = load_catalog_table(data_file(BUNDLED_CATALOG))
    table = bundled[bundled["appid"].isin([292230, 1086940, 1245620])].sort_values("appid")
    # what a catalog built without the store could say: Game Character Hub a game of 2000,
    # Baldur's Gate 3 a DLC of Dota 2 without a year, ELDEN RING without a year
    table = table.assign(
        release_year=pd.array([2000, None, None], dtype="Int16"),
        release_date=["2000-01-01", None, None],
        kind=["game", "dlc", "game"],
        base_appid=pd.array([None, 570, None], dtype="Int64"),
    )
    processed = build([1086940, 1245620, 292230], [table, load_store(STORE_FIXTURES)])
    items = processed.items.set_index("appid")
    assert items.loc[[1086940, 1245620, 292230], "release_year"].tolist() == [2023, 2022, 2014]
    assert items.loc[[1086940, 1245620, 292230], "kind"].tolist() == ["game", "game", "tool"]
    assert items.loc[[1086940, 1245620, 292230], "base_appid"].isna().all()
    assert processed.summary["catalog"]["kind_from"] == {"store": 3}
    assert processed.summary["catalog"]["year_from"]["store"] == 3


def test_a_catalog_dlc_the_store_calls_a_game_drops_its_base_and_keeps_the_rest() -> None:
    older = other_source(
        [{"appid": 1086940, "name": "Baldur's Gate 3", "tags": ["RPG"], "price_cents": 5999}]
    )
    catalog_like = older.assign(kind=["dlc"], base_appid=pd.array([1], dtype="Int64"))
    processed = build([1086940], [catalog_like, load_store(STORE_FIXTURES)])
    item = processed.items.set_index("appid").loc[1086940]
    assert item["kind"] == "game" and pd.isna(item["base_appid"])
    assert item["tags"] == ["RPG"] and item["price_cents"] == 5999


# -- both forms of genres and categories; what the fetcher saves -------------------------------


def test_the_live_apis_genre_objects_read_as_the_recorded_ids(tmp_path: Path) -> None:
    recorded = recorded_store()
    shard = {str(appid): live_form(record) for appid, record in recorded.items()}
    (tmp_path / "live.json").write_text(json.dumps(shard))
    live = load_store(tmp_path / "live.json").set_index("appid")
    ids = load_store(STORE_FIXTURES).set_index("appid")
    assert live["genres"].to_dict() == ids["genres"].to_dict()
    assert ids.at[1086940, "genres"] == ["Strategy", "RPG", "Adventure"]
    assert ids.at[1245620, "genres"] == ["Action", "RPG"]
    assert set().union(*ids["genres"]) <= set(STORE_GENRES.values())


def test_fetched_answers_read_as_the_recorded_records(workdir: Path) -> None:
    appids = [1086940, 1088000, 1088670, 1247270, 1245960, 1088030, 1086011]
    with ReplayServer(store_live_form=True) as server:
        settings = Settings.load(overrides=fetch_overrides(server, workdir / "gamerec-data"))
        pipeline.fetch_store(settings, appids=[",".join(map(str, appids))])
    raw = workdir / "gamerec-data" / "raw" / "store"
    assert (raw / NOT_FOUND_FILE).is_file()
    fetched = load_store(raw).set_index("appid")
    recorded = load_store(STORE_FIXTURES).set_index("appid")
    assert fetched.at[1086011, "store_note"] == "not in the store"
    found = fetched.drop(index=1086011)
    assert sorted(found.index) == sorted(appids[:-1])
    columns = [c for c in found.columns if c != "store_note"]
    pd.testing.assert_frame_equal(
        found[columns].sort_index(), recorded.loc[sorted(found.index), columns]
    )


def test_preprocess_reads_a_fetched_store_folder_as_an_input(workdir: Path) -> None:
    with ReplayServer() as server:
        settings = Settings.load(
            overrides={
                **fetch_overrides(server, workdir / "gamerec-data"),
                "preprocess.inputs": [
                    {"kind": "csv", "path": str(workdir / "plays.csv")},
                    {"kind": "store", "path": str(workdir / "gamerec-data/raw/store")},
                ],
                "preprocess.min_user_items": 1,
                "preprocess.min_item_users": 1,
            }
        )
        pipeline.fetch_store(settings, appids=["1086940,1088000,1088670,1086011"])
    (workdir / "plays.csv").write_text(
        "user,item\nu1,1086940\nu1,1088000\nu2,1086940\nu2,1088670\nu3,1086940\nu3,1088000\n"
    )

    summary = pipeline.preprocess(settings)

    items = read_processed(workdir / "gamerec-data/processed", tables=("items",)).items
    items = items.set_index("appid")
    assert items.at[1086940, "name"] == "Baldur's Gate 3"
    assert items.at[1086940, "release_year"] == 2023
    assert items.at[1086940, "release_date"] == "2023-08-03"
    assert (items.at[1088000, "kind"], items.at[1088000, "base_appid"]) == ("dlc", 760060)
    assert (items.at[1088670, "kind"], items.at[1088670, "base_appid"]) == ("demo", 1008080)
    assert summary.catalog is not None
    assert summary.catalog["kind_from"] == {"store": 3}
    assert summary.catalog["store"]["records"] == 3
    assert summary.catalog["store"]["not_in_store"] == 1


def test_the_bundled_data_without_the_store_says_how_many_games_have_no_year(
    bundled_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gamerec.artifacts import read_manifest

    summary = read_manifest(bundled_workspace / "processed", "processed")["summary"]
    catalog = summary["catalog"]
    assert "store" not in catalog
    assert catalog["year_from"]["store"] == 0
    assert catalog["year_from"]["none"] > 12_000  # half the catalog: the years are 2019-era
    assert catalog["recommendable_without_year"] > 12_000
    assert "store" not in catalog["kind_from"]
    from gamerec.results import PreprocessResult

    preprocess_summary(PreprocessResult.from_summary(summary, Path("processed")))
    shown = capsys.readouterr().out
    assert "recommendable, no year" in shown
    assert f"{catalog['recommendable_without_year']:,}" in shown
    assert "gamerec fetch store" in shown


# -- what cannot be read ------------------------------------------------------------------------


def test_a_record_that_cannot_be_read_is_left_out_and_reported(tmp_path: Path) -> None:
    records = {str(appid): record for appid, record in recorded_store().items()}
    records["1086940"] = {**records["1086940"], "type": None}
    records["1245620"] = {
        **records["1245620"],
        "release_date": {"coming_soon": False, "date": "sometime"},
    }
    records["1088000"] = {**records["1088000"], "fullgame": {"appid": "", "name": "?"}}
    records["1088670"] = {**records["1088670"], "genres": [1, 999]}
    records["not an appid"] = {}
    (tmp_path / "records.json").write_text(json.dumps(records))
    (tmp_path / "123.json").write_text(json.dumps({"123": {"success": False}}))

    frame = load_store(tmp_path)
    processed = build([1086940, 1245620, 1088670, 291550], [frame])

    report = processed.summary["catalog"]["store"]
    assert report["records"] == 569 and report["not_in_store"] == 1
    assert report["left_out"] == 4
    examples = report["left_out_examples"]
    assert any("records.json: record 1086940: type None" in e for e in examples)
    assert any("record 1245620: release_date.date 'sometime'" in e for e in examples)
    assert any("record 1088000: fullgame" in e for e in examples)
    assert report["genre_ids_unknown"] == 1
    assert "[999]" in report["genre_ids_unknown_examples"][0]
    items = processed.items.set_index("appid")
    assert pd.isna(items.at[1086940, "release_year"])  # left out: no other source
    assert items.at[1088670, "kind"] == "demo" and items.at[1088670, "genres"] == ["Action"]


def test_a_file_that_is_not_json_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "1086940.json").write_text('{"1086940": {"success": tr')
    with pytest.raises(DataError) as raised:
        load_store(tmp_path)
    assert "1086940.json" in raised.value.message and "not valid JSON" in raised.value.message
    assert "gamerec fetch store" in raised.value.message


def test_an_empty_or_missing_folder_is_an_error_that_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(DataError, match="gamerec fetch store"):
            load_store(folder)


def test_store_is_an_input_kind_of_the_settings(tmp_path: Path) -> None:
    shutil.copy(STORE_FIXTURES / "appdetails-shard-362.json.gz", tmp_path / "shard.json.gz")
    settings = Settings.load(
        overrides={"preprocess.inputs": [{"kind": "store", "path": str(tmp_path)}]}
    )
    (spec,) = settings.preprocess.inputs
    assert spec.kind == "store"
    with pytest.raises(DataError, match="no interactions"):
        load_sources([Source(spec.kind, spec.path)])
    assert len(load_store(tmp_path)) == 219


def test_a_gzip_shard_and_its_plain_text_read_alike(tmp_path: Path) -> None:
    shard = STORE_FIXTURES / "appdetails-shard-97.json.gz"
    (tmp_path / "plain.json").write_bytes(gzip.decompress(shard.read_bytes()))
    pd.testing.assert_frame_equal(load_store(shard), load_store(tmp_path / "plain.json"))


# -- the date parser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 Jul, 2019", ReleaseDate(2019, 7, 8)),
        ("Jul 8, 2019", ReleaseDate(2019, 7, 8)),
        ("18 Mar, 2026", ReleaseDate(2026, 3, 18)),
        ("29 Feb, 2024", ReleaseDate(2024, 2, 29)),
        ("3 September, 2021", ReleaseDate(2021, 9, 3)),
        ("Sep 2017", ReleaseDate(2017, 9)),
        ("September 2017", ReleaseDate(2017, 9)),
        ("Q3 2025", ReleaseDate(2025)),
        ("Early 2026", ReleaseDate(2026)),
        ("2024", ReleaseDate(2024)),
        ("2019-07-08", ReleaseDate(2019, 7, 8)),
        ("  8  Jul,  2019 ", ReleaseDate(2019, 7, 8)),
        ("Coming soon", None),
        ("To be announced", None),
        ("TBA", None),
        ("", None),
    ],
)
def test_release_dates_the_store_shows(text: str, expected: ReleaseDate | None) -> None:
    assert parse_release_date(text, path="f.json", record=1) == expected


def test_a_release_date_as_iso_text_keeps_its_precision() -> None:
    assert ReleaseDate(2023, 8, 3).iso == "2023-08-03"
    assert ReleaseDate(2017, 9).iso == "2017-09"
    assert ReleaseDate(2024).iso == "2024"


@pytest.mark.parametrize(
    "text",
    ["30 Feb, 2020", "8 Jux, 2019", "Q5 2025", "sometime", "1 Jan, 1969", "2101", 2019, None],
)
def test_a_release_date_that_is_no_date_is_a_data_error_naming_file_and_record(
    text: Any,
) -> None:
    with pytest.raises(DataError) as raised:
        parse_release_date(text, path="raw/store/42.json", record=42)
    assert raised.value.message.startswith("raw/store/42.json: record 42: release_date.date")


@given(st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)))
def test_every_calendar_day_reads_back_in_both_of_the_stores_orders(day: date) -> None:
    for text in (f"{day.day} {day:%b}, {day.year}", f"{day:%b} {day.day}, {day.year}"):
        assert parse_release_date(text, path="f", record=1) == ReleaseDate(
            day.year, day.month, day.day
        )


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(),
        st.from_regex(r"[0-9]{1,2} [A-Za-z]{3,9},? [0-9]{4}", fullmatch=True),
        st.from_regex(r"[A-Za-z]{1,9} [0-9]{1,4}", fullmatch=True),
        st.integers(),
        st.none(),
        st.lists(st.text(), max_size=2),
    )
)
def test_the_date_parser_answers_a_date_none_or_a_data_error(value: Any) -> None:
    try:
        result = parse_release_date(value, path="raw/store/7.json", record=7)
    except DataError as error:
        assert error.message.startswith("raw/store/7.json: record 7: ")
    else:
        assert result is None or 1970 <= result.year <= 2100


# -- the record parser --------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = [
    "type",
    "name",
    "release_date",
    "fullgame",
    "developers",
    "publishers",
    "genres",
    "categories",
    "is_free",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(recorded_store())),
    st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=3),
)
def test_the_record_parser_answers_a_row_or_a_data_error_naming_file_and_record(
    appid: int, changes: dict[str, Any]
) -> None:
    record = {**recorded_store()[appid], **changes}
    try:
        row = parse_store_record(record, appid=appid, path="shard.json")
    except DataError as error:
        assert error.message.startswith(f"shard.json: record {appid}: ")
    else:
        assert row["appid"] == appid and isinstance(row["store_type"], str)
        assert all(isinstance(g, str) for g in row["genres"])


@given(_JSON)
def test_any_json_value_as_a_record_is_a_row_or_a_data_error(value: Any) -> None:
    try:
        parse_store_record(value, appid=5, path="x.json")
    except DataError as error:
        assert error.message.startswith("x.json: record 5: ")


def test_a_free_app_costs_nothing_and_blank_publishers_are_none() -> None:
    records = recorded_store()
    brawlhalla = parse_store_record(records[291550], appid=291550, path="f")
    assert brawlhalla["price_cents"] == 0 and brawlhalla["name"] == "Brawlhalla"
    blank = parse_store_record(records[292710], appid=292710, path="f")
    assert records[292710]["publishers"] == [""] and blank["publisher"] is None
    assert blank["developer"] == "Traveller's Tales, Feral Interactive (Mac)"
    assert parse_store_record(records[1086940], appid=1, path="f")["store_type"] == "game"
