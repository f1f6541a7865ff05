"""FAISS indexes of the item embeddings (exact, HNSW, IVF) and an exact numpy reference.

The FAISS parts load on first use: the exact numpy reference (``ExactIndex``) serves a flat
index without importing FAISS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gamerec.index.reference import (
    ExactIndex,
    clustered_embeddings,
    exact_search,
    recall_at_k,
)

if TYPE_CHECKING:
    from gamerec.index.faiss_index import (
        IndexKind,
        build_index,
        configure_index,
        default_nlist,
        index_kind,
        load_index,
        measure_recall,
        resolve_kind,
        save_index,
        search,
        set_threads,
    )
    from gamerec.index.stage import (
        EMBEDDINGS_FILE,
        INDEX_FILE,
        index_manifest_extra,
        load_index_for_model,
        read_item_embeddings,
    )

_LAZY = {
    **dict.fromkeys(
        [
            "IndexKind",
            "build_index",
            "configure_index",
            "default_nlist",
            "index_kind",
            "load_index",
            "measure_recall",
            "resolve_kind",
            "save_index",
            "search",
            "set_threads",
        ],
        "gamerec.index.faiss_index",
    ),
    **dict.fromkeys(
        [
            "EMBEDDINGS_FILE",
            "INDEX_FILE",
            "index_manifest_extra",
            "load_index_for_model",
            "read_item_embeddings",
        ],
        "gamerec.index.stage",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EMBEDDINGS_FILE",
    "INDEX_FILE",
    "ExactIndex",
    "IndexKind",
    "build_index",
    "clustered_embeddings",
    "configure_index",
    "default_nlist",
    "exact_search",
    "index_kind",
    "index_manifest_extra",
    "load_index",
    "load_index_for_model",
    "measure_recall",
    "read_item_embeddings",
    "recall_at_k",
    "resolve_kind",
    "save_index",
    "search",
    "set_threads",
]
