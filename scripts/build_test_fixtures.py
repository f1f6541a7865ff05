"""Cut the small real-data fixtures in tests/fixtures/preprocess from the public source files.

    python scripts/build_test_fixtures.py /path/to/shared/data

Every record is copied verbatim (a CSV line, a Python-literal line, a JSON object's text); only
the selection is ours. The tests never read the source files themselves.
"""

import csv
import gzip
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gamerec.dataio.files import normalise_title

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "preprocess"

#: a player with duplicate purchase rows (steam-200k repeats some purchases)
DUPLICATES_USER = "56038151"


def _gunzip(path: Path) -> str:
    with gzip.open(path, "rt", newline="") as handle:
        return handle.read()


def steam_200k(shared: Path) -> set[str]:
    lines = _gunzip(shared / "steam-200k/steam-200k.csv.gz").splitlines(keepends=True)
    rows = list(csv.reader(lines))
    per_user: dict[str, list[int]] = {}
    for number, row in enumerate(rows):
        per_user.setdefault(row[0], []).append(number)
    users = [u for u in list(per_user)[:60] if len(per_user[u]) <= 100] + [DUPLICATES_USER]
    keep = sorted(n for u in users for n in per_user[u])
    (OUT / "steam-200k-slice.csv").write_text("".join(lines[n] for n in keep))
    return {normalise_title(rows[n][1]) for n in keep}


def steam_csv(shared: Path, titles: set[str]) -> None:
    lines = _gunzip(shared / "steam-store-games/steam.csv.gz").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    kept = [line for line in body if normalise_title(next(csv.reader([line]))[1]) in titles]
    skyrim = [line for line in kept if line.startswith("72850,")]  # the title-join example
    (OUT / "steam.csv").write_text(header + "".join(kept[:39] + skyrim))


def ucsd(shared: Path, titles: set[str]) -> None:
    import ast

    lines = _gunzip(shared / "ucsd/steam_games.json.gz").splitlines(keepends=True)
    kept: list[str] = []
    no_id: list[str] = []
    twice: list[str] = []
    for line in lines:
        record = ast.literal_eval(line)
        names = {normalise_title(record.get("app_name")), normalise_title(record.get("title"))}
        if names & titles and len(kept) < 15:
            kept.append(line)
        if "id" not in record and not no_id:
            no_id.append(line)
        if record.get("id") == "612880":
            twice.append(line)
    (OUT / "steam_games.json").write_text("".join(kept + no_id + twice))


def _records(text: str) -> dict[str, str]:
    """The verbatim text of each record of an indented SteamSpy page."""
    found = {}
    for match in re.finditer(r'\n    "(\d+)": \{\n.*?\n    \}', text, flags=re.S):
        found[match.group(1)] = match.group(0).lstrip("\n")
    return found


def steamspy(shared: Path) -> None:
    pages = shared / "steamspy/all-2025-01-01"
    first = _records(_gunzip(pages / "page_0.json.gz"))
    second = _records(_gunzip(pages / "page_1.json.gz"))
    overlap = [key for key in first if key in second]
    specials = {}  # a ranked game, a nameless one, one without a price
    for number in (2, 16, 37):
        records = _records(_gunzip(pages / f"page_{number}.json.gz"))
        document = json.loads("{" + ",\n".join(records.values()) + "}")
        for key, record in document.items():
            if isinstance(record["score_rank"], int) and "rank" not in specials:
                specials["rank"] = records[key]
            if record["name"] == "" and "noname" not in specials:
                specials["noname"] = records[key]
            if record["price"] is None and "noprice" not in specials:
                specials["noprice"] = records[key]
    page0 = list(first.values())[:25] + [first[key] for key in overlap]
    page1 = [second[key] for key in overlap] + list(second.values())[1:21] + list(specials.values())
    out = OUT / "steamspy" / "all"
    out.mkdir(parents=True, exist_ok=True)
    for name, texts in (("page_0.json", page0), ("page_1.json", page1)):
        (out / name).write_text("{\n" + ",\n".join(texts) + "\n}\n")
    details = OUT / "steamspy" / "appdetails"
    details.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "steamspy/appdetails/379720.json", details / "379720.json")


def owned(shared: Path) -> None:
    out = OUT / "owned"
    out.mkdir(parents=True, exist_ok=True)
    source = shared / "steam-webapi"
    shutil.copyfile(source / "GetOwnedGames_basic.json", out / "76561197960287930.json")
    text = (source / "GetOwnedGames_include_appinfo.json").read_text()
    games = re.findall(r"\n            \{\n.*?\n            \}", text, flags=re.S)
    head = text[: text.index("[") + 1].replace('"game_count": 129', '"game_count": 20')
    tail = "\n        ]\n    }\n}\n"
    (out / "76561198000000001.json").write_text(head + ",".join(games[:20]) + tail)


def main(shared: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    titles = steam_200k(shared)
    steam_csv(shared, titles)
    ucsd(shared, titles)
    steamspy(shared)
    owned(shared)
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(OUT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
