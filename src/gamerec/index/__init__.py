"""FAISS indexes of the item embeddings (exact, HNSW, IVF) and an exact numpy reference.

Importing this package imports FAISS; the CLI imports it only inside ``gamerec index``.
"""

from __future__ import annotations

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
from gamerec.index.reference import clustered_embeddings, exact_search, recall_at_k
from gamerec.index.stage import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    index_manifest_extra,
    load_index_for_model,
    read_item_embeddings,
)

__all__ = [
    "EMBEDDINGS_FILE",
    "INDEX_FILE",
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
