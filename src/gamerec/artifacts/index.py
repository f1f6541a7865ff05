"""``index/``: the search index of the model's item embeddings.

The manifest records the index kind, its parameters, the item count and dimension, and the
fingerprint of the ``model/`` embeddings file it was built from; :func:`open_index` refuses an
index built for other embeddings. A ``flat`` index is served by exact numpy search over those
very embeddings, so recommending with it never imports FAISS.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.artifacts.model import EMBEDDINGS_FILE
from gamerec.artifacts.store import read_manifest, write_manifest
from gamerec.errors import ArtifactError
from gamerec.index.reference import ExactIndex, VectorIndex

if TYPE_CHECKING:
    import faiss

__all__ = ["INDEX_FILE", "open_index", "read_index_manifest", "write_index"]

INDEX_FILE = "items.faiss"


def write_index(
    directory: str | Path,
    index: faiss.Index,
    *,
    params: Mapping[str, Any],
    embeddings_fingerprint: str,
    settings: Mapping[str, Any],
    recall_at_20: float,
) -> dict[str, Any]:
    """Write the FAISS index and its manifest into ``directory`` (a staging folder)."""
    from gamerec.index.faiss_index import save_index

    n_items, dim = int(index.ntotal), int(index.d)
    save_index(index, Path(directory) / INDEX_FILE)
    return write_manifest(
        directory,
        "index",
        settings=settings,
        inputs={f"model/{EMBEDDINGS_FILE}": embeddings_fingerprint},
        counts={"items": n_items, "dim": dim},
        extra={
            "index": {
                "kind": params["kind"],
                "params": dict(params),
                "n_items": n_items,
                "dim": dim,
            },
            "model_embeddings": embeddings_fingerprint,
            "recall_at_20": recall_at_20,
        },
    )


def read_index_manifest(index_dir: str | Path, *, verify: bool = True) -> dict[str, Any]:
    return read_manifest(index_dir, "index", verify=verify)


def open_index(
    index_dir: str | Path,
    item_embeddings: np.ndarray,
    embeddings_fingerprint: str,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    verify: bool = True,
) -> tuple[VectorIndex, dict[str, Any]]:
    """The index of a model's ``item_embeddings`` (whose file has ``embeddings_fingerprint``),
    and its manifest.

    Refuses (ArtifactError naming the command) an index whose files changed since they were
    written (with ``verify``), that was built from other embeddings, or whose shape differs
    from theirs. ``ef_search`` / ``nprobe`` override the search settings it was built with.
    """
    index_dir = Path(index_dir)
    manifest = read_index_manifest(index_dir, verify=verify)
    if manifest.get("model_embeddings") != embeddings_fingerprint:
        raise ArtifactError(
            f"the index in {index_dir} was built for another model; run `gamerec index`"
        )
    info = manifest.get("index")
    stored = dict(info.get("params", {})) if isinstance(info, dict) else {}
    if stored.get("kind") == "flat":
        # exhaustive inner products over these very embeddings: numpy answers the same
        return ExactIndex(item_embeddings), manifest
    from gamerec.index.faiss_index import FaissIndex, load_index

    if ef_search is not None:
        stored["ef_search"] = ef_search
    if nprobe is not None:
        stored["nprobe"] = nprobe
    n_items, dim = item_embeddings.shape
    raw = load_index(index_dir / INDEX_FILE, dim=dim, n_items=n_items, params=stored)
    return FaissIndex(raw), manifest
