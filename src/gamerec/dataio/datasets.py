"""The bundled demo dataset: steam-200k plus a recent Steam catalog.

Kaggle "Steam Video Games" (Tamber) for play histories, and the catalog built by
``scripts/build_catalog.py``: the SteamSpy 2025-01-01 crawl's games with 20,000+ owners (and
every game steam-200k names), with tags and genres from SteamSpy appdetails, Kaggle "Steam Store
Games" (Nik Davis) and the UCSD steam_games.json (McAuley lab), and kinds, base games and release
dates from the Steam store records of BlueBoxWare/steamdb where they cover an app (116 apps).
See the README for attribution.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gamerec.dataio.preprocess import Source

__all__ = ["BUNDLED_CATALOG", "bundled_sources", "data_file"]

#: the catalog table the package ships (``scripts/build_catalog.py`` rebuilds it)
BUNDLED_CATALOG = "catalog-2025-01-01.parquet"


def data_file(name: str) -> Path:
    """Path of a bundled data file (the package is installed unzipped, so it is a real path)."""
    return Path(str(resources.files("gamerec.dataio") / "data" / name))


def bundled_sources() -> list[Source]:
    return [
        Source("steam-200k", data_file("steam-200k.csv.gz")),
        Source("catalog", data_file(BUNDLED_CATALOG)),
    ]
