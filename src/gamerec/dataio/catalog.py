"""Item metadata from every source, merged into one table keyed by appid.

Each loader returns a frame with :data:`METADATA_COLUMNS`; :func:`merge_metadata` combines
them (first non-missing value wins, genre and tag lists are united).

What is checked, per field: an appid that is present must be an appid
(:mod:`gamerec.dataio.ids`); an owners range must read ``low .. high`` with ``low <= high``;
counts must be whole numbers from 0, prices finite amounts from 0. Any of these failing is a
DataError naming the file and the record. Absent values stay lenient where the real data has
them: a SteamSpy ``name`` of ``""`` or null, a null price, an empty ``score_rank``, a UCSD
record without ``id`` or with a price such as "Free To Play".
"""

from __future__ import annotations

import ast
import html
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gamerec.dataio.files import normalise_title, read_bytes, read_json, read_text
from gamerec.dataio.ids import MAX_APPID, appid_or_none, is_appid_text
from gamerec.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CATALOG_COLUMNS",
    "EXTRA_COLUMNS",
    "METADATA_COLUMNS",
    "PROVENANCE_COLUMNS",
    "catalog_schema",
    "load_catalog_table",
    "load_steam_csv",
    "load_steamspy",
    "load_ucsd",
    "merge_metadata",
    "metadata_frame",
    "parse_owners",
    "parse_steamspy_record",
]

METADATA_COLUMNS = [
    "appid",
    "name",
    "genres",
    "tags",
    "developer",
    "publisher",
    "price_cents",
    "owners_low",
    "owners_high",
    "positive",
    "negative",
    "release_date",
]
_INT_COLUMNS = ["appid", "price_cents", "owners_low", "owners_high", "positive", "negative"]
_OWNERS = re.compile(r"^\s*([0-9][0-9,]{0,24})\s*(?:\.\.|-)\s*([0-9][0-9,]{0,24})\s*$")
_DIGITS = re.compile(r"[0-9]{1,16}")
#: counts, cents and owners past this are not real data (and would overflow int64 columns)
_MAX_COUNT = 2**53


class _BadFieldError(ValueError):
    """A field of one record is unusable; the loader adds the file and record."""


def parse_owners(text: Any) -> tuple[int | None, int | None]:
    """``"20,000,000 .. 50,000,000"`` or ``"10000000-20000000"`` -> ``(low, high)``;
    ``(None, None)`` for anything else (see :func:`owners_range` for the strict reading)."""
    try:
        return owners_range(text)
    except _BadFieldError:
        return None, None


def owners_range(text: Any) -> tuple[int | None, int | None]:
    """Like :func:`parse_owners`, but a value that is present and not a range is an error
    (ValueError): not ``low .. high``, ``low > high``, or past any real count."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, None
    match = _OWNERS.match(text) if isinstance(text, str) else None
    if not match:
        raise _BadFieldError(f"owners {text!r} is not a range such as '20,000 .. 50,000'")
    low, high = (int(match.group(i).replace(",", "")) for i in (1, 2))
    if low > high or high > _MAX_COUNT:
        raise _BadFieldError(f"owners {text!r} is not a range from low to high")
    return low, high


def _count(value: Any, name: str) -> int | None:
    """A whole number >= 0 (a count, US cents); None when absent (null or empty text)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not 0 <= number <= _MAX_COUNT:
        raise _BadFieldError(f"{name} {value!r} is not a whole number from 0 to {_MAX_COUNT:,}")
    return number


def _appid(value: Any) -> int | None:
    """An appid; None when absent (null or empty text); an error when present and not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    appid = appid_or_none(value)
    if appid is None:
        raise _BadFieldError(f"appid {value!r} is not an appid (a positive whole number)")
    return appid


def _dollars_to_cents(value: float, name: str) -> int:
    if not math.isfinite(value) or not 0 <= value <= _MAX_COUNT / 100:
        raise _BadFieldError(f"{name} {value!r} is not a price (a finite amount from 0)")
    return round(value * 100)


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _split_list(value: Any, sep: str) -> list[str]:
    # UCSD's lists carry HTML entities ("Design &amp; Illustration"): unescape to one spelling
    if isinstance(value, list):
        return [html.unescape(str(v)).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [html.unescape(part).strip() for part in value.split(sep) if part.strip()]
    return []


def metadata_frame(
    records: Sequence[dict[str, Any]], columns: Sequence[str] = METADATA_COLUMNS
) -> pd.DataFrame:
    """Rows as a metadata frame of ``columns``: whole-number columns as Int64, lists as lists."""
    frame = pd.DataFrame.from_records(list(records), columns=list(columns))
    for column in [*_INT_COLUMNS, "release_year", "base_appid"]:
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    for column in ["genres", "tags", "aliases"]:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: v if isinstance(v, list) else [])
    return frame


def parse_steamspy_record(record: dict[str, Any]) -> dict[str, Any]:
    """One SteamSpy record (``all`` or ``appdetails``) as a metadata row.

    A field that is present and unusable (see the module docstring) raises ValueError.
    """
    low, high = owners_range(record.get("owners"))
    tags = record.get("tags")
    return {
        "appid": _appid(record.get("appid")),
        "name": _text_or_none(record.get("name")),
        # appdetails only; `all` pages carry neither (tags may be [] when a game has none)
        "genres": _split_list(record.get("genre"), ","),
        "tags": list(tags) if isinstance(tags, dict) else [],
        "developer": _text_or_none(record.get("developer")),
        "publisher": _text_or_none(record.get("publisher")),
        "price_cents": _count(record.get("initialprice") or record.get("price"), "price"),
        "owners_low": low,
        "owners_high": high,
        "positive": _count(record.get("positive"), "positive"),
        "negative": _count(record.get("negative"), "negative"),
        "release_date": None,
    }


def _load_json(path: Path) -> Any:
    return read_json(path, advice="; delete it and fetch again")


def _page_number(path: Path) -> int:
    match = re.search(r"page_(\d+)", path.name)
    return int(match.group(1)) if match else -1


def load_steamspy(path: str | Path) -> pd.DataFrame:
    """A ``raw/steamspy`` folder: ``all/page_N.json[.gz]`` and ``appdetails/APPID.json[.gz]``.

    Pages overlap (an appid can sit on two adjacent pages), so rows are deduplicated by appid;
    appdetails (the only source of genres and tags) override the page record.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError("is not a folder; point a steamspy input at raw/steamspy", path)
    pages = sorted((path / "all").glob("page_*.json*"), key=_page_number)
    details = sorted((path / "appdetails").glob("*.json*"))
    details = [d for d in details if is_appid_text(d.name.split(".")[0])]
    if not pages and not details:
        raise DataError(
            "holds no SteamSpy pages (all/page_N.json) or appdetails; run `gamerec fetch steamspy`",
            path,
        )
    records: dict[int, dict[str, Any]] = {}
    for page in pages:
        document = _load_json(page)
        if not isinstance(document, dict):
            raise DataError("is not a SteamSpy page (expected an object keyed by appid)", page)
        for key, record in document.items():
            if not isinstance(record, dict):
                raise DataError(f"record {key!r} is not an object", page)
            try:
                row = parse_steamspy_record({"appid": key, **record})
                if row["appid"] is None:
                    raise _BadFieldError("has no appid")
            except ValueError as exc:
                raise DataError(f"record {key!r}: {exc}", page) from None
            records.setdefault(row["appid"], row)
    for detail in details:
        document = _load_json(detail)
        if not isinstance(document, dict):
            raise DataError("is not a SteamSpy appdetails object", detail)
        try:
            row = parse_steamspy_record(document)
        except ValueError as exc:
            raise DataError(f"appdetails record: {exc}", detail) from None
        if row["appid"] is None or row["name"] is None:
            continue  # SteamSpy's answer for an unknown appid: a blank record
        base = records.get(row["appid"], {})
        records[row["appid"]] = {
            **base,
            **{k: v for k, v in row.items() if v not in (None, [])},
        }
    return metadata_frame(list(records.values()))


_STEAM_CSV_REQUIRED = ["appid", "name", "genres", "steamspy_tags", "owners", "price"]


def load_steam_csv(path: str | Path) -> pd.DataFrame:
    """Kaggle "Steam Store Games" ``steam.csv`` (lists ``;``-separated, price in dollars)."""
    raw = read_bytes(path)
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot be parsed as CSV ({exc})", path) from None
    missing = [c for c in _STEAM_CSV_REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"is not a Steam Store Games steam.csv: no column(s) {missing}; "
            f"its header is {list(frame.columns)[:20]}",
            path,
            1,
        )
    blank = [""] * len(frame)
    names = _STEAM_CSV_REQUIRED + _STEAM_CSV_OPTIONAL
    columns = [frame[name].tolist() if name in frame.columns else blank for name in names]
    rows = []
    for number, values in enumerate(zip(*columns, strict=True)):
        record = dict(zip(names, values, strict=True))
        try:
            rows.append(_steam_csv_row(record))
        except ValueError as exc:
            raise DataError(f"row of appid {record['appid']!r}: {exc}", path, number + 2) from None
    return metadata_frame(rows).drop_duplicates("appid")


_STEAM_CSV_OPTIONAL = [
    "developer",
    "publisher",
    "positive_ratings",
    "negative_ratings",
    "release_date",
]


def _steam_csv_row(record: dict[str, str]) -> dict[str, Any]:
    appid = _appid(record["appid"])
    if appid is None:
        raise _BadFieldError("has no appid")
    low, high = owners_range(record["owners"])
    price = record["price"].strip()
    try:
        dollars = float(price) if price else None
    except ValueError:
        raise _BadFieldError(f"price {price!r} is not a number (dollars)") from None
    return {
        "appid": appid,
        "name": _text_or_none(record["name"]),
        "genres": _split_list(record["genres"], ";"),
        "tags": _split_list(record["steamspy_tags"], ";"),
        "developer": _text_or_none(record["developer"]),
        "publisher": _text_or_none(record["publisher"]),
        "price_cents": None if dollars is None else _dollars_to_cents(dollars, "price"),
        "owners_low": low,
        "owners_high": high,
        "positive": _count(record["positive_ratings"], "positive_ratings"),
        "negative": _count(record["negative_ratings"], "negative_ratings"),
        "release_date": _text_or_none(record["release_date"]),
    }


def _ucsd_price(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _dollars_to_cents(float(value), "price")
        except OverflowError:  # an int too large for a float
            raise _BadFieldError(f"price {value!r} is not a price") from None
    if isinstance(value, str) and "free" in value.lower():
        return 0
    return None  # "Install Now", "Third-party" and the like: no price


def load_ucsd(path: str | Path) -> pd.DataFrame:
    """UCSD ``steam_games.json``: one Python dict literal per line (``ast.literal_eval``)."""
    text = read_text(path)
    records = []
    seen: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            kind = type(exc).__name__
            raise DataError(f"is not a Python dict literal ({kind})", path, number) from None
        if not isinstance(record, dict):
            raise DataError("is not a dict literal", path, number)
        try:
            row = _ucsd_row(record)
        except ValueError as exc:
            raise DataError(f"record {record.get('id')!r}: {exc}", path, number) from None
        appid = row["appid"]
        if appid is not None:
            if appid in seen:
                continue
            seen.add(appid)
        records.append(row)
    return metadata_frame(records)


def _ucsd_row(record: dict[Any, Any]) -> dict[str, Any]:
    return {
        "appid": _appid(record.get("id")),
        "name": _text_or_none(record.get("app_name")) or _text_or_none(record.get("title")),
        "genres": _split_list(record.get("genres"), ","),
        "tags": _split_list(record.get("tags"), ","),
        "developer": _text_or_none(record.get("developer")),
        "publisher": _text_or_none(record.get("publisher")),
        "price_cents": _ucsd_price(record.get("price")),
        "owners_low": None,
        "owners_high": None,
        "positive": None,
        "negative": None,
        "release_date": _text_or_none(record.get("release_date")),
    }


def _union(lists: Sequence[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for values in lists:
        for value in values:
            seen.setdefault(value, None)
    return list(seen)


#: what a catalog table adds to :data:`METADATA_COLUMNS` (other sources leave them empty)
EXTRA_COLUMNS = ["release_year", "kind", "base_appid", "aliases"]
#: which source decided a merged row's kind and release year: "store" where the Steam store's
#: record did, else empty (the preprocess summary counts them)
PROVENANCE_COLUMNS = ["kind_from", "year_from"]
STORE = "store"


def merge_metadata(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per appid (plus rows without appid, kept for title matching).

    For scalar fields the first source that has a value wins; genres, tags and aliases are
    united. A Steam store frame (:func:`gamerec.dataio.store_records.load_store`, known by its
    ``store_type`` column) is applied last, whatever its place: its word wins for the kind, the
    base game and the release date, and it fills the gaps of the other fields (see
    :func:`_apply_store`). Returns :data:`METADATA_COLUMNS`, :data:`EXTRA_COLUMNS` and
    :data:`PROVENANCE_COLUMNS`.
    """
    store = [frame for frame in frames if "store_type" in frame.columns]
    merged = _merge_sources([frame for frame in frames if "store_type" not in frame.columns])
    merged = merged.assign(kind_from=None, year_from=None)
    if store:
        merged = _apply_store(merged, pd.concat(store, ignore_index=True))
    return merged


def _merge_sources(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    columns = [*METADATA_COLUMNS, *EXTRA_COLUMNS]
    if not frames:
        return metadata_frame([], columns)
    stacked = pd.concat(
        [f.reindex(columns=columns).assign(_order=i) for i, f in enumerate(frames)],
        ignore_index=True,
        sort=False,
    )
    stacked["aliases"] = stacked["aliases"].map(lambda v: list(v) if isinstance(v, list) else [])
    with_id = stacked[stacked["appid"].notna()].sort_values("_order", kind="stable")
    without_id = stacked[stacked["appid"].isna()]
    grouped = with_id.groupby("appid", sort=True)
    lists = ("genres", "tags", "aliases")
    scalars = [c for c in columns if c != "appid" and c not in lists]
    merged = grouped[scalars].first()
    for column in lists:
        merged[column] = grouped[column].agg(lambda s: _union(list(s)))
    merged = merged.reset_index()
    # rows lacking an appid can still match interactions by title, once per title
    without_id = without_id.assign(_key=without_id["name"].map(normalise_title))
    known = set(merged["name"].map(normalise_title))
    without_id = without_id[~without_id["_key"].isin(known) & (without_id["_key"] != "")]
    without_id = without_id.drop_duplicates("_key")
    result = pd.concat([merged, without_id[columns]], ignore_index=True, sort=False)
    for column in [*_INT_COLUMNS, "base_appid", "release_year"]:
        result[column] = result[column].astype("Int64")
    return result[columns]


def _apply_store(merged: pd.DataFrame, store: pd.DataFrame) -> pd.DataFrame:
    """The store's records over the merged sources, app by app (the first record of an appid).

    The kind is the store's type read by :func:`gamerec.dataio.kinds.kind_from_store` on the
    merged name and genres (a type gamerec does not map leaves the kind to the name rules); the
    base game is the store's ``fullgame`` where it names one; the release date and year are the
    store's where it gives a date ("Coming soon" leaves the other sources' date). Name, developer,
    publisher and price fill gaps; genres are united. Apps only the store knows become rows.
    """
    from gamerec.dataio.kinds import kind_from_store

    used = store[store["store_type"].notna() & store["appid"].notna()]
    used = used.drop_duplicates("appid").set_index(used["appid"].astype("int64").rename(None))
    known = merged["appid"].notna()
    by_appid = merged[known].set_index(merged.loc[known, "appid"].astype("int64").rename(None))
    only_store = used.loc[~used.index.isin(by_appid.index), list(METADATA_COLUMNS)]
    by_appid = pd.concat([by_appid, only_store], sort=False).sort_index()
    by_appid["aliases"] = by_appid["aliases"].map(lambda v: v if isinstance(v, list) else [])
    # without a catalog table the kind column may hold only missing values (floats)
    by_appid = by_appid.astype({"kind": object, "kind_from": object, "year_from": object})
    rows = by_appid.index.isin(used.index)
    target = by_appid[rows]
    record = used.reindex(target.index)
    for column in ["name", "developer", "publisher", "price_cents"]:
        by_appid.loc[rows, column] = target[column].where(target[column].notna(), record[column])
    pairs = zip(target["genres"], record["genres"], strict=True)
    by_appid.loc[rows, "genres"] = pd.Series(
        [_union([mine, theirs]) for mine, theirs in pairs],
        index=target.index,
        dtype=object,
    )
    dated = record["release_year"].notna()
    dated_index = target.index[dated.to_numpy()]
    by_appid.loc[dated_index, "release_date"] = record.loc[dated_index, "release_date"]
    by_appid.loc[dated_index, "release_year"] = record.loc[dated_index, "release_year"]
    by_appid.loc[dated_index, "year_from"] = STORE
    based = record["base_appid"].notna()
    based_index = target.index[based.to_numpy()]
    by_appid.loc[based_index, "base_appid"] = record.loc[based_index, "base_appid"]
    target = by_appid[rows]
    kinds = [
        kind_from_store(store_type, name, genres)
        for store_type, name, genres in zip(
            record["store_type"], target["name"], target["genres"], strict=True
        )
    ]
    decided = target.index[[kind is not None for kind in kinds]]
    by_appid.loc[decided, "kind"] = [str(kind) for kind in kinds if kind is not None]
    by_appid.loc[decided, "kind_from"] = STORE
    result = pd.concat([by_appid, merged[~known]], ignore_index=True, sort=False)
    for column in [*_INT_COLUMNS, "base_appid", "release_year"]:
        result[column] = result[column].astype("Int64")
    return result[list(merged.columns)]


CATALOG_COLUMNS = [*METADATA_COLUMNS, "release_year", "kind", "base_appid", "aliases"]


def catalog_schema() -> Any:
    """The Parquet schema of a catalog table, as ``scripts/build_catalog.py`` writes it."""
    import pyarrow as pa

    return pa.schema(
        [
            ("appid", pa.int32()),
            ("name", pa.string()),
            ("genres", pa.list_(pa.string())),
            ("tags", pa.list_(pa.string())),
            ("developer", pa.string()),
            ("publisher", pa.string()),
            ("price_cents", pa.int32()),
            ("owners_low", pa.int32()),
            ("owners_high", pa.int32()),
            ("positive", pa.int32()),
            ("negative", pa.int32()),
            ("release_date", pa.string()),
            ("release_year", pa.int16()),
            ("kind", pa.dictionary(pa.int8(), pa.string())),
            ("base_appid", pa.int32()),
            ("aliases", pa.list_(pa.string())),
        ]
    )


_CATALOG_COUNTS = ["price_cents", "owners_low", "owners_high", "positive", "negative"]


def _catalog_rows_error(path: Path, frame: pd.DataFrame, bad: pd.Series, problem: str) -> DataError:
    row = int(np.flatnonzero(bad.to_numpy())[0])
    appid = frame["appid"].iloc[row]
    return DataError(
        f"row {row} (appid {appid}): {problem}; rebuild it with scripts/build_catalog.py", path
    )


def _catalog_int(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column]
    if not (pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values)):
        raise DataError(f"column {column} holds {values.dtype}, not numbers", path)
    as_float = values.astype("Float64")
    finite = as_float.isna() | np.isfinite(as_float.fillna(0).to_numpy(dtype="float64"))
    if not finite.all():
        raise _catalog_rows_error(path, frame, ~finite, f"{column} is not a finite number")
    whole = as_float.isna() | (as_float == as_float.round()).fillna(True)
    if not whole.all():
        raise _catalog_rows_error(path, frame, ~whole, f"{column} is not a whole number")
    return as_float.astype("Int64")


def load_catalog_table(path: str | Path) -> pd.DataFrame:
    """A bundled or rebuilt catalog table (``scripts/build_catalog.py``): one app per row.

    Returns :data:`METADATA_COLUMNS` plus ``release_year`` (Int16), ``kind`` (a
    :class:`gamerec.dataio.kinds.Kind` value), ``base_appid`` (Int64, the base game of a DLC,
    demo or soundtrack)
    and ``aliases`` (other names of the app, for title matching). Every value is checked; the
    first bad one is reported with its row and appid.
    """
    path = Path(path)
    table = _read_catalog_parquet(path)
    lists = _catalog_lists(path, table)
    frame = table.select([c for c in CATALOG_COLUMNS if c not in lists]).to_pandas()
    _check_no_null_in_lists(path, frame, lists)
    _check_floats_finite(path, table, frame)
    out = pd.DataFrame(index=frame.index)
    out["appid"] = _catalog_appids(path, frame)
    out["name"] = _catalog_names(path, frame)
    out["genres"] = lists["genres"]
    out["tags"] = lists["tags"]
    for column in ["developer", "publisher", "release_date"]:
        out[column] = frame[column].map(_text_or_none)
    for column in _CATALOG_COUNTS:
        out[column] = _catalog_count(path, frame, column)
    _check_owners_ranges(path, frame, out["owners_low"], out["owners_high"])
    out["release_year"] = _catalog_years(path, frame)
    out["kind"] = _catalog_kinds(path, frame)
    out["base_appid"] = _catalog_base_appids(path, frame, out["kind"])
    out["aliases"] = lists["aliases"]
    return out[CATALOG_COLUMNS]


def _read_catalog_parquet(path: Path) -> pa.Table:
    """The catalog file as a pyarrow table, if it is a Parquet file with every catalog column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError("file not found; check the path of the catalog input", path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"is not a readable Parquet file ({exc})", path) from None
    missing = [c for c in CATALOG_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"is not a gamerec catalog: no column(s) {missing}; rebuild it with "
            "scripts/build_catalog.py",
            path,
        )
    return table


def _catalog_lists(path: Path, table: pa.Table) -> dict[str, list[list[str]]]:
    """The genres, tags and aliases columns as Python lists (a null list is an empty one)."""
    import pyarrow as pa

    lists = {}
    for column in ["genres", "tags", "aliases"]:
        kind = table.schema.field(column).type
        if not (pa.types.is_list(kind) and pa.types.is_string(kind.value_type)):
            raise DataError(f"column {column} holds {kind}, not lists of strings", path)
        lists[column] = [v or [] for v in table.column(column).to_pylist()]
    return lists


def _check_no_null_in_lists(
    path: Path, frame: pd.DataFrame, lists: dict[str, list[list[str]]]
) -> None:
    for column, values in lists.items():
        # a null inside a list passes here and fails every later reader of processed/
        holds_null = pd.Series([None in value for value in values], dtype=bool)
        if holds_null.any():
            raise _catalog_rows_error(path, frame, holds_null, f"{column} holds a null")


def _check_floats_finite(path: Path, table: pa.Table, frame: pd.DataFrame) -> None:
    """Numbers stored as floats must be finite: pandas would read a NaN as a missing value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for column in ["appid", *_CATALOG_COUNTS, "release_year", "base_appid"]:
        values = table.column(column)
        if pa.types.is_floating(values.type):
            finite = np.asarray(pc.fill_null(pc.is_finite(values), True), dtype=bool)
            if not finite.all():
                bad = pd.Series(~finite)
                raise _catalog_rows_error(path, frame, bad, f"{column} is not a finite number")


def _catalog_appids(path: Path, frame: pd.DataFrame) -> pd.Series:
    appid = _catalog_int(path, frame, "appid")
    bad = appid.isna() | (appid.fillna(0) <= 0) | (appid.fillna(0) > MAX_APPID)
    if bad.any():
        raise _catalog_rows_error(
            path, frame, bad, f"appid is not a positive integer up to {MAX_APPID} (2^32-1)"
        )
    repeated = appid.duplicated()
    if repeated.any():
        raise _catalog_rows_error(path, frame, repeated, "appid appears twice")
    return appid


def _catalog_names(path: Path, frame: pd.DataFrame) -> pd.Series:
    names = frame["name"].map(_text_or_none)
    if names.isna().any():
        raise _catalog_rows_error(path, frame, names.isna(), "name is missing")
    return names


def _catalog_count(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    values = _catalog_int(path, frame, column)
    negative = values.fillna(0) < 0
    if negative.any():
        raise _catalog_rows_error(path, frame, negative, f"{column} is negative")
    return values


def _check_owners_ranges(path: Path, frame: pd.DataFrame, low: pd.Series, high: pd.Series) -> None:
    """An owners range has both ends or neither, low <= high."""
    bogus = (low.isna() != high.isna()) | (low > high).fillna(False)
    if bogus.any():
        row = int(np.flatnonzero(bogus.to_numpy())[0])
        raise _catalog_rows_error(
            path, frame, bogus, f"owners range {low.iloc[row]} .. {high.iloc[row]} is bogus"
        )


def _catalog_years(path: Path, frame: pd.DataFrame) -> pd.Series:
    year = _catalog_int(path, frame, "release_year")
    odd_year = ((year < 1970) | (year > 2100)).fillna(False)
    if odd_year.any():
        raise _catalog_rows_error(path, frame, odd_year, "release_year is not a year")
    return year.astype("Int16")


def _catalog_kinds(path: Path, frame: pd.DataFrame) -> pd.Series:
    from gamerec.dataio.kinds import KINDS

    kinds = frame["kind"].astype("object")
    unknown = ~kinds.isin(KINDS)
    if unknown.any():
        raise _catalog_rows_error(
            path, frame, unknown, f"kind {kinds[unknown].iloc[0]!r} is not one of {list(KINDS)}"
        )
    return kinds.astype(str)


def _catalog_base_appids(path: Path, frame: pd.DataFrame, kinds: pd.Series) -> pd.Series:
    """The base game of each row: only a kind that has one (a dlc, demo or soundtrack) may."""
    from gamerec.dataio.kinds import KINDS_WITH_BASE

    base = _catalog_int(path, frame, "base_appid")
    with_base = kinds.isin([str(kind) for kind in KINDS_WITH_BASE])
    bad_base = ((base <= 0) | (base > MAX_APPID)).fillna(False) | (base.notna() & ~with_base)
    if bad_base.any():
        raise _catalog_rows_error(
            path,
            frame,
            bad_base,
            "base_appid must be a positive appid, and only on a dlc, demo or soundtrack row",
        )
    return base
