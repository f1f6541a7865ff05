"""Exact top-k search in numpy, recall against it, and seeded clustered test embeddings.

This is the ground truth the FAISS indexes are measured against (tests, the recall figure
``gamerec index`` reports, and ``benchmarks/bench_index.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gamerec.errors import InvalidRequestError

__all__ = [
    "ExactIndex",
    "Exclusions",
    "Mask",
    "PartitionedIndex",
    "SearchResult",
    "VectorIndex",
    "clustered_embeddings",
    "exact_search",
    "recall_at_k",
    "result_width",
]

#: bound on the (queries x items) score block computed at once, in float32 cells
_BLOCK_CELLS = 1 << 25
#: an exact index of at least this many rows answers one query through a narrow scan first
#: (:class:`_Projection`)
PRUNE_MIN_ROWS = 4096
#: the leading directions that scan covers
_PRUNE_DIRECTIONS = 32
#: the rows the directions are found from
_PRUNE_SAMPLE_ROWS = 4096


def exact_search(
    item_embeddings: npt.ArrayLike, queries: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` items by inner product for every query: ``(scores, ids)``, best first.

    Both arrays have shape ``(n_queries, min(k, n_items))``. Scores are computed in float32 in
    blocks of queries so a large catalog does not need an ``n_queries x n_items`` matrix; the
    top ``k`` are found by :func:`best_columns` (ties by the smaller id).
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
        top_scores, top = best_columns(q[start : start + block] @ items.T, kk)
        ids_out[start : start + block] = top
        scores_out[start : start + block] = top_scores
    return scores_out, ids_out


def best_columns(
    scores: npt.NDArray[np.float32], width: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Each row's ``width`` (at most its length) highest scores and their columns, best
    first, ties to the smaller column: ``(scores, columns)``, each ``(rows, width)``.

    The width-th highest value of each row comes from a partition of the values, then every
    column at or above it is sorted: numpy's ``argpartition`` of a row of 21,000 scores costs
    ten times its ``partition``, and ties at the cut-off go to the smaller column, not to
    wherever the partition left them."""
    n_rows, n_columns = scores.shape
    width = min(width, n_columns)
    if width == 0 or n_rows == 0:
        return (np.empty((n_rows, width), np.float32), np.empty((n_rows, width), np.int64))
    if width < n_columns:
        cutoff = np.partition(scores, n_columns - width, axis=1)[:, n_columns - width]
        rows, columns = np.nonzero(scores >= cutoff[:, None])
    else:
        rows, columns = np.divmod(np.arange(scores.size), n_columns)
    values = scores[rows, columns]
    if len(rows) == n_rows * width:  # no tie at any cut-off: each row's own sort
        row_values = values.reshape(n_rows, width)
        row_columns = columns.reshape(n_rows, width)
        order = np.lexsort((row_columns, -row_values), axis=1)
        return (
            np.take_along_axis(row_values, order, axis=1).astype(np.float32, copy=False),
            np.take_along_axis(row_columns, order, axis=1).astype(np.int64),
        )
    # stable: entries come by row, then column, so a tie keeps the smaller column first
    order = np.lexsort((-values, rows))
    # every row holds at least ``width`` entries at or above its cut-off
    first = np.searchsorted(rows[order], np.arange(n_rows))
    take = order[first[:, None] + np.arange(width)[None, :]]
    return values[take].astype(np.float32, copy=False), columns[take].astype(np.int64)


#: ``(scores, ids)``, each ``(n_queries, width)``
SearchResult = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
#: per query, the ids that must not come back
Exclusions = Sequence[npt.ArrayLike] | None
#: one flag per indexed item: may it come back at all
Mask = npt.NDArray[np.bool_] | None


class VectorIndex(Protocol):
    """What recommending asks of an index: the exact numpy one and the FAISS ones alike.

    ``search`` returns ``(scores, ids)`` of shape ``(n_queries, width)``, best first, with
    ``width = result_width(k, ntotal, exclude)``. ``exclude`` lists, per query, ids that must
    not come back (owned games); ``allowed`` (``(ntotal,)`` bool) keeps only some ids for every
    query (a genre filter, recommendable games). A row with fewer than ``width`` eligible ids
    ends in id ``-1`` with score ``-inf``; without ``allowed`` every row is full.
    """

    ntotal: int
    d: int

    def search(
        self, queries: npt.ArrayLike, k: int, exclude: Exclusions = None, allowed: Mask = None
    ) -> SearchResult: ...


def excluded_ids(
    exclude: Sequence[npt.ArrayLike], n_queries: int, n_items: int
) -> list[npt.NDArray[np.int64]]:
    """Each query's excluded ids that are in the catalog (duplicates kept)."""
    if len(exclude) != n_queries:
        raise InvalidRequestError(
            f"exclude needs one id list per query: {len(exclude)} lists for {n_queries} queries"
        )
    out = []
    for ids in exclude:
        row = np.asarray(ids, dtype=np.int64).ravel()
        out.append(row[(row >= 0) & (row < n_items)] if row.size else row)
    return out


def result_width(k: int, n_items: int, excluded: Sequence[npt.NDArray[np.int64]] | None) -> int:
    """``min(k, n_items - e)``, ``e`` the most distinct catalog ids any one query excludes."""
    if k < 1:
        raise InvalidRequestError(f"k must be at least 1, got {k}")
    most_excluded = max((e.size for e in excluded), default=0) if excluded else 0
    if n_items - most_excluded < k and excluded:
        # the catalog may not allow k for every query: count distinct exclusions exactly
        most_excluded = max(np.unique(e).size for e in excluded)
    return max(0, min(k, n_items - most_excluded))


def check_allowed(allowed: npt.ArrayLike | None, n_items: int) -> npt.NDArray[np.bool_] | None:
    if allowed is None:
        return None
    mask = np.asarray(allowed, dtype=bool)
    if mask.shape != (n_items,):
        raise InvalidRequestError(
            f"allowed must be one flag per indexed item ({n_items}), got shape {mask.shape}"
        )
    return mask


def _checked_search(
    queries: npt.ArrayLike,
    k: int,
    exclude: Exclusions,
    allowed: Mask,
    n_items: int,
    dim: int,
) -> tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.bool_] | None,
    list[npt.NDArray[np.int64]] | None,
    int,
]:
    """A search's arguments checked: ``(queries, allowed mask, excluded ids, result width)``."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise InvalidRequestError(f"queries must be (m, {dim}) vectors, got shape {q.shape}")
    mask = check_allowed(allowed, n_items)
    excluded = excluded_ids(exclude, q.shape[0], n_items) if exclude is not None else None
    return q, mask, excluded, result_width(k, n_items, excluded)


class ExactIndex:
    """A flat inner-product index in numpy: the :class:`VectorIndex` of a ``flat`` index.

    What a flat FAISS index answers, the same exhaustive inner products, so the runtime can
    serve a ``flat`` index from the model's item embeddings without importing FAISS (about
    0.1 s of every process that recommends). Exclusions and filters are applied to the scores
    before the top-k, so no widening is ever needed.
    """

    def __init__(self, item_embeddings: npt.ArrayLike):
        self.vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32)
        self.ntotal, self.d = self.vectors.shape
        self._projection: _Projection | None = None
        self._longest: float | None = None  # the longest vector's length, once needed

    def search(
        self, queries: npt.ArrayLike, k: int, exclude: Exclusions = None, allowed: Mask = None
    ) -> SearchResult:
        """See :class:`VectorIndex`."""
        checked = _checked_search(queries, k, exclude, allowed, self.ntotal, self.d)
        q, mask, excluded, width = checked
        if mask is None and excluded is None:
            return exact_search(self.vectors, q, width) if width else _empty(q.shape[0])
        if q.shape[0] == 1 and width:  # one request: 1-D arrays, a third of the numpy calls
            projection = self._projection
            if projection is not None:
                found = projection.search(self.vectors, q[0], width, mask, excluded)
                if found is not None:
                    return found
            scores = (q @ self.vectors.T)[0]
            if mask is not None:
                scores[~mask] = -np.inf
            if excluded is not None:
                scores[excluded[0]] = -np.inf
            cutoff = np.partition(scores, len(scores) - width)[len(scores) - width]
            if np.isfinite(cutoff):
                # every row that rounding could tie with the cut-off competes, scored the one
                # way the narrow scan scores too, so both give one answer, ties to the smaller id
                rows = np.flatnonzero(scores >= cutoff - self._rounding(q[0]))
            else:
                rows = np.flatnonzero(scores > -np.inf)
            return _best_first(rows, _row_products(self.vectors, rows, q[0]), width)
        scores_out = np.full((q.shape[0], width), -np.inf, dtype=np.float32)
        ids_out = np.full((q.shape[0], width), -1, dtype=np.int64)
        if width == 0:
            return scores_out, ids_out
        block = max(1, _BLOCK_CELLS // max(self.ntotal, 1))
        for start in range(0, q.shape[0], block):
            scores = q[start : start + block] @ self.vectors.T
            if mask is not None:
                scores[:, ~mask] = -np.inf
            if excluded is not None:
                for offset, ids in enumerate(excluded[start : start + block]):
                    scores[offset, ids] = -np.inf
            top_scores, top = best_columns(scores, width)
            ids_out[start : start + block] = np.where(np.isneginf(top_scores), -1, top)
            scores_out[start : start + block] = top_scores
        return scores_out, ids_out

    def _rounding(self, query: npt.NDArray[np.float32]) -> float:
        """How far rounding may move a score of ``query`` (see :func:`_rounding_unit`)."""
        if self._longest is None:
            self._longest = float(np.sqrt(np.einsum("nd,nd->n", self.vectors, self.vectors).max()))
        return _rounding_unit(self.d) * float(np.linalg.norm(query)) * self._longest

    def narrow_single_queries(self) -> None:
        """Answer each later single query through a narrow scan first (:class:`_Projection`),
        for an index of at least :data:`PRUNE_MIN_ROWS` rows: an index that will be searched
        many times (a server's), as making it costs a few full scans."""
        wide = self.ntotal >= PRUNE_MIN_ROWS and self.d > _PRUNE_DIRECTIONS
        if self._projection is None and wide:
            self._projection = _Projection(self.vectors, _PRUNE_DIRECTIONS)


class _Projection:
    """An exact single-query search that reads a fraction of the vectors.

    Each vector ``v`` is split along an orthonormal basis ``B`` of the vectors' leading
    directions (of their uncentred second moment): ``v = B(Bᵀv) + r``. Then
    ``q·v = (Bᵀq)·(Bᵀv) + q·r`` and ``|q·r| <= |q - BBᵀq| |r|``: a scan of the ``(n, h)``
    leading coordinates bounds every score from above and below. Only the rows whose upper
    bound reaches the k-th best lower bound can be in the top k, and those alone are scored
    in full, so the answer is the full scan's. The vectors of games nobody in the play data
    owns come from a linear map of their content and lie close to a few directions: on the
    bundled catalog 32 of 256 hold 99.6% of their second moment, 21,194 rows scan as 32
    columns and about 150 rows are scored in full, where the full scan reads 22 MB. Both
    scans score their finalists one way (:func:`_row_products`), so they answer alike to
    the last bit.
    """

    def __init__(self, vectors: npt.NDArray[np.float32], directions: int):
        # the directions from a sample of the rows: any orthonormal basis keeps the bounds
        # exact, a good one keeps them tight
        step = max(1, len(vectors) // _PRUNE_SAMPLE_ROWS)
        sample = vectors[::step]
        second_moment = (sample.T @ sample).astype(np.float64)  # (d, d)
        _, eigenvectors = np.linalg.eigh(second_moment)  # ascending
        self.basis = np.ascontiguousarray(eigenvectors[:, ::-1][:, :directions], np.float32)
        self.head = np.ascontiguousarray(vectors @ self.basis)  # (n, h)
        residual = vectors - self.head @ self.basis.T
        self.rest = np.sqrt(np.einsum("nd,nd->n", residual, residual))  # (n,)
        #: room for float32 rounding in the bounds, per row (:func:`_rounding_unit`)
        lengths = np.sqrt(np.einsum("nd,nd->n", vectors, vectors))
        self.rounding = (_rounding_unit(vectors.shape[1]) * lengths + 1e-30).astype(np.float32)

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        query: npt.NDArray[np.float32],
        width: int,
        mask: npt.NDArray[np.bool_] | None,
        excluded: list[npt.NDArray[np.int64]] | None,
    ) -> SearchResult | None:
        """The top ``width`` as a full scan finds them, or None where the bounds leave more
        than a quarter of the rows to score in full."""
        leading = query @ self.basis  # (h,)
        query_rest = float(np.linalg.norm(query - self.basis @ leading))
        query_length = float(np.linalg.norm(query))
        approximate = self.head @ leading
        slack = query_rest * self.rest + query_length * self.rounding
        lower = approximate - slack
        if mask is not None:
            lower[~mask] = -np.inf
        if excluded is not None:
            lower[excluded[0]] = -np.inf
        eligible = np.isfinite(lower)
        n_eligible = int(np.count_nonzero(eligible))
        if n_eligible <= width:
            rows = np.flatnonzero(eligible)
        else:
            threshold = np.partition(lower, len(lower) - width)[len(lower) - width]
            rows = np.flatnonzero(eligible & (approximate + slack >= threshold))
        if len(rows) > len(lower) // 4:
            return None
        return _best_first(rows, _row_products(vectors, rows, query), width)


def _rounding_unit(dim: int) -> float:
    """A product of ``dim`` float32 terms rounds by at most about ``dim`` units of the last
    place of |q||v|: twice that (a bound's and a score's), and some room."""
    return (2 * dim + 64) * 2.0**-24


def _row_products(
    vectors: npt.NDArray[np.float32], rows: np.ndarray, query: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The inner product of ``query`` with each of ``vectors[rows]``, each row summed the same
    way whatever the other rows (BLAS rounds a product over a matrix by its shape)."""
    return np.asarray((vectors[rows] * query).sum(axis=1, dtype=np.float32))


def _best_first(rows: np.ndarray, scores: np.ndarray, width: int) -> SearchResult:
    """One query's answer: the ``width`` best of ``rows`` by ``scores``, ties to the smaller
    id, padded with id -1 and score -inf."""
    order = np.lexsort((rows, -scores))[:width]
    out_scores = np.full(width, -np.inf, dtype=np.float32)
    out_ids = np.full(width, -1, dtype=np.int64)
    out_scores[: len(order)], out_ids[: len(order)] = scores[order], rows[order]
    return out_scores[None], out_ids[None]


def _empty(n_queries: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return np.empty((n_queries, 0), np.float32), np.empty((n_queries, 0), np.int64)


class PartitionedIndex:
    """One :class:`VectorIndex` over disjoint parts of a catalog, each its own index.

    ``parts`` pairs the sorted catalog ids of a part with an index over those rows alone (row
    ``i`` of the part's index is catalog id ``members[i]``). A search asks each part holding
    an allowed id and merges the answers by score. Trained games (unit vectors) and games
    embedded by the content mapping (shorter vectors) are never ranked together, and an
    approximate index over both finds half of a trained game's neighbours (HNSW recall@20 0.51
    on the bundled catalog) where one per kind finds nearly all.
    """

    def __init__(self, parts: Sequence[tuple[npt.ArrayLike, VectorIndex]], n_items: int):
        self.parts = [(np.asarray(members, dtype=np.int64), index) for members, index in parts]
        covered = np.zeros(n_items, dtype=np.int64)
        for members, index in self.parts:
            if index.ntotal != members.size or (members.size and np.any(np.diff(members) <= 0)):
                raise InvalidRequestError("each part needs sorted ids, one per row of its index")
            np.add.at(covered, members, 1)
        if np.any(covered != 1):
            raise InvalidRequestError("the parts must hold every catalog id exactly once")
        dims = {index.d for _, index in self.parts}
        if len(dims) > 1:
            raise InvalidRequestError(f"the parts hold vectors of different dimensions {dims}")
        self.ntotal = n_items
        self.d = dims.pop() if dims else 0

    def search(
        self, queries: npt.ArrayLike, k: int, exclude: Exclusions = None, allowed: Mask = None
    ) -> SearchResult:
        """See :class:`VectorIndex`."""
        checked = _checked_search(queries, k, exclude, allowed, self.ntotal, self.d)
        q, mask, excluded, width = checked
        found_scores = [np.full((q.shape[0], 0), -np.inf, dtype=np.float32)]
        found_ids = [np.full((q.shape[0], 0), -1, dtype=np.int64)]
        for members, index in self.parts:
            part_mask = mask[members] if mask is not None else None
            if members.size == 0 or (part_mask is not None and not part_mask.any()):
                continue
            part_exclude = None
            if excluded is not None:
                part_exclude = []
                for ids in excluded:
                    position = np.minimum(np.searchsorted(members, ids), members.size - 1)
                    part_exclude.append(position[members[position] == ids])
            scores, local = index.search(q, width, part_exclude, part_mask)
            found_scores.append(scores)
            found_ids.append(np.where(local >= 0, members[np.maximum(local, 0)], -1))
        scores = np.concatenate(found_scores, axis=1)
        ids = np.concatenate(found_ids, axis=1)
        order = np.lexsort((ids, -scores), axis=1)[:, :width]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        if scores.shape[1] < width:  # every part filtered away: pad as a filtered search does
            pad = width - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores, ids


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
