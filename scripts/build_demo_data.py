"""Rebuild the bundled demo dataset in src/gamerec/dataio/data from the public source files.

    python scripts/build_demo_data.py /path/to/shared/data

Copies steam-200k verbatim, and keeps from steam.csv and the UCSD steam_games.json only the
lines describing games that steam-200k's titles match (same normalised title), verbatim.
"""

import ast
import csv
import gzip
import io
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gamerec.dataio.files import normalise_title

OUT = Path(__file__).resolve().parents[1] / "src" / "gamerec" / "dataio" / "data"


def main(shared: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "steam-200k/steam-200k.csv.gz", OUT / "steam-200k.csv.gz")
    with gzip.open(shared / "steam-200k/steam-200k.csv.gz", "rt") as handle:
        titles = {normalise_title(row[1]) for row in csv.reader(handle)}

    with gzip.open(shared / "steam-store-games/steam.csv.gz", "rt", newline="") as handle:
        text = handle.read()
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    kept = io.StringIO()
    writer = csv.writer(kept, lineterminator="\n")
    writer.writerow(header)
    name_column = header.index("name")
    rows = 0
    for row in reader:
        if normalise_title(row[name_column]) in titles:
            writer.writerow(row)
            rows += 1
    with gzip.GzipFile(OUT / "steam.csv.gz", "wb", mtime=0) as out:
        out.write(kept.getvalue().encode())
    print(f"steam.csv: kept {rows} games")

    lines = []
    with gzip.open(shared / "ucsd/steam_games.json.gz", "rt") as handle:
        for line in handle:
            record = ast.literal_eval(line)
            names = {normalise_title(record.get("app_name")), normalise_title(record.get("title"))}
            if names & titles:
                lines.append(line)
    with gzip.GzipFile(OUT / "steam_games.json.gz", "wb", mtime=0) as out:
        out.write("".join(lines).encode())
    print(f"steam_games.json: kept {len(lines)} games")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
