"""The bundled demo dataset: steam-200k plus the store metadata of its games.

Kaggle "Steam Video Games" (Tamber), with the matching rows of Kaggle "Steam Store Games"
(Nik Davis) and of the UCSD steam_games.json (McAuley lab). See the README for attribution.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gamerec.dataio.preprocess import Source

__all__ = ["bundled_sources", "data_file"]


def data_file(name: str) -> Path:
    """Path of a bundled data file (the package is installed unzipped, so it is a real path)."""
    return Path(str(resources.files("gamerec.dataio") / "data" / name))


def bundled_sources() -> list[Source]:
    return [
        Source("steam-200k", data_file("steam-200k.csv.gz")),
        Source("steam-csv", data_file("steam.csv.gz")),
        Source("ucsd", data_file("steam_games.json.gz")),
    ]
