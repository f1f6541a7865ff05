"""Search indexes of the item embeddings: one :class:`VectorIndex` protocol, three kinds.

:class:`ExactIndex` (numpy, exact; serves a ``flat`` index without importing FAISS),
:class:`~gamerec.index.faiss_index.FaissIndex` (FAISS flat, HNSW or IVF) and
:class:`PartitionedIndex` (one index per part of a catalog: trained and mapped games) answer
the same ``search(queries, k, exclude, allowed)``; exclusion, filtering and widening live
there and nowhere else. The FAISS parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gamerec.index.reference import (
    ExactIndex,
    PartitionedIndex,
    VectorIndex,
    clustered_embeddings,
    exact_search,
    recall_at_k,
)

if TYPE_CHECKING:
    from gamerec.index.faiss_index import (
        FaissIndex,
        IndexConfig,
        IndexKind,
        PartitionedBuild,
        build_index,
        build_parts,
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

_FAISS_NAMES = (
    "FaissIndex",
    "IndexConfig",
    "IndexKind",
    "PartitionedBuild",
    "build_index",
    "build_parts",
    "configure_index",
    "default_nlist",
    "index_kind",
    "load_index",
    "measure_recall",
    "resolve_kind",
    "save_index",
    "search",
    "set_threads",
)


def __getattr__(name: str) -> Any:
    if name in _FAISS_NAMES:
        import importlib

        return getattr(importlib.import_module("gamerec.index.faiss_index"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ExactIndex",
    "FaissIndex",
    "IndexConfig",
    "IndexKind",
    "PartitionedBuild",
    "PartitionedIndex",
    "VectorIndex",
    "build_index",
    "build_parts",
    "clustered_embeddings",
    "configure_index",
    "default_nlist",
    "exact_search",
    "index_kind",
    "load_index",
    "measure_recall",
    "recall_at_k",
    "resolve_kind",
    "save_index",
    "search",
    "set_threads",
]
