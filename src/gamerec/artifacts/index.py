"""``index/``: every catalog game's vectors and the search index over them.

``gamerec index`` embeds every row of ``processed/items.parquet``: a game the model was trained
on keeps its vectors, any other gets the content mapper's (:mod:`gamerec.towers.cold`). The
catalog-sized arrays (item vectors, the user tower's history rows and genre/tag profiles, and
which model row each game has, -1 for a mapped one) live here next to the FAISS indexes: one
over the trained games and one over the mapped ones, as recommending ranks them apart.

The manifest records the index kind, its parameters, the item count and dimension, the
fingerprint of the ``processed/items.parquet`` it was built for and of the ``model/`` embeddings
file it used; :func:`check_index_matches` is the one check of an index against ``processed/``
and ``model/``. A ``flat`` index is served by exact numpy search over the catalog vectors, so
recommending with it never imports FAISS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.artifacts.model import EMBEDDINGS_FILE
from gamerec.artifacts.processed import ITEMS_FILE
from gamerec.artifacts.store import load_npz, read_manifest, write_manifest
from gamerec.errors import ArtifactError
from gamerec.index.reference import ExactIndex, PartitionedIndex, VectorIndex

if TYPE_CHECKING:
    import faiss

__all__ = [
    "CATALOG_COLUMNS_FILE",
    "INDEX_FILE",
    "PART_FILES",
    "CatalogVectors",
    "check_index_matches",
    "open_index",
    "read_catalog_columns",
    "read_catalog_vectors",
    "read_index_manifest",
    "write_index",
]

INDEX_FILE = "items.faiss"
#: one FAISS index per part of the catalog: the trained games, and those the mapping embeds
PART_FILES = {"trained": INDEX_FILE, "mapped": "items-mapped.faiss"}
#: the catalog-sized arrays, one row per row of processed/items.parquet
CATALOG_FILES = {
    "item_vectors": "item_vectors.npy",  # (n, D) float32: what the index searches
    "history": "history.npy",  # (n, H) float32: the user tower's history rows
    "token_matrix": "token_matrix.npy",  # (n, n_tokens) float32: genre/tag profiles
    "model_rows": "model_rows.npy",  # (n,) int32: the game's row in model/, -1 if mapped
}
#: each game's content tokens as sparse rows (the model's token numbers): indptr and indices
CONTENT_FILES = {"indptr": "content_indptr.npy", "indices": "content_indices.npy"}
#: what recommending shows of each game (names, kinds, genres, tags, years, owners) as plain
#: arrays (``gamerec.runtime.catalog.catalog_arrays``): an answer then never imports pyarrow
CATALOG_COLUMNS_FILE = "catalog.npz"
_REINDEX = "run `gamerec index`"


@dataclass(frozen=True)
class CatalogVectors:
    """Every catalog game's vectors, as ``gamerec index`` wrote them."""

    item_vectors: np.ndarray
    history: np.ndarray
    token_matrix: np.ndarray
    model_rows: np.ndarray
    #: (indptr (n + 1,), indices (nnz,)): each game's content tokens, when the model has them
    content: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    def part_members(self) -> dict[str, np.ndarray]:
        """The catalog ids of each part (see :data:`PART_FILES`), sorted."""
        trained = np.asarray(self.model_rows) >= 0
        return {"trained": np.flatnonzero(trained), "mapped": np.flatnonzero(~trained)}


def write_index(
    directory: str | Path,
    parts: Mapping[str, faiss.Index],
    *,
    params: Mapping[str, Any],
    part_params: Mapping[str, Mapping[str, Any]],
    embeddings_fingerprint: str,
    settings: Mapping[str, Any],
    recall_at_20: float,
    vectors: CatalogVectors,
    items_fingerprint: str,
    counts: Mapping[str, Any] | None = None,
    catalog_columns: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write the FAISS indexes (one per non-empty part, rows in catalog order), the catalog
    vectors, the catalog's columns and the manifest into ``directory`` (a staging folder).
    ``items_fingerprint``: the ``processed/items.parquet`` they were built for."""
    from gamerec.index.faiss_index import save_index

    n_items, dim = vectors.item_vectors.shape
    members = vectors.part_members()
    if set(parts) != {name for name, ids in members.items() if ids.size}:
        raise ValueError("an index is needed for each non-empty part of the catalog")
    for name, index in parts.items():
        padding = 1 if part_params[name].get("norm_padding") else 0
        if int(index.ntotal) != members[name].size or int(index.d) != dim + padding:
            raise ValueError(f"the {name} index does not match the catalog vectors")
        save_index(index, Path(directory) / PART_FILES[name])
    arrays = {}
    stored = {name: getattr(vectors, name) for name in CATALOG_FILES}
    files = dict(CATALOG_FILES)
    if vectors.content is not None:
        stored.update(zip(CONTENT_FILES, vectors.content, strict=True))
        files.update(CONTENT_FILES)
    for name, file_name in files.items():
        array = stored[name]
        np.save(Path(directory) / file_name, array)
        arrays[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    columns: dict[str, Any] = {}
    if catalog_columns is not None:
        for name, array in catalog_columns.items():
            columns[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        # not compressed: a one-shot answer reads it whole, and inflating costs more than reading
        np.savez(Path(directory) / CATALOG_COLUMNS_FILE, **catalog_columns)  # type: ignore[arg-type]
    return write_manifest(
        directory,
        "index",
        settings=settings,
        inputs={
            f"model/{EMBEDDINGS_FILE}": embeddings_fingerprint,
            f"processed/{ITEMS_FILE}": items_fingerprint,
        },
        counts={"items": n_items, "dim": dim, **dict(counts or {})},
        extra={
            "arrays": arrays,
            **({"catalog_columns": columns} if columns else {}),
            "processed_items": items_fingerprint,
            "index": {
                "kind": params["kind"],
                "params": dict(params),
                "n_items": n_items,
                "dim": dim,
                "parts": {
                    name: {"items": int(index.ntotal), "params": dict(part_params[name])}
                    for name, index in parts.items()
                },
            },
            "model_embeddings": embeddings_fingerprint,
            "recall_at_20": recall_at_20,
        },
    )


def read_index_manifest(index_dir: str | Path, *, verify: bool = True) -> dict[str, Any]:
    return read_manifest(index_dir, "index", verify=verify)


def check_index_matches(
    index_manifest: Mapping[str, Any],
    processed_manifest: Mapping[str, Any],
    embeddings_fingerprint: str,
    index_dir: Path,
) -> None:
    """The one check of an index against ``processed/`` and ``model/``: it was built for this
    ``processed/items.parquet`` and with this model. Either mismatch needs only `gamerec index`
    (a model whose content features this gamerec cannot read is refused when indexing)."""
    if index_manifest.get("model_embeddings") != embeddings_fingerprint:
        raise ArtifactError(f"the index in {index_dir} was built for another model; {_REINDEX}")
    items = (processed_manifest.get("files") or {}).get(ITEMS_FILE)
    if index_manifest.get("processed_items") != items:
        raise ArtifactError(
            f"the index in {index_dir} was built for another catalog (processed/{ITEMS_FILE} "
            f"changed since); {_REINDEX}"
        )


def read_catalog_vectors(
    index_dir: str | Path, manifest: Mapping[str, Any], *, mmap: bool = True
) -> CatalogVectors:
    """The catalog vectors of ``index/``, checked against its manifest (shapes and types).

    ``mmap`` maps them (a request reads only the rows it needs); otherwise they are read
    into memory (a long-running server: a file replaced under a mapping would kill it) and
    every value is checked to be finite (a NaN would fail every request that meets it).
    """
    index_dir = Path(index_dir)
    listed = manifest.get("arrays")
    if not isinstance(listed, dict):
        raise ArtifactError(f"{index_dir}/manifest.json lists no catalog vectors; {_REINDEX}")
    loaded: dict[str, np.ndarray] = {}
    files = dict(CATALOG_FILES)
    if all(name in listed for name in CONTENT_FILES):  # an index from before has none
        files.update(CONTENT_FILES)
    for name, file_name in files.items():
        path = index_dir / file_name
        expected = listed.get(name)
        if not path.is_file() or not isinstance(expected, dict):
            raise ArtifactError(f"{path} is missing; {_REINDEX}")
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ArtifactError(
                f"{path} is not a readable .npy array ({exc}); {_REINDEX}"
            ) from None
        if list(array.shape) != list(expected.get("shape", [])) or str(array.dtype) != expected.get(
            "dtype"
        ):
            raise ArtifactError(
                f"{path} holds a {array.dtype} array of shape {tuple(array.shape)}, not what the "
                f"index's manifest lists; {_REINDEX}"
            )
        if not mmap and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ArtifactError(f"{path} holds values that are not finite (NaN); {_REINDEX}")
        loaded[name] = array.view(np.ndarray) if mmap else array
    content = None
    if "indptr" in loaded:
        content = (loaded.pop("indptr"), loaded.pop("indices"))
    vectors = CatalogVectors(**loaded, content=content)
    n = vectors.n_items
    if any(len(getattr(vectors, name)) != n for name in CATALOG_FILES):
        raise ArtifactError(f"the catalog vectors in {index_dir} differ in length; {_REINDEX}")
    if content is not None and (len(content[0]) != n + 1 or int(content[0][-1]) != len(content[1])):
        raise ArtifactError(f"the content rows in {index_dir} do not fit the catalog; {_REINDEX}")
    return vectors


def read_catalog_columns(
    index_dir: str | Path, manifest: Mapping[str, Any]
) -> dict[str, np.ndarray] | None:
    """The catalog's columns kept in ``index/``, checked against its manifest; None for an
    index written before it kept them (its games are then read from ``processed/``)."""
    listed = manifest.get("catalog_columns")
    if listed is None:
        return None
    path = Path(index_dir) / CATALOG_COLUMNS_FILE
    if not isinstance(listed, dict) or not path.is_file():
        raise ArtifactError(f"{path} is missing; {_REINDEX}")
    return load_npz(path, listed, owner="index", remedy=_REINDEX)


def open_index(
    index_dir: str | Path,
    manifest: Mapping[str, Any],
    vectors: CatalogVectors,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
) -> VectorIndex:
    """The search index over the catalog ``vectors``, as ``manifest`` (read and checked with
    :func:`check_index_matches`) describes it.

    A ``flat`` index is exact numpy search over the vectors (its files are never read);
    another kind is one FAISS index per part of the catalog, loaded from its file and refused
    (ArtifactError naming the command) when unreadable or of another shape than its part.
    ``ef_search`` / ``nprobe`` override the search settings it was built with.
    """
    index_dir = Path(index_dir)
    info = manifest.get("index")
    stored = dict(info.get("params", {})) if isinstance(info, dict) else {}
    if stored.get("kind") == "flat":
        # exhaustive inner products over these very vectors: numpy answers the same
        return ExactIndex(vectors.item_vectors)
    from gamerec.index.faiss_index import FaissIndex, load_index

    listed = info.get("parts") if isinstance(info, dict) else None
    if not isinstance(listed, dict):
        raise ArtifactError(f"{index_dir}/manifest.json lists no index parts; {_REINDEX}")
    overrides = {"ef_search": ef_search, "nprobe": nprobe}
    parts: list[tuple[np.ndarray, VectorIndex]] = []
    for name, members in vectors.part_members().items():
        if members.size == 0:
            continue
        part = listed.get(name)
        if not isinstance(part, dict):
            raise ArtifactError(f"{index_dir} has no index of the {name} games; {_REINDEX}")
        params = dict(part.get("params", {}))
        params.update({key: value for key, value in overrides.items() if value is not None})
        index = load_index(
            index_dir / PART_FILES[name],
            dim=vectors.item_vectors.shape[1],
            n_items=members.size,
            params=params,
        )
        parts.append((members, FaissIndex(index, norm_padding=bool(params.get("norm_padding")))))
    return PartitionedIndex(parts, vectors.n_items)
