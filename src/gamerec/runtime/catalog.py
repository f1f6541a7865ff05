"""The catalog as recommending reads it: what each game is called, is and shows.

Read with pyarrow (never pandas: recommending must not pay for importing it), once per
:class:`~gamerec.runtime.recommender.Recommender`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.artifacts.processed import column_to_numpy, read_columns
from gamerec.dataio.files import normalise_title
from gamerec.errors import ArtifactError

__all__ = ["Catalog", "ListColumn"]


class ListColumn(Sequence[list[str]]):
    """A ``list<string>`` column, one list per game, built on access.

    Converting 25,000 lists of tags to Python up front costs a tenth of a second of every
    ``gamerec recommend``; a request reads a few dozen. The distinct strings are few: each list
    is a slice of :attr:`codes` into :attr:`vocabulary`, taken from a column read as a
    dictionary (``read_columns(..., dictionary=...)``: the file's own codes), else made on first
    use, in Python rather than with pyarrow's ``dictionary_encode``, which imports
    ``pyarrow.compute`` (0.1-0.3 s of a one-shot answer).
    """

    def __init__(self, column: Any):
        array = column.combine_chunks()
        self._offsets = column_to_numpy(array.offsets)
        self._values = array.values
        self._encoded: tuple[list[str], np.ndarray] | None = None
        if hasattr(self._values, "dictionary"):
            self._encoded = (
                [str(value) for value in self._values.dictionary.to_pylist()],
                column_to_numpy(self._values.indices),
            )
        self._cache: dict[int, list[str]] = {}
        self._code_of: dict[str, int] = {}

    @property
    def vocabulary(self) -> list[str]:
        """The distinct strings."""
        return self._encode()[0]

    @property
    def codes(self) -> np.ndarray:
        """Each value of every list, as its position in :attr:`vocabulary`."""
        return self._encode()[1]

    def _encode(self) -> tuple[list[str], np.ndarray]:
        if self._encoded is None:
            position: dict[str, int] = {}
            values = [str(value) for value in self._values.to_pylist()]
            codes = np.fromiter(
                (position.setdefault(value, len(position)) for value in values),
                dtype=np.int64,
                count=len(values),
            )
            self._encoded = (list(position), codes)
        return self._encoded

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        found = self._cache.get(item)
        if found is None:
            start, end = int(self._offsets[item]), int(self._offsets[item + 1])
            if self._encoded is not None:
                vocabulary, codes = self._encoded
                found = [vocabulary[code] for code in codes[start:end].tolist()]
            else:
                found = [str(value) for value in self._values.slice(start, end - start).to_pylist()]
            self._cache[item] = found
        return found

    def mask(self, value: str, n_rows: int) -> np.ndarray:
        """(n_rows,) bool: which of the first ``n_rows`` lists hold ``value``."""
        out = np.zeros(n_rows, dtype=bool)
        if not self._code_of:
            self._code_of.update((v, i) for i, v in enumerate(self.vocabulary))
        code = self._code_of.get(value)
        if code is None:
            return out
        lengths = np.diff(self._offsets[: n_rows + 1])
        rows = np.repeat(np.arange(n_rows), lengths)
        out[rows[self.codes[: len(rows)] == code]] = True
        return out

    def masks(self, n_rows: int) -> dict[str, np.ndarray]:
        """For each distinct lower-cased string, which of the first ``n_rows`` lists hold it."""
        lengths = np.diff(self._offsets[: n_rows + 1])
        rows = np.repeat(np.arange(n_rows), lengths)
        codes = self.codes[: len(rows)]
        out: dict[str, np.ndarray] = {}
        for code, value in enumerate(self.vocabulary):
            key = value.lower()
            mask = out.setdefault(key, np.zeros(n_rows, dtype=bool))
            mask[rows[codes == code]] = True
        return out


@dataclass
class Catalog:
    """Every game of ``processed/items.parquet``; ``n_model``: how many the index holds (all)."""

    appids: np.ndarray  # (n,) int64, -1 where unknown
    names: list[str]
    genres: ListColumn
    tags: ListColumn
    players: np.ndarray  # (n,) training users owning it: the popularity fallback
    kinds: list[str]
    recommendable: np.ndarray  # (n,) bool: a game with an appid
    base_appids: np.ndarray  # (n,) int64: a DLC's base game, -1 where none
    release_years: np.ndarray  # (n,) int64, -1 where unknown
    owners_low: np.ndarray  # (n,) int64, -1 where unknown
    owners_high: np.ndarray
    family: np.ndarray  # (n,) int64: the row answers name for this game (its edition to buy)
    n_model: int
    by_appid: dict[int, int] = field(default_factory=dict)
    _by_title: dict[str, list[int]] | None = None
    _lower_names: list[str] | None = None

    def owners(self, item: int) -> str | None:
        low, high = int(self.owners_low[item]), int(self.owners_high[item])
        return f"{low:,} .. {high:,}" if low >= 0 and high >= 0 else None

    @property
    def lower_names(self) -> list[str]:
        if self._lower_names is None:
            self._lower_names = [n.lower() for n in self.names]
        return self._lower_names

    @property
    def by_title(self) -> dict[str, list[int]]:
        """Normalised title -> positions (built on first use: only name lookups need it)."""
        if self._by_title is None:
            by_title: dict[str, list[int]] = {}
            for position, name in enumerate(self.names):
                by_title.setdefault(normalise_title(name), []).append(position)
            self._by_title = by_title
        return self._by_title

    @classmethod
    def read(cls, processed_dir: Path, n_model: int) -> Catalog:
        columns = read_columns(
            processed_dir,
            "items",
            [
                "appid",
                "name",
                "genres",
                "tags",
                "n_users",
                "kind",
                "recommendable",
                "base_appid",
                "release_year",
                "owners_low",
                "owners_high",
                "family",
            ],
            dictionary=("genres", "tags"),
        )
        if n_model != len(columns["appid"]):
            raise ArtifactError(
                f"the index holds {n_model:,} games, the catalog {len(columns['appid']):,}; "
                "run `gamerec index` again"
            )
        appids = column_to_numpy(columns["appid"], fill=-1).astype(np.int64)
        catalog = cls(
            appids=appids,
            names=[str(n) for n in columns["name"].to_pylist()],
            genres=ListColumn(columns["genres"]),
            tags=ListColumn(columns["tags"]),
            players=column_to_numpy(columns["n_users"]).astype(np.float64),
            kinds=[str(k) for k in columns["kind"].to_pylist()],
            recommendable=column_to_numpy(columns["recommendable"], fill=False),
            base_appids=column_to_numpy(columns["base_appid"], fill=-1).astype(np.int64),
            release_years=column_to_numpy(columns["release_year"], fill=-1).astype(np.int64),
            owners_low=column_to_numpy(columns["owners_low"], fill=-1).astype(np.int64),
            owners_high=column_to_numpy(columns["owners_high"], fill=-1).astype(np.int64),
            family=column_to_numpy(columns["family"]).astype(np.int64),
            n_model=n_model,
        )
        catalog.by_appid = dict(
            zip(appids[appids >= 0].tolist(), np.flatnonzero(appids >= 0).tolist(), strict=True)
        )
        return catalog
