"""The catalog as recommending reads it: what each game is called, is and shows.

Read once per :class:`~gamerec.runtime.recommender.Recommender`, from the plain numpy arrays
``gamerec index`` keeps beside the vectors (:func:`catalog_arrays`): a one-shot answer imports
neither pandas nor pyarrow. An index written before those arrays is answered from
``processed/items.parquet``, read with pyarrow.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np

from gamerec.artifacts.processed import column_to_numpy, read_columns
from gamerec.dataio.files import normalise_title
from gamerec.errors import ArtifactError

__all__ = [
    "CATALOG_ARRAYS",
    "ITEM_COLUMNS",
    "Catalog",
    "ListColumn",
    "TextColumn",
    "catalog_arrays",
    "read_catalog_arrays",
]


T = TypeVar("T")


class _OffsetColumn(Sequence[T]):
    """A column whose row ``i`` is made from ``offsets[i]:offsets[i + 1]`` of its values on
    first access (:meth:`_make`), then kept."""

    def __init__(self, offsets: np.ndarray):
        self.offsets = np.asarray(offsets, dtype=np.int64)  # (n + 1,)
        self._bounds: list[int] = self.offsets.tolist()
        self._cache: dict[int, T] = {}

    @abstractmethod
    def _make(self, start: int, end: int) -> T:
        """Row ``i`` from the slice ``start:end`` of the column's values."""

    def __len__(self) -> int:
        return len(self._bounds) - 1

    @overload
    def __getitem__(self, item: int) -> T: ...

    @overload
    def __getitem__(self, item: slice) -> list[T]: ...

    def __getitem__(self, item: int | slice) -> T | list[T]:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        if item < 0:
            item += len(self)
        found = self._cache.get(item)
        if found is None:
            if not 0 <= item < len(self):
                raise IndexError(item)
            found = self._cache[item] = self._make(self._bounds[item], self._bounds[item + 1])
        return found


class TextColumn(_OffsetColumn[str]):
    """A column of strings kept as UTF-8 bytes and offsets, each decoded on first access.

    A request names ten games of 25,000; decoding them all costs a one-shot answer more than
    the answer does.
    """

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        super().__init__(offsets)  # byte offsets into data
        self.data = np.asarray(data, dtype=np.uint8)  # the strings' UTF-8 bytes, end to end
        self._bytes = self.data.tobytes()

    def _make(self, start: int, end: int) -> str:
        return self._bytes[start:end].decode()

    @classmethod
    def encode(cls, values: Sequence[str]) -> TextColumn:
        encoded = [str(value).encode() for value in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(value) for value in encoded], out=offsets[1:])
        return cls(offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8))

    def __iter__(self) -> Iterator[str]:
        data, bounds = self._bytes, self._bounds
        return (data[bounds[i] : bounds[i + 1]].decode() for i in range(len(bounds) - 1))


class ListColumn(_OffsetColumn[list[str]]):
    """A ``list<string>`` column, one list per game, built on access.

    Converting 25,000 lists of tags to Python up front costs a tenth of a second of every
    ``gamerec recommend``; a request reads a few dozen. The distinct strings are few: each list
    is the slice ``offsets[i]:offsets[i + 1]`` of :attr:`codes` into :attr:`vocabulary`.
    """

    def __init__(self, offsets: np.ndarray, codes: np.ndarray, vocabulary: Sequence[str]):
        super().__init__(offsets)  # into codes
        self.codes = np.asarray(codes)  # (n values,) int: positions in vocabulary
        self.vocabulary = list(vocabulary)  # the distinct strings
        self._code_of: dict[str, int] = {}

    def _make(self, start: int, end: int) -> list[str]:
        vocabulary = self.vocabulary
        return [vocabulary[code] for code in self.codes[start:end].tolist()]

    @classmethod
    def from_arrow(cls, column: Any) -> ListColumn:
        """From a pyarrow ``list<string>`` column, its strings read as a dictionary
        (``read_columns(..., dictionary=...)``: the file's own codes) or encoded here (in
        Python: pyarrow's ``dictionary_encode`` imports ``pyarrow.compute``, 0.1-0.3 s)."""
        array = column.combine_chunks()
        offsets = column_to_numpy(array.offsets)
        values = array.values
        if hasattr(values, "dictionary"):
            vocabulary = [str(value) for value in values.dictionary.to_pylist()]
            return cls(offsets, column_to_numpy(values.indices), vocabulary)
        position: dict[str, int] = {}
        strings = [str(value) for value in values.to_pylist()]
        codes = np.fromiter(
            (position.setdefault(value, len(position)) for value in strings),
            dtype=np.int64,
            count=len(strings),
        )
        return cls(offsets, codes, list(position))

    def mask(self, value: str, n_rows: int) -> np.ndarray:
        """(n_rows,) bool: which of the first ``n_rows`` lists hold ``value``."""
        out = np.zeros(n_rows, dtype=bool)
        if not self._code_of:
            self._code_of.update((v, i) for i, v in enumerate(self.vocabulary))
        code = self._code_of.get(value)
        if code is None:
            return out
        lengths = np.diff(self.offsets[: n_rows + 1])
        rows = np.repeat(np.arange(n_rows), lengths)
        out[rows[self.codes[: len(rows)] == code]] = True
        return out

    def masks(self, n_rows: int) -> dict[str, np.ndarray]:
        """For each distinct lower-cased string, which of the first ``n_rows`` lists hold it."""
        lengths = np.diff(self.offsets[: n_rows + 1])
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
    names: Sequence[str]
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
    #: (n,) int64: Steam reviews (positive and negative), -1 where unknown or where the index
    #: was written before it kept them
    reviews: np.ndarray
    by_appid: dict[int, int] = field(default_factory=dict)
    _by_title: dict[str, list[int]] | None = None
    _lower_names: list[str] | None = None
    _by_lower_name: dict[str, list[int]] | None = None

    def owners(self, item: int) -> str | None:
        low, high = int(self.owners_low[item]), int(self.owners_high[item])
        return f"{low:,} .. {high:,}" if low >= 0 and high >= 0 else None

    @property
    def lower_names(self) -> list[str]:
        if self._lower_names is None:
            self._lower_names = [n.lower() for n in self.names]
        return self._lower_names

    @property
    def by_lower_name(self) -> dict[str, list[int]]:
        """Lower-case name -> positions (built on first use: only name lookups need it)."""
        if self._by_lower_name is None:
            by_name: dict[str, list[int]] = {}
            for position, name in enumerate(self.lower_names):
                by_name.setdefault(name, []).append(position)
            self._by_lower_name = by_name
        return self._by_lower_name

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
        """From ``processed/items.parquet`` (an index written before it kept
        :func:`catalog_arrays` beside the vectors)."""
        return cls.from_arrays(read_catalog_arrays(processed_dir), n_model)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], n_model: int) -> Catalog:
        """From :func:`catalog_arrays`, as ``gamerec index`` keeps them in ``index/``."""
        missing = sorted(set(CATALOG_ARRAYS) - set(arrays))
        if missing:
            raise ArtifactError(f"the catalog lacks {missing}; run `gamerec index` again")
        appids = np.asarray(arrays["appid"], dtype=np.int64)
        if n_model != len(appids):
            raise ArtifactError(
                f"the index holds {n_model:,} games, the catalog {len(appids):,}; "
                "run `gamerec index` again"
            )
        kind_names = list(_text(arrays, "kind_vocabulary"))
        catalog = cls(
            appids=appids,
            names=_text(arrays, "name"),
            genres=_list_column(arrays, "genres"),
            tags=_list_column(arrays, "tags"),
            players=np.asarray(arrays["n_users"], dtype=np.float64),
            kinds=[kind_names[code] for code in arrays["kind_codes"].tolist()],
            recommendable=np.asarray(arrays["recommendable"], dtype=bool),
            base_appids=np.asarray(arrays["base_appid"], dtype=np.int64),
            release_years=np.asarray(arrays["release_year"], dtype=np.int64),
            owners_low=np.asarray(arrays["owners_low"], dtype=np.int64),
            owners_high=np.asarray(arrays["owners_high"], dtype=np.int64),
            family=np.asarray(arrays["family"], dtype=np.int64),
            n_model=n_model,
            reviews=np.asarray(
                arrays["reviews"] if "reviews" in arrays else np.full(len(appids), -1),
                dtype=np.int64,
            ),
        )
        catalog.by_appid = dict(
            zip(appids[appids >= 0].tolist(), np.flatnonzero(appids >= 0).tolist(), strict=True)
        )
        return catalog


#: the columns of ``processed/items.parquet`` recommending reads
ITEM_COLUMNS = (
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
    "positive",
    "negative",
)
#: the numeric columns, with what stands for a missing value (None: never missing)
_NUMBERS: dict[str, tuple[type, int | bool | None]] = {
    "appid": (np.int64, -1),
    "n_users": (np.float64, None),
    "recommendable": (np.bool_, False),
    "base_appid": (np.int64, -1),
    "release_year": (np.int64, -1),
    "owners_low": (np.int64, -1),
    "owners_high": (np.int64, -1),
    "family": (np.int64, None),
}
#: every array of :func:`catalog_arrays`: the numbers, then strings as UTF-8 bytes and offsets,
#: and lists of strings as offsets and codes into a vocabulary
CATALOG_ARRAYS = (
    *_NUMBERS,
    "name_offsets",
    "name_data",
    "kind_codes",
    "kind_vocabulary_offsets",
    "kind_vocabulary_data",
    *(
        f"{column}_{part}"
        for column in ("genres", "tags")
        for part in ("offsets", "codes", "vocabulary_offsets", "vocabulary_data")
    ),
)


def catalog_arrays(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The catalog as plain numpy arrays (:data:`CATALOG_ARRAYS`), from the pyarrow columns
    of ``processed/items.parquet`` (:data:`ITEM_COLUMNS`, genres and tags read as dictionaries):
    what ``gamerec index`` keeps so that recommending never imports pyarrow."""
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, fill) in _NUMBERS.items():
        arrays[name] = column_to_numpy(columns[name], fill=fill).astype(dtype)
    # optional: an index written before kept none (see Catalog.reviews)
    positive = column_to_numpy(columns["positive"], fill=-1).astype(np.int64)
    negative = column_to_numpy(columns["negative"], fill=-1).astype(np.int64)
    known = (positive >= 0) | (negative >= 0)
    arrays["reviews"] = np.where(known, np.maximum(positive, 0) + np.maximum(negative, 0), -1)
    _put_text(arrays, "name", TextColumn.encode(columns["name"].to_pylist()))
    kinds = [str(kind) for kind in columns["kind"].to_pylist()]
    kind_vocabulary = sorted(set(kinds))
    code_of = {kind: code for code, kind in enumerate(kind_vocabulary)}
    arrays["kind_codes"] = np.array([code_of[kind] for kind in kinds], dtype=np.int32)
    _put_text(arrays, "kind_vocabulary", TextColumn.encode(kind_vocabulary))
    for column in ("genres", "tags"):
        lists = ListColumn.from_arrow(columns[column])
        arrays[f"{column}_offsets"] = lists.offsets
        arrays[f"{column}_codes"] = lists.codes.astype(np.int32)
        _put_text(arrays, f"{column}_vocabulary", TextColumn.encode(lists.vocabulary))
    return arrays


def read_catalog_arrays(processed_dir: Path) -> dict[str, np.ndarray]:
    """:func:`catalog_arrays` of ``processed/items.parquet``."""
    return catalog_arrays(
        read_columns(processed_dir, "items", ITEM_COLUMNS, dictionary=("genres", "tags"))
    )


def _put_text(arrays: dict[str, np.ndarray], name: str, text: TextColumn) -> None:
    arrays[f"{name}_offsets"], arrays[f"{name}_data"] = text.offsets, text.data


def _text(arrays: Mapping[str, np.ndarray], name: str) -> TextColumn:
    return TextColumn(arrays[f"{name}_offsets"], arrays[f"{name}_data"])


def _list_column(arrays: Mapping[str, np.ndarray], column: str) -> ListColumn:
    return ListColumn(
        arrays[f"{column}_offsets"],
        arrays[f"{column}_codes"],
        list(_text(arrays, f"{column}_vocabulary")),
    )
