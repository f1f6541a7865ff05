"""Rebuild the bundled catalog, src/gamerec/dataio/data/catalog-2025-01-01.parquet.

    python scripts/build_catalog.py /path/to/shared/data [--min-owners 20000] \
        [--store /path/to/shared/data/steam-store] [--store gamerec-data/raw/store]

Reads the SteamSpy 2025-01-01 ``all`` crawl (pages overlap: deduplicated by appid), SteamSpy
appdetails (tags as a Python dict string), Kaggle Steam Store Games ``steam.csv`` and the UCSD
``steam_games.json``, joined by appid (for scalar fields SteamSpy first, then steam.csv, then
UCSD; genres and tags united). Keeps every app with SteamSpy ``owners_low >= --min-owners`` plus
every app a steam-200k title links to by normalised title (through any source's name), so the
play log's games keep their metadata. Each row gets its kind (gamerec.dataio.kinds) and, for DLC,
the appid of its base game. Prints what it kept, the kind counts with examples, and the size.

``--store`` (repeatable) adds Steam store ``appdetails`` records of the kept apps: a ``raw/store``
folder of ``gamerec fetch store`` or files of records keyed by appid (the steam-store shards).
As in ``gamerec preprocess`` (gamerec.dataio.catalog.merge_metadata), the store's word wins for
the kind, the base game and the release date, and fills the gaps of the other fields.
"""

from __future__ import annotations

import argparse
import ast
import collections
import csv
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gamerec.dataio.catalog import (
    METADATA_COLUMNS,
    catalog_schema,
    load_steam_csv,
    load_ucsd,
    merge_metadata,
    parse_steamspy_record,
)
from gamerec.dataio.files import normalise_title
from gamerec.dataio.kinds import (
    KINDS_WITH_BASE,
    Kind,
    base_key,
    classify,
    find_base_appid,
    kind_from_name,
)
from gamerec.dataio.store_records import load_store, store_report

OUT = Path(__file__).resolve().parents[1] / "src/gamerec/dataio/data/catalog-2025-01-01.parquet"
MAX_TAGS = 20
_YEAR = re.compile(r"\b(19[7-9]\d|20[0-4]\d)\b")


def steamspy_frame(shared: Path) -> pd.DataFrame:
    records: dict[int, dict[str, Any]] = {}
    pages = sorted(
        (shared / "steamspy/all-2025-01-01").glob("page_*.json*"),
        key=lambda p: int(re.search(r"page_(\d+)", p.name).group(1)),  # type: ignore[union-attr]
    )
    rows_seen = 0
    for page in pages:
        with gzip.open(page, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
        for key, record in document.items():
            rows_seen += 1
            row = parse_steamspy_record({"appid": key, **record})
            if row["appid"] is not None:
                records.setdefault(row["appid"], row)
    print(f"SteamSpy all: {len(pages)} pages, {rows_seen:,} rows, {len(records):,} unique appids")
    details = []
    with gzip.open(shared / "steamspy/appdetails/appdetails-1000-apps.csv.gz", "rt") as handle:
        for record in csv.DictReader(handle):
            text = record.get("tags") or ""
            tags = ast.literal_eval(text) if text.startswith("{") else {}
            details.append({**record, "tags": tags})
    for path in sorted((shared / "steamspy/appdetails").glob("*.json")):
        details.append(json.loads(path.read_text()))
    for record in details:
        row = parse_steamspy_record(record)
        if row["appid"] is None or row["name"] is None:
            continue
        base = records.get(row["appid"], {})
        records[row["appid"]] = {**base, **{k: v for k, v in row.items() if v not in (None, [])}}
    print(f"SteamSpy appdetails: {len(details):,} apps")
    frame = pd.DataFrame.from_records(list(records.values()), columns=METADATA_COLUMNS)
    for column in ["genres", "tags"]:
        frame[column] = frame[column].map(lambda v: v if isinstance(v, list) else [])
    return frame


def ucsd_extras(path: Path) -> tuple[dict[int, list[str]], list[tuple[int, str]]]:
    """UCSD ``specs`` by appid, and (appid, title) where ``title`` differs from ``app_name``."""
    specs: dict[int, list[str]] = {}
    titles: list[tuple[int, str]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = ast.literal_eval(line)
            appid = record.get("id")
            if not (isinstance(appid, str) and appid.isdigit()):
                continue
            specs.setdefault(int(appid), list(record.get("specs") or []))
            if isinstance(record.get("title"), str):
                titles.append((int(appid), record["title"]))
    return specs, titles


def steam_200k_titles(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return sorted({row[1] for row in csv.reader(handle)})


def release_year(date: Any) -> int | None:
    match = _YEAR.search(date) if isinstance(date, str) else None
    return int(match.group(1)) if match else None


def main(shared: Path, min_owners: int, store_paths: list[Path]) -> None:
    spy = steamspy_frame(shared)
    steam_csv = load_steam_csv(shared / "steam-store-games/steam.csv.gz")
    ucsd = load_ucsd(shared / "ucsd/steam_games.json.gz")
    ucsd = ucsd[ucsd["appid"].notna()]
    specs, ucsd_titles = ucsd_extras(shared / "ucsd/steam_games.json.gz")
    print(f"steam.csv: {len(steam_csv):,} apps; UCSD: {len(ucsd):,} apps with an appid")
    stores = [load_store(path) for path in store_paths]
    for path, frame in zip(store_paths, stores, strict=True):
        print(f"store {path}: {store_report(frame)}")

    # every name any source gives an appid: the keys steam-200k's titles are matched on
    names: list[tuple[int, str]] = []
    for frame in (spy, steam_csv, ucsd):
        names += [
            (int(a), n)
            for a, n in zip(frame["appid"], frame["name"], strict=True)
            if isinstance(n, str)
        ]
    names += ucsd_titles
    reviews: dict[int, int] = {}
    for frame in (ucsd, steam_csv, spy):  # later sources overwrite: SteamSpy's 2025 counts win
        counts = frame["positive"].fillna(0).astype("int64") + frame["negative"].fillna(0).astype(
            "int64"
        )
        reviews.update(zip(frame["appid"].astype("int64"), counts, strict=True))
    by_key: dict[str, set[int]] = collections.defaultdict(set)
    for appid, name in names:
        key = normalise_title(name)
        if key:
            by_key[key].add(appid)

    titles = steam_200k_titles(shared / "steam-200k/steam-200k.csv.gz")
    links: dict[str, int] = {}
    for title in titles:
        candidates = by_key.get(normalise_title(title))
        if candidates:  # among namesakes the most reviewed app, then the lowest appid
            links[title] = min(candidates, key=lambda a: (-reviews.get(a, 0), a))
    print(f"steam-200k: {len(titles):,} titles, {len(links):,} link to an appid")

    owners_low = spy.set_index("appid")["owners_low"]
    popular = set(owners_low.index[owners_low.fillna(-1) >= min_owners].astype(int))
    keep = popular | set(links.values())
    print(
        f"kept: {len(popular):,} apps with {min_owners:,}+ owners, "
        f"{len(keep - popular):,} more linked from steam-200k"
    )
    sources = [f[f["appid"].isin(keep)] for f in (spy, steam_csv, ucsd, *stores)]
    merged = merge_metadata(sources).reset_index(drop=True)
    merged = merged[merged["appid"].notna()].sort_values("appid").reset_index(drop=True)
    unnamed = merged["name"].isna()
    dropped = [int(a) for a in merged["appid"][unnamed]]
    print(f"dropped {len(dropped)} app(s) that no source names: {dropped}")
    merged = merged[~unnamed].reset_index(drop=True)
    merged["tags"] = merged["tags"].map(lambda tags: tags[:MAX_TAGS])

    # names other than the catalog name that a steam-200k title was linked through
    own_keys = dict(
        zip(merged["appid"].astype(int), merged["name"].map(normalise_title), strict=True)
    )
    aliases: dict[int, list[str]] = collections.defaultdict(list)
    for title, appid in sorted(links.items()):
        if normalise_title(title) != own_keys.get(appid):
            aliases[appid].append(title)
    merged["aliases"] = [aliases.get(int(a), []) for a in merged["appid"]]

    by_store = (merged["kind_from"] == "store").to_numpy()
    merged["kind"] = [
        kind
        if from_store
        else classify(
            name, appid=int(appid), genres=genres, tags=tags, specs=specs.get(int(appid), [])
        ).value
        for appid, name, genres, tags, kind, from_store in zip(
            merged["appid"],
            merged["name"],
            merged["genres"],
            merged["tags"],
            merged["kind"],
            by_store,
            strict=True,
        )
    ]
    bases = base_index(spy, steam_csv, ucsd, specs, reviews)
    with_base = {kind.value for kind in KINDS_WITH_BASE}
    merged["base_appid"] = [
        # the store's fullgame where it names one, else the name's base game of a DLC
        None
        if kind not in with_base
        else int(base)
        if from_store and pd.notna(base)
        else find_base_appid(name, bases, appid=int(appid))
        if kind == Kind.DLC
        else None
        for appid, name, kind, base, from_store in zip(
            merged["appid"],
            merged["name"],
            merged["kind"],
            merged["base_appid"],
            by_store,
            strict=True,
        )
    ]
    dated_by_store = (merged["year_from"] == "store").to_numpy()
    merged["release_year"] = [
        int(year) if from_store else release_year(date)
        for year, date, from_store in zip(
            merged["release_year"], merged["release_date"], dated_by_store, strict=True
        )
    ]
    write(merged, OUT)
    report(merged, popular, links, specs)


def base_index(
    spy: pd.DataFrame,
    steam_csv: pd.DataFrame,
    ucsd: pd.DataFrame,
    specs: dict[int, list[str]],
    reviews: dict[int, int],
) -> dict[tuple[str, ...], int]:
    """Word keys of every game's name (any source, not typed DLC) -> appid, most reviewed first."""
    games: list[tuple[int, str]] = []  # every source's name: renamed games keep old keys
    for frame in (spy, steam_csv, ucsd):
        for appid, name in zip(frame["appid"].astype(int), frame["name"], strict=True):
            typed_dlc = "Downloadable Content" in specs.get(appid, [])
            if isinstance(name, str) and not typed_dlc and kind_from_name(name) is None:
                games.append((appid, name))
    index: dict[tuple[str, ...], int] = {}
    for appid, name in sorted(games, key=lambda game: (-reviews.get(game[0], 0), game[0])):
        index.setdefault(base_key(name), appid)
    return index


SCHEMA = catalog_schema()


def write(frame: pd.DataFrame, path: Path) -> None:
    columns = {}
    for field in SCHEMA:
        values = frame[field.name].tolist()
        values = [None if v is pd.NA or (isinstance(v, float) and v != v) else v for v in values]
        if pa.types.is_dictionary(field.type):
            columns[field.name] = pa.array(values, pa.string()).dictionary_encode()
            columns[field.name] = columns[field.name].cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    table = pa.table(columns, schema=SCHEMA)
    temporary = path.with_suffix(".tmp")
    pq.write_table(table, temporary, compression="zstd", compression_level=19, use_dictionary=True)
    temporary.replace(path)


def report(
    frame: pd.DataFrame, popular: set[int], links: dict[str, int], specs: dict[int, list[str]]
) -> None:
    size = OUT.stat().st_size
    print(f"wrote {OUT.name}: {len(frame):,} rows, {size:,} bytes ({size / 2**20:.2f} MiB)")
    with_tags = (frame["tags"].map(len) > 0).sum()
    print(
        f"  with tags {with_tags:,}, with genres {(frame['genres'].map(len) > 0).sum():,}, "
        f"with release_year {frame['release_year'].notna().sum():,}, "
        f"with aliases {(frame['aliases'].map(len) > 0).sum():,}"
    )
    by_name = frame["name"].map(kind_from_name)
    by_store = frame["kind_from"] == "store"
    for kind in Kind:
        rows = frame[frame["kind"] == kind.value]
        if rows.empty or kind is Kind.GAME:
            continue
        stored = by_store[rows.index].sum()
        named = (by_name[rows.index].notna() & ~by_store[rows.index]).sum()
        print(
            f"  {kind.value}: {len(rows):,} rows ({stored:,} by the store, {named:,} by name, "
            f"{len(rows) - stored - named:,} by type; {rows['appid'].isin(popular).sum():,} "
            f"among the popular) e.g. {list(rows['name'].head(6))}"
        )
    dlc = frame[frame["kind"] == Kind.DLC.value]
    print(f"  dlc with base_appid: {dlc['base_appid'].notna().sum():,} of {len(dlc):,}")
    games = frame[frame["kind"] == Kind.GAME.value]
    print(
        f"  the store decided the kind of {by_store.sum():,} rows and the release year of "
        f"{(frame['year_from'] == 'store').sum():,}; games without a release year: "
        f"{games['release_year'].isna().sum():,} of {len(games):,}"
    )
    print(f"  UCSD specs known for {sum(a in specs for a in frame['appid']):,} rows")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="the shared data folder")
    parser.add_argument("--min-owners", type=int, default=20_000)
    parser.add_argument(
        "--store",
        type=Path,
        action="append",
        default=[],
        help="Steam store appdetails: a raw/store folder or record files (repeatable)",
    )
    arguments = parser.parse_args()
    main(arguments.shared, arguments.min_owners, arguments.store)
