"""``processed/``: the catalog (items), users, interactions and split, as parquet.

One writer (:func:`write_processed`), two readers of the same files: :func:`read_processed`
(pandas frames, for preprocessing, training and evaluation) and :func:`read_columns` (pyarrow
columns as numpy, for recommending: pandas costs about 1 s of import). Every failure is an
:class:`ArtifactError` that says to run ``gamerec preprocess``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.artifacts.store import read_manifest, write_manifest
from gamerec.errors import ArtifactError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ITEMS_FILE",
    "SPLIT_FILE",
    "TABLE_FILES",
    "Processed",
    "column_to_numpy",
    "games_with_players",
    "read_columns",
    "read_processed",
    "read_processed_manifest",
    "write_processed",
]

ITEMS_FILE = "items.parquet"
SPLIT_FILE = "split.parquet"
TABLE_FILES = {
    "items": ITEMS_FILE,
    "users": "users.parquet",
    "interactions": "interactions.parquet",
    "split": SPLIT_FILE,
}
_RERUN = "run `gamerec preprocess` again"


@dataclass
class Processed:
    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    split: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def write_processed(
    directory: str | Path,
    processed: Processed,
    *,
    settings: Mapping[str, Any],
    inputs: Mapping[str, str],
) -> dict[str, Any]:
    """Write the four tables and the manifest into ``directory`` (a staging directory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(directory)
    for name, file_name in TABLE_FILES.items():
        frame = getattr(processed, name)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / file_name)
    summary = processed.summary
    return write_manifest(
        directory,
        "processed",
        settings=settings,
        inputs=inputs,
        counts={key: summary.get(key) for key in ("users", "items", "interactions")},
        extra={"summary": summary},
    )


def games_with_players(has_players: Any) -> int:
    """How many items have players: they come first in ``items.parquet`` (``has_players``).

    Models, baselines and the evaluation protocols rank these; the rest of the catalog is
    games nobody in the play data owns.
    """
    flags = np.asarray(has_players, dtype=bool)
    count = int(flags.sum())
    if not flags[:count].all():
        raise ArtifactError(f"the catalog does not list its games with players first; {_RERUN}")
    return count


def read_processed_manifest(directory: str | Path, *, verify: bool = False) -> dict[str, Any]:
    return read_manifest(directory, "processed", verify=verify)


def _unreadable(path: Path, exc: BaseException) -> ArtifactError:
    return ArtifactError(f"{path} cannot be read ({exc}); {_RERUN}")


def read_processed(directory: str | Path, tables: Sequence[str] = tuple(TABLE_FILES)) -> Processed:
    """The tables of ``processed/`` as pandas frames (tables not asked for are left empty)."""
    import pandas as pd
    import pyarrow as pa

    directory = Path(directory)
    frames: dict[str, pd.DataFrame] = {}
    for name, file_name in TABLE_FILES.items():
        if name not in tables:
            frames[name] = pd.DataFrame()
            continue
        path = directory / file_name
        try:
            frames[name] = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise _unreadable(path, exc) from None
    if "items" in tables:
        for column in ("genres", "tags"):
            if column in frames["items"]:
                frames["items"][column] = frames["items"][column].map(list)
    return Processed(**frames)


def read_columns(
    directory: str | Path, table: str, columns: Sequence[str], dictionary: Sequence[str] = ()
) -> dict[str, Any]:
    """Columns of one table as pyarrow arrays, read without pandas.

    The string columns named in ``dictionary`` (or the strings of a list column) come as
    dictionary arrays: codes into their distinct values, as the file stores them, with no
    encoding pass (pyarrow's ``dictionary_encode`` would import ``pyarrow.compute``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(directory) / TABLE_FILES[table]
    try:
        # not pq.read_table: it goes through pyarrow.dataset, which imports pandas (about 1 s)
        with pq.ParquetFile(path) as probe:
            schema = probe.schema
            leaves = [schema.column(i).path for i in range(len(schema))]
        wanted = [leaf for leaf in leaves if leaf.split(".")[0] in dictionary]
        with pq.ParquetFile(path, read_dictionary=wanted or None) as handle:
            data = handle.read(columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from None
    missing = [name for name in columns if name not in data.column_names]
    if missing:
        raise ArtifactError(f"{path} lacks columns {missing}; {_RERUN}")
    return {name: data.column(name) for name in columns}


_NUMPY_TYPES: dict[str, Any] = {
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "float": np.float32,
    "double": np.float64,
    "bool": np.bool_,
}


def column_to_numpy(column: Any, fill: int | float | None = None) -> np.ndarray:
    """A primitive column as numpy, nulls set to ``fill``, read from its buffers.

    Not ``column.to_numpy()``: pyarrow's conversion imports pandas (about 1 s and 50 MB).
    """
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    type_name = str(array.type)
    if type_name == "bool":  # bit-packed; pyarrow.compute would import pandas
        validity, data = array.buffers()
        flags = _bits(data, array) if len(array) else np.empty(0, dtype=bool)
        if array.null_count:
            if fill is None:
                raise ArtifactError(f"a required column has nulls; {_RERUN}")
            flags[~_bits(validity, array)] = bool(fill)
        return flags
    dtype = np.dtype(_NUMPY_TYPES.get(type_name, np.void))
    if dtype == np.void:
        raise ArtifactError(f"unexpected column type {array.type}; {_RERUN}")
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    validity, data = array.buffers()
    values = np.frombuffer(
        data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    ).copy()
    if array.null_count:
        if fill is None:
            raise ArtifactError(f"a required column has nulls; {_RERUN}")
        values[~_bits(validity, array)] = fill
    return values


def _bits(buffer: Any, array: Any) -> np.ndarray:
    """One flag per value of ``array`` from a bit-packed ``buffer`` (validity or booleans)."""
    unpacked = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return unpacked[array.offset : array.offset + len(array)].astype(bool)
