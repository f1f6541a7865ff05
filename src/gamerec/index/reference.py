"""Exact top-k search in numpy, recall against it, and seeded clustered test embeddings.

This is the ground truth the FAISS indexes are measured against (tests, the recall figure
``gamerec index`` reports, and ``benchmarks/bench_index.py``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gamerec.errors import InvalidRequestError

__all__ = ["ExactIndex", "clustered_embeddings", "exact_search", "recall_at_k"]

#: bound on the (queries x items) score block computed at once, in float32 cells
_BLOCK_CELLS = 1 << 25


def exact_search(
    item_embeddings: npt.ArrayLike, queries: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` items by inner product for every query: ``(scores, ids)``, best first.

    Both arrays have shape ``(n_queries, min(k, n_items))``. Scores are computed in float32 in
    blocks of queries so a large catalog does not need an ``n_queries x n_items`` matrix; the
    top ``k`` are found with ``argpartition`` and then sorted (ties by the smaller id).
    """
    items = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if items.ndim != 2 or q.ndim != 2 or items.shape[1] != q.shape[1]:
        raise InvalidRequestError(
            f"exact_search needs (n, d) items and (m, d) queries; got {items.shape} and {q.shape}"
        )
    if k < 1:
        raise InvalidRequestError(f"k must be at least 1, got {k}")
    n_items = items.shape[0]
    kk = min(k, n_items)
    scores_out = np.empty((q.shape[0], kk), dtype=np.float32)
    ids_out = np.empty((q.shape[0], kk), dtype=np.int64)
    if n_items == 0 or q.shape[0] == 0:
        return scores_out, ids_out
    block = max(1, _BLOCK_CELLS // n_items)
    for start in range(0, q.shape[0], block):
        scores = q[start : start + block] @ items.T
        if kk < n_items:
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        else:
            top = np.broadcast_to(np.arange(n_items), scores.shape).copy()
        top_scores = np.take_along_axis(scores, top, axis=1)
        # sort by score descending, then id ascending for a deterministic order on ties
        order = np.lexsort((top, -top_scores), axis=1)
        ids_out[start : start + block] = np.take_along_axis(top, order, axis=1)
        scores_out[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
    return scores_out, ids_out


class ExactIndex:
    """A flat inner-product index in numpy, with the FAISS ``search(queries, k)`` interface.

    What a flat FAISS index answers, the same exhaustive inner products, so the runtime can
    serve a ``flat`` index from the model's item embeddings without importing FAISS (about
    0.1 s of every process that recommends).
    """

    def __init__(self, item_embeddings: npt.ArrayLike):
        self.vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32)
        self.ntotal, self.d = self.vectors.shape

    def search(
        self, queries: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(scores, ids)`` of shape ``(n_queries, min(k, ntotal))``, best first."""
        return exact_search(self.vectors, queries, k)


def recall_at_k(found: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Mean share of each row of ``truth`` (exact top-k ids) that also appears in ``found``."""
    found_ids = np.asarray(found)
    true_ids = np.asarray(truth)
    if found_ids.shape[0] != true_ids.shape[0]:
        raise InvalidRequestError(
            f"recall needs one row per query in both; got {found_ids.shape} and {true_ids.shape}"
        )
    if true_ids.size == 0:
        return 1.0
    hits = [
        np.intersect1d(row_found[row_found >= 0], row_true).size
        for row_found, row_true in zip(found_ids, true_ids, strict=True)
    ]
    return float(np.sum(hits) / true_ids.size)


def clustered_embeddings(
    n_items: int,
    dim: int,
    *,
    n_clusters: int | None = None,
    spread: float = 0.8,
    intrinsic_dim: int | None = None,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Seeded, L2-normalised embeddings grouped around random centres, like trained item vectors.

    Cluster sizes follow a long tail (a few big genres, many niches). ``spread`` is the norm of
    each item's offset from its centre relative to the centre's, so 0.8 puts items of one
    cluster at cosine ~0.6 from each other. The offsets vary in all ``dim`` directions, or
    with ``intrinsic_dim`` only within one shared random subspace of that rank, as in trained
    embeddings whose variation concentrates in fewer directions than they have.
    """
    if n_items < 1 or dim < 2:
        raise InvalidRequestError(f"need n_items >= 1 and dim >= 2; got {n_items} and {dim}")
    rng = np.random.default_rng(seed)
    clusters = n_clusters if n_clusters is not None else max(1, round(math.sqrt(n_items)))
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    assignment = rng.choice(clusters, size=n_items, p=weights / weights.sum())
    if intrinsic_dim is None or intrinsic_dim >= dim:
        out = rng.standard_normal((n_items, dim), dtype=np.float32)
        out *= np.float32(spread / math.sqrt(dim))
    else:
        if intrinsic_dim < 1:
            raise InvalidRequestError(f"intrinsic_dim must be at least 1, got {intrinsic_dim}")
        # orthonormal basis of a random subspace, so offsets keep the norm ``spread``
        basis = np.linalg.qr(rng.standard_normal((dim, intrinsic_dim)))[0].T.astype(np.float32)
        out = rng.standard_normal((n_items, intrinsic_dim), dtype=np.float32)
        out *= np.float32(spread / math.sqrt(intrinsic_dim))
        out = out @ basis
    out += centres[assignment]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out
