"""The catalog table: its loader on golden and broken files, and the bundled 2025 catalog."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gamerec.dataio.catalog import (
    CATALOG_COLUMNS,
    METADATA_COLUMNS,
    catalog_schema,
    load_catalog_table,
)
from gamerec.dataio.datasets import data_file
from gamerec.dataio.kinds import KINDS, KINDS_WITH_BASE
from gamerec.dataio.preprocess import Source, load_sources
from gamerec.errors import DataError
from gamerec.settings import InputSpec

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLED = data_file("catalog-2025-01-01.parquet")
SCHEMA = catalog_schema()
# three real rows of the bundled catalog
ROWS: list[dict[str, Any]] = [
    {
        "appid": 570,
        "name": "Dota 2",
        "genres": ["Action", "Strategy", "Free to Play"],
        "tags": ["Free to Play", "MOBA"],
        "developer": "Valve",
        "publisher": "Valve",
        "price_cents": 0,
        "owners_low": 200_000_000,
        "owners_high": 500_000_000,
        "positive": 1_833_370,
        "negative": 406_340,
        "release_date": "2013-07-09",
        "release_year": 2013,
        "kind": "game",
        "base_appid": None,
        "aliases": [],
    },
    {
        "appid": 22440,
        "name": "Fallout 3 - Point Lookout",
        "genres": ["RPG"],
        "tags": [],
        "developer": "Bethesda Game Studios",
        "publisher": "Bethesda Softworks",
        "price_cents": 999,
        "owners_low": None,
        "owners_high": None,
        "positive": None,
        "negative": None,
        "release_date": "2009-06-23",
        "release_year": 2009,
        "kind": "dlc",
        "base_appid": 22300,
        "aliases": ["Fallout 3 Point Lookout"],
    },
    {
        "appid": 222860,
        "name": "Left 4 Dead 2 Dedicated Server",
        "genres": [],
        "tags": [],
        "developer": None,
        "publisher": None,
        "price_cents": None,
        "owners_low": 20_000,
        "owners_high": 50_000,
        "positive": 0,
        "negative": 0,
        "release_date": None,
        "release_year": None,
        "kind": "server",
        "base_appid": None,
        "aliases": [],
    },
]


def write(path: Path, rows: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_loader_reads_a_golden_table(tmp_path: Path) -> None:
    frame = load_catalog_table(write(tmp_path / "catalog.parquet", ROWS))
    assert (
        list(frame.columns)
        == CATALOG_COLUMNS
        == [
            *METADATA_COLUMNS,
            "release_year",
            "kind",
            "base_appid",
            "aliases",
        ]
    )
    for column in ["appid", "price_cents", "owners_low", "owners_high", "base_appid"]:
        assert str(frame[column].dtype) == "Int64"
    assert str(frame["release_year"].dtype) == "Int16"
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for got, want in zip(records, ROWS, strict=True):
        assert got == want


@pytest.mark.parametrize(
    ("row", "change", "message"),
    [
        (1, {"appid": 0}, r"row 1 \(appid 0\): appid is not a positive integer"),
        (2, {"appid": -5}, r"row 2 \(appid -5\): appid is not a positive integer"),
        (2, {"appid": 570}, r"row 2 \(appid 570\): appid appears twice"),
        (0, {"owners_low": 600_000_000}, r"row 0 \(appid 570\): owners range 600000000 \.\. 5"),
        (2, {"owners_high": None}, r"row 2 \(appid 222860\): owners range 20000 \.\. <NA>"),
        (1, {"positive": -1}, r"row 1 \(appid 22440\): positive is negative"),
        (0, {"kind": "expansion"}, r"row 0 \(appid 570\): kind 'expansion' is not one of"),
        (0, {"base_appid": 22300}, r"row 0 \(appid 570\): base_appid must be .* only on a dlc"),
        (1, {"base_appid": 0}, r"row 1 \(appid 22440\): base_appid must be a positive appid"),
        (1, {"release_year": 1066}, r"row 1 \(appid 22440\): release_year is not a year"),
        (2, {"name": "  "}, r"row 2 \(appid 222860\): name is missing"),
        (0, {"genres": ["Action", None]}, r"row 0 \(appid 570\): genres holds a null"),
        (1, {"tags": [None]}, r"row 1 \(appid 22440\): tags holds a null"),
        (1, {"aliases": ["Point Lookout", None]}, r"row 1 \(appid 22440\): aliases holds a null"),
    ],
)
def test_bad_values_name_the_file_and_row(
    tmp_path: Path, row: int, change: dict[str, Any], message: str
) -> None:
    rows = [dict(r) for r in ROWS]
    rows[row].update(change)
    path = write(tmp_path / "bad.parquet", rows)
    with pytest.raises(DataError, match=message) as caught:
        load_catalog_table(path)
    assert str(path) in str(caught.value)
    assert "scripts/build_catalog.py" in str(caught.value)


def test_a_demo_or_soundtrack_may_name_its_base_game(tmp_path: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[2].update(kind="demo", base_appid=550)  # the store's fullgame of a demo
    frame = load_catalog_table(write(tmp_path / "demo.parquet", rows)).set_index("appid")
    assert frame.loc[222860, "base_appid"] == 550
    rows[2].update(kind="game")
    with pytest.raises(DataError, match="only on a dlc, demo or soundtrack row"):
        load_catalog_table(write(tmp_path / "game.parquet", rows))


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [("appid", 0, 2**32), ("appid", 2, 2**40), ("base_appid", 1, 2**32)],
)
def test_appids_past_2_32_are_refused(tmp_path: Path, column: str, row: int, value: int) -> None:
    # Steam appids are unsigned 32-bit numbers: the one appid rule (gamerec.dataio.ids)
    schema = SCHEMA.set(SCHEMA.get_field_index(column), pa.field(column, pa.int64()))
    rows = [dict(r) for r in ROWS]
    rows[row][column] = value
    path = write(tmp_path / "wide.parquet", rows, schema)
    with pytest.raises(DataError, match=rf"wide\.parquet: row {row} \(appid \d+\): {column}"):
        load_catalog_table(path)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1.5])
def test_non_finite_or_fractional_numbers_are_refused(tmp_path: Path, bad: float) -> None:
    schema = SCHEMA.set(SCHEMA.get_field_index("positive"), pa.field("positive", pa.float64()))
    rows = [dict(r) for r in ROWS]
    rows[1]["positive"] = bad
    path = write(tmp_path / "float.parquet", rows, schema)
    with pytest.raises(DataError, match=r"float\.parquet: row 1 \(appid 22440\): positive is"):
        load_catalog_table(path)


def test_a_float_column_of_whole_numbers_is_accepted(tmp_path: Path) -> None:
    schema = SCHEMA.set(SCHEMA.get_field_index("positive"), pa.field("positive", pa.float64()))
    frame = load_catalog_table(write(tmp_path / "float.parquet", ROWS, schema))
    assert frame["positive"].tolist()[0] == 1_833_370


def test_missing_columns_wrong_types_and_non_parquet_files(tmp_path: Path) -> None:
    narrow = pa.schema([f for f in SCHEMA if f.name not in ("kind", "aliases")])
    rows = [{k: v for k, v in r.items() if k in narrow.names} for r in ROWS]
    path = write(tmp_path / "narrow.parquet", rows, narrow)
    with pytest.raises(DataError, match=r"narrow\.parquet: is not a gamerec catalog: .*'kind'"):
        load_catalog_table(path)
    flat = SCHEMA.set(SCHEMA.get_field_index("tags"), pa.field("tags", pa.string()))
    rows = [{**r, "tags": ";".join(r["tags"])} for r in ROWS]
    with pytest.raises(DataError, match=r"column tags holds string, not lists of strings"):
        load_catalog_table(write(tmp_path / "flat.parquet", rows, flat))
    text = tmp_path / "catalog.parquet"
    text.write_text("appid,name\n570,Dota 2\n")
    with pytest.raises(DataError, match=r"catalog\.parquet: is not a readable Parquet file"):
        load_catalog_table(text)
    with pytest.raises(DataError, match="file not found"):
        load_catalog_table(tmp_path / "absent.parquet")


def test_catalog_is_a_preprocess_input_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "catalog.parquet", ROWS)
    assert InputSpec(kind="catalog", path=path).kind == "catalog"
    slice_ = FIXTURES / "preprocess" / "steam-200k-slice.csv"
    _, metadata = load_sources([Source("steam-200k", slice_), Source("catalog", path)])
    assert len(metadata) == 1
    assert metadata[0]["appid"].tolist() == [570, 22440, 222860]


def test_a_null_in_a_list_column_stops_preprocess_naming_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it used to pass preprocess and index, then fail every recommend with "run gamerec
    # preprocess again", which wrote the same table again
    from gamerec import pipeline
    from gamerec.settings import Settings

    monkeypatch.chdir(tmp_path)
    rows = [dict(r) for r in ROWS]
    rows[0]["genres"] = ["Action", None]
    path = write(tmp_path / "catalog.parquet", rows)
    slice_ = FIXTURES / "preprocess" / "steam-200k-slice.csv"
    settings = Settings(
        data_dir=tmp_path / "gamerec-data",
        preprocess={
            "inputs": [
                {"kind": "steam-200k", "path": slice_},
                {"kind": "catalog", "path": path},
            ]
        },
    )
    with pytest.raises(DataError, match=r"row 0 \(appid 570\): genres holds a null") as caught:
        pipeline.preprocess(settings)
    assert "preprocess" not in caught.value.message.split(":")[-1]  # not "run it again"
    assert not (tmp_path / "gamerec-data" / "processed").exists()


# --- the bundled catalog -----------------------------------------------------------------------


def test_bundled_catalog_has_the_schema_the_loader_expects() -> None:
    assert pq.read_schema(BUNDLED).remove_metadata() == SCHEMA
    assert BUNDLED.stat().st_size < 2_500_000


def test_bundled_catalog_holds_the_popular_2025_games_with_tags() -> None:
    frame = load_catalog_table(BUNDLED).set_index("appid")
    assert 24_000 < len(frame) < 26_000
    assert set(frame["kind"]) <= set(KINDS)
    assert (frame["owners_low"].fillna(20_000) >= 0).all()
    for appid, name, tag in [
        (570, "Dota 2", "MOBA"),
        (1245620, "ELDEN RING", "Souls-like"),
        (431960, "Wallpaper Engine", "Utilities"),
    ]:
        assert frame.loc[appid, "name"] == name
        assert tag in frame.loc[appid, "tags"]
    assert frame.loc[570, "kind"] == "game"
    assert frame.loc[1245620, "kind"] == "game"
    assert frame.loc[431960, "kind"] == "tool"
    assert frame.loc[222860, "kind"] == "server"  # Left 4 Dead 2 Dedicated Server
    assert frame.loc[22440, "base_appid"] == 22300  # Fallout 3 - Point Lookout -> Fallout 3
    with_base = frame["kind"].isin([str(kind) for kind in KINDS_WITH_BASE])
    assert (frame["base_appid"].notna() <= with_base).all()


def test_bundled_catalog_takes_release_dates_and_kinds_from_the_store_records() -> None:
    """Built with ``--store`` over the three store shards: the store's date where no 2019-era
    source had one, and its word over the older ones."""
    frame = load_catalog_table(BUNDLED).set_index("appid")
    for appid, name, released in [
        (1086940, "Baldur's Gate 3", "2023-08-03"),
        (1245620, "ELDEN RING", "2022-02-24"),
        (292000, "No More Room in Hell 2", "2024-10-22"),
        (293480, "FRONTIERS", "2020-01-01"),  # steam.csv said 2014-12-15 (early access)
    ]:
        assert frame.loc[appid, "name"] == name
        assert frame.loc[appid, "release_date"] == released
        assert frame.loc[appid, "release_year"] == int(released[:4])
    assert frame.loc[1087320, "kind"] == "tool"  # the store's "game" of the Education genre
    assert frame.loc[292030, "release_year"] == 2015  # The Witcher 3: both sources agree
    games = frame[frame["kind"] == "game"]
    assert len(games) == 24_282
    assert games["release_year"].isna().sum() == 12_134


def test_bundled_catalog_knows_a_real_2025_library() -> None:
    document = json.loads(
        (FIXTURES / "steam-webapi" / "GetOwnedGames_include_appinfo.json").read_text()
    )
    owned = [game["appid"] for game in document["response"]["games"]]
    appids = set(load_catalog_table(BUNDLED)["appid"].tolist())
    known = [appid for appid in owned if appid in appids]
    assert len(owned) == 129
    assert len(known) >= 105
