"""Build, save, load and search FAISS indexes of item embeddings.

Every index uses inner product, which on the trained games' unit vectors is cosine similarity
(a game embedded by the content mapping keeps the mapping's norm, :mod:`gamerec.towers.cold`):

- ``flat``: ``IndexFlatIP``, exact; the default (``auto``) up to ``exact_max_items`` items.
- ``hnsw``: ``IndexHNSWFlat`` graph, ``auto``'s choice above ``exact_max_items``.
- ``ivf``: ``IndexIVFFlat``, k-means cells of which ``nprobe`` are scanned per query.

Indexes are written with ``faiss.write_index`` (never pickle) through a temporary file that is
renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from gamerec.atomic import atomic_path
from gamerec.errors import ArtifactError, InvalidRequestError
from gamerec.index.reference import (
    Exclusions,
    Mask,
    PartitionedIndex,
    SearchResult,
    VectorIndex,
    check_allowed,
    excluded_ids,
    result_width,
)

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf")

#: k-means training points per IVF cell; FAISS warns below 39, more only slows training
_IVF_TRAIN_POINTS_PER_CELL = 64
_RERUN = "run `gamerec index` again"
#: relative spread of norms above which an approximate index pads vectors to one norm
_NORM_TOLERANCE = 1e-3
#: batches smaller than this are searched on the calling thread alone
_SINGLE_THREAD_BELOW = 8
#: FAISS's bundled type stubs lack the per-call search parameter classes
_faiss_untyped: Any = faiss


def set_threads(threads: int | None) -> int:
    """Set FAISS's OpenMP thread count (``None`` leaves it as is); return the count in use.

    OpenMP keeps this setting per calling thread: it applies to builds and searches started
    from this thread. Other threads (a server's workers) start from ``OMP_NUM_THREADS`` or
    the core count and must call this themselves.
    """
    if threads is not None:
        if threads < 1:
            raise InvalidRequestError(f"threads must be at least 1, got {threads}")
        faiss.omp_set_num_threads(threads)
    return int(faiss.omp_get_max_threads())


def resolve_kind(kind: str, n_items: int, exact_max_items: int) -> str:
    """``auto`` is ``flat`` up to ``exact_max_items`` items and ``hnsw`` above; others pass."""
    if kind not in KINDS:
        raise InvalidRequestError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "auto":
        return "flat" if n_items <= exact_max_items else "hnsw"
    return kind


def default_nlist(n_items: int) -> int:
    """About ``4*sqrt(n)`` IVF cells, but never fewer than 39 training points per cell."""
    return max(1, min(round(4 * math.sqrt(n_items)), n_items // 39))


def _as_matrix(values: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    matrix = np.ascontiguousarray(values, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] < 1:
        raise InvalidRequestError(f"{what} must be a 2-D (n, d) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise InvalidRequestError(f"{what} contain NaN or infinite values")
    return matrix


@dataclass(frozen=True)
class IndexConfig:
    """How an index is built and searched (``gamerec index``'s settings, as plain values)."""

    kind: str = "auto"
    exact_max_items: int = 100_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_nlist: int | None = None
    ivf_nprobe: int = 64

    def build(self, embeddings: npt.ArrayLike) -> tuple[faiss.Index, dict[str, Any]]:
        """:func:`build_index` with these parameters."""
        return build_index(
            embeddings,
            self.kind,
            exact_max_items=self.exact_max_items,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construction=self.hnsw_ef_construction,
            hnsw_ef_search=self.hnsw_ef_search,
            ivf_nlist=self.ivf_nlist,
            ivf_nprobe=self.ivf_nprobe,
        )


@dataclass
class PartitionedBuild:
    """One index per part of a catalog (trained and mapped games), as :func:`build_parts`
    built them: ``parts`` and their ``part_params`` by name, the parameters of the largest
    part (``params``), the seconds it took and the recall@20 of the whole against exact
    search over ``recall_queries`` item queries, each answered among its own part."""

    parts: dict[str, faiss.Index]
    part_params: dict[str, dict[str, Any]]
    params: dict[str, Any]
    build_seconds: float
    recall_at_20: float
    recall_queries: int


def build_parts(
    vectors: npt.ArrayLike,
    members: Mapping[str, npt.NDArray[np.int64]],
    config: IndexConfig,
    on_recall: Callable[[int], None] | None = None,
) -> PartitionedBuild:
    """An index over each non-empty part (``members``: the sorted catalog rows of each), and
    the recall of them all. Trained and mapped games are ranked apart (their norms differ),
    so each kind gets its own index: one approximate index over both finds half of a trained
    game's neighbours."""
    items = _as_matrix(vectors, "item vectors")
    started = time.perf_counter()
    parts: dict[str, faiss.Index] = {}
    part_params: dict[str, dict[str, Any]] = {}
    searchers: list[tuple[npt.NDArray[np.int64], VectorIndex]] = []
    for name, rows in members.items():
        if rows.size == 0:
            continue
        parts[name], part_params[name] = config.build(items[rows])
        padded = bool(part_params[name].get("norm_padding"))
        searchers.append((rows, FaissIndex(parts[name], norm_padding=padded)))
    params = part_params[max(part_params, key=lambda name: parts[name].ntotal)]
    seconds = time.perf_counter() - started
    n_items = items.shape[0]
    queries = min(1000, n_items)
    if on_recall is not None:
        on_recall(queries)
    trained = np.zeros(n_items, dtype=bool)
    trained[members.get("trained", np.zeros(0, dtype=np.int64))] = True
    recall = measure_recall(
        PartitionedIndex(searchers, n_items),
        items,
        k=20,
        n_queries=queries,
        seed=0,
        groups=[trained, ~trained],
    )
    return PartitionedBuild(parts, part_params, params, seconds, recall, queries)


def build_index(
    embeddings: npt.ArrayLike,
    kind: str = "auto",
    *,
    exact_max_items: int = 100_000,
    hnsw_m: int = 32,
    hnsw_ef_construction: int = 200,
    hnsw_ef_search: int = 256,
    ivf_nlist: int | None = None,
    ivf_nprobe: int = 64,
    seed: int = 1234,
) -> tuple[faiss.Index, dict[str, Any]]:
    """Index ``embeddings`` (``(n_items, d)``); return ``(index, params)``.

    ``params`` holds the resolved kind and the parameters that apply to it (e.g. the actual
    ``nlist``), ready for a manifest. Row ``i`` of ``embeddings`` gets id ``i``.

    Graphs and k-means cells find inner-product neighbours well only among vectors of one
    norm. When the norms differ (games embedded by the content mapping), an approximate index
    holds each vector with one more coordinate, ``sqrt(max_norm² - norm²)``, so that all have
    the largest norm (Bachrach et al. 2014); a query gets a zero there and every inner
    product is unchanged. ``params["norm_padding"]`` says so, and :class:`FaissIndex` pads
    the queries. HNSW recall@20 over the bundled catalog's mapped games: 0.91 → 1.00; IVF:
    0.17 → 1.00.
    """
    items = _as_matrix(embeddings, "item embeddings")
    n_items, dim = items.shape
    if n_items == 0:
        raise InvalidRequestError("cannot index an empty catalog")
    resolved = resolve_kind(kind, n_items, exact_max_items)
    index: faiss.Index
    params: dict[str, Any] = {"kind": resolved}
    norms = np.linalg.norm(items, axis=1)
    if resolved != "flat" and norms.max() - norms.min() > _NORM_TOLERANCE * norms.max():
        padding = np.sqrt(np.maximum(norms.max() ** 2 - norms**2, 0.0)).astype(np.float32)
        items = np.ascontiguousarray(np.hstack([items, padding[:, None]]))
        dim += 1
        params["norm_padding"] = True
    if resolved == "flat":
        index = faiss.IndexFlatIP(dim)
    elif resolved == "hnsw":
        if hnsw_m < 2 or hnsw_ef_construction < 1 or hnsw_ef_search < 1:
            raise InvalidRequestError("HNSW needs m >= 2, ef_construction >= 1, ef_search >= 1")
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = hnsw_ef_construction
        index.hnsw.efSearch = hnsw_ef_search
        params.update(m=hnsw_m, ef_construction=hnsw_ef_construction, ef_search=hnsw_ef_search)
    else:
        nlist = default_nlist(n_items) if ivf_nlist is None else min(ivf_nlist, n_items)
        if nlist < 1 or ivf_nprobe < 1:
            raise InvalidRequestError("IVF needs nlist >= 1 and nprobe >= 1")
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = _IVF_TRAIN_POINTS_PER_CELL
        ivf.train(items)
        ivf.nprobe = min(ivf_nprobe, nlist)
        index = ivf
        params.update(nlist=nlist, nprobe=int(ivf.nprobe))
    index.add(items)
    return index, params


def index_kind(index: faiss.Index) -> str:
    """``flat``, ``hnsw`` or ``ivf`` for an index this module builds (or reads back)."""
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    raise ArtifactError(f"unsupported FAISS index type {type(index).__name__}; {_RERUN}")


def configure_index(
    index: faiss.Index, *, ef_search: int | None = None, nprobe: int | None = None
) -> None:
    """Set the search-time knobs of an HNSW (``ef_search``) or IVF (``nprobe``) index."""
    if ef_search is not None and isinstance(index, faiss.IndexHNSW):
        if ef_search < 1:
            raise InvalidRequestError(f"ef_search must be at least 1, got {ef_search}")
        index.hnsw.efSearch = ef_search
    if nprobe is not None and isinstance(index, faiss.IndexIVF):
        if nprobe < 1:
            raise InvalidRequestError(f"nprobe must be at least 1, got {nprobe}")
        index.nprobe = min(nprobe, index.nlist)


def _drop_mask(
    ids: npt.NDArray[np.int64],
    excluded: list[npt.NDArray[np.int64]] | None,
    allowed: npt.NDArray[np.bool_] | None,
    n_items: int,
) -> npt.NDArray[np.bool_]:
    """Cells of ``ids`` to drop: FAISS padding (-1), ids not allowed, each row's excluded ids."""
    drop = ids < 0
    if allowed is not None:
        drop |= ~allowed[np.where(drop, 0, ids)]
    if excluded is None:
        return drop
    marked = np.zeros(n_items, dtype=bool)  # scratch: the current row's excluded ids
    for row, row_excluded in enumerate(excluded):
        if row_excluded.size:
            marked[row_excluded] = True
            drop[row] |= marked[ids[row]]  # a -1 cell reads marked[-1] but is dropped anyway
            marked[row_excluded] = False
    return drop


def _keep_first(
    scores: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    drop: npt.NDArray[np.bool_],
    k: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The first ``k`` cells of each row that are not dropped, in rank order, then padding."""
    if not drop[:, :k].any():
        return scores[:, :k], ids[:, :k]
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept cells first, order kept
    padding = np.take_along_axis(drop, order, axis=1)
    return (
        np.where(padding, -np.inf, np.take_along_axis(scores, order, axis=1)).astype(np.float32),
        np.where(padding, -1, np.take_along_axis(ids, order, axis=1)),
    )


def _eligible(
    excluded: list[npt.NDArray[np.int64]] | None,
    allowed: npt.NDArray[np.bool_] | None,
    n_queries: int,
    n_items: int,
) -> npt.NDArray[np.int64]:
    """How many ids each query may get back at most."""
    if allowed is None:
        if excluded is None:
            return np.full(n_queries, n_items, dtype=np.int64)
        return np.array([n_items - np.unique(e).size for e in excluded], dtype=np.int64)
    total = int(allowed.sum())
    if excluded is None:
        return np.full(n_queries, total, dtype=np.int64)
    return np.array([total - int(allowed[np.unique(e)].sum()) for e in excluded], np.int64)


def _can_widen(index: faiss.Index, fetch: int, widen: int, n_items: int) -> bool:
    if fetch < n_items:
        return True
    if isinstance(index, faiss.IndexHNSW):
        return bool(index.hnsw.efSearch * widen < n_items)
    if isinstance(index, faiss.IndexIVF):
        return bool(index.nprobe * widen < index.nlist)
    return False


def _search_params(index: faiss.Index, fetch: int, widen: int) -> Any:
    if isinstance(index, faiss.IndexHNSW):
        return _faiss_untyped.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch * widen, fetch))
    if isinstance(index, faiss.IndexIVF):
        return _faiss_untyped.SearchParametersIVF(nprobe=min(index.nprobe * widen, index.nlist))
    return None


def _search_widening(
    index: faiss.Index, queries: npt.NDArray[np.float32], fetch: int, widen: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    params = _search_params(index, fetch, widen) if widen > 1 else None
    # A few queries gain nothing from OpenMP but pay for waking (and, on a busy machine,
    # waiting for) its threads: 100k-item flat search took 36 ms on 2 threads and 3.3 ms on
    # one. The setting is per calling thread, so this is safe under concurrent requests.
    threads = faiss.omp_get_max_threads()
    single = len(queries) < _SINGLE_THREAD_BELOW and threads > 1
    if single:
        faiss.omp_set_num_threads(1)
    try:
        if params is None:
            scores, ids = index.search(queries, fetch)
        else:
            scores, ids = index.search(queries, fetch, params=params)
    finally:
        if single:
            faiss.omp_set_num_threads(threads)
    return scores, ids.astype(np.int64, copy=False)


def _exact_fallback(
    index: faiss.Index, queries: npt.NDArray[np.float32], fetch: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    from gamerec.index.reference import exact_search

    try:
        vectors = index.reconstruct_n(0, index.ntotal)
    except RuntimeError as exc:  # an IVF index without a direct map cannot reconstruct
        raise ArtifactError(f"the index cannot answer exhaustively ({exc}); {_RERUN}") from None
    return exact_search(vectors, queries, fetch)


def search(
    index: faiss.Index,
    queries: npt.ArrayLike,
    k: int,
    exclude: Sequence[npt.ArrayLike] | None = None,
    allowed: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` items per query, best first: ``(scores, ids)`` of shape ``(n_queries, k')``.

    ``exclude`` gives, per query, item ids that must not be returned (e.g. games the user
    owns); ``allowed`` (one flag per item) keeps only some items for every query. Candidates
    are fetched and filtered: FAISS's ``-1`` padding never comes back, and without ``allowed``
    every row is full, with ``k' = min(k, n_items - e)`` where ``e`` is the largest number of
    distinct catalog ids any one query excludes (ids outside the catalog are ignored). If an
    approximate index finds too few candidates, the search is repeated with a wider beam (HNSW
    ``efSearch``) or more cells (IVF ``nprobe``) and, as a last resort, exhaustively; a row
    with fewer eligible items than ``k'`` ends in id ``-1`` and score ``-inf``.
    """
    q = _as_matrix(queries, "queries")
    if q.shape[1] != index.d:
        raise InvalidRequestError(
            f"queries have dimension {q.shape[1]} but the index holds {index.d}-d vectors"
        )
    n_items = int(index.ntotal)
    mask = check_allowed(allowed, n_items)
    excluded = excluded_ids(exclude, q.shape[0], n_items) if exclude is not None else None
    k_out = result_width(k, n_items, excluded)
    if k_out == 0 or q.shape[0] == 0:
        return np.empty((q.shape[0], k_out), np.float32), np.empty((q.shape[0], k_out), np.int64)
    wanted = np.minimum(k_out, _eligible(excluded, mask, q.shape[0], n_items))
    most_excluded = max((e.size for e in excluded), default=0) if excluded else 0
    fetch = min(n_items, k_out + most_excluded)
    if mask is not None:  # over-fetch as far as the filter is selective
        fetch = min(n_items, fetch * max(1, round(n_items / max(int(mask.sum()), 1))))
    widen = 1
    while True:
        scores, ids = _search_widening(index, q, fetch, widen)
        drop = _drop_mask(ids, excluded, mask, n_items)
        if ((~drop).sum(axis=1) >= wanted).all():
            break
        if not _can_widen(index, fetch, widen, n_items):
            scores, ids = _exact_fallback(index, q, n_items)
            drop = _drop_mask(ids, excluded, mask, n_items)
            break
        fetch = min(n_items, fetch * 2)
        widen *= 2
    return _keep_first(scores, ids, drop, k_out)


class FaissIndex:
    """A FAISS index as a :class:`~gamerec.index.reference.VectorIndex`.

    ``norm_padding``: the index holds the vectors with one extra coordinate that gives them
    all the same norm (see :func:`build_index`); queries get a zero there, which leaves every
    inner product, and so the ranking, as it was.
    """

    def __init__(self, index: faiss.Index, *, norm_padding: bool = False):
        self.index = index
        self.norm_padding = norm_padding
        self.ntotal = int(index.ntotal)
        self.d = int(index.d) - (1 if norm_padding else 0)

    def search(
        self, queries: npt.ArrayLike, k: int, exclude: Exclusions = None, allowed: Mask = None
    ) -> SearchResult:
        q = _as_matrix(queries, "queries")
        if self.norm_padding and q.shape[1] == self.d:
            q = np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])
        return search(self.index, q, k, exclude, allowed)


def measure_recall(
    index: faiss.Index | VectorIndex,
    item_embeddings: npt.ArrayLike,
    *,
    k: int = 20,
    n_queries: int = 1000,
    seed: int = 0,
    groups: Sequence[npt.NDArray[np.bool_]] | None = None,
) -> float:
    """Recall@``k`` of ``index`` against exact search, using a seeded sample of the items
    themselves as queries (an item-to-item "similar games" lookup).

    ``groups`` (one flag per item each) are searched apart, as a recommender that ranks
    trained and new games separately searches them: a query drawn from a group is answered
    among that group's items only. The queries are shared among the groups by their size.
    """
    from gamerec.index.reference import exact_search, recall_at_k

    searcher = FaissIndex(index) if isinstance(index, faiss.Index) else index  # unpadded
    items = _as_matrix(item_embeddings, "item embeddings")
    masks = list(groups) if groups is not None else [np.ones(items.shape[0], dtype=bool)]
    rng = np.random.default_rng(seed)
    total = max(sum(int(mask.sum()) for mask in masks), 1)
    found_rows: list[npt.NDArray[np.int64]] = []
    truth_rows: list[npt.NDArray[np.int64]] = []
    budget = n_queries
    for position, mask in enumerate(masks):
        members = np.flatnonzero(mask)
        share = budget if position == len(masks) - 1 else round(n_queries * members.size / total)
        size = min(members.size, max(1, share))
        if members.size == 0:
            continue
        budget -= size
        queries = items[np.sort(rng.choice(members, size=size, replace=False))]
        width = min(k, members.size)
        _, local = exact_search(items[members], queries, width)
        _, found = searcher.search(queries, width, None, mask if groups is not None else None)
        found_rows.extend(found)
        truth_rows.extend(members[local])
    if not truth_rows:
        return 1.0
    hits = sum(
        recall_at_k(row_found[None], row_truth[None]) * row_truth.size
        for row_found, row_truth in zip(found_rows, truth_rows, strict=True)
    )
    return float(hits / sum(row.size for row in truth_rows))


def save_index(index: faiss.Index, path: str | Path) -> None:
    """Write ``index`` with ``faiss.write_index`` to a temporary file renamed onto ``path``."""
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(
    path: str | Path,
    *,
    dim: int | None = None,
    n_items: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> faiss.Index:
    """Read an index written by :func:`save_index` and check it against the expected shape.

    ``dim`` and ``n_items`` are what the model's embeddings have; ``params`` (``ef_search``,
    ``nprobe``) override the stored search settings. A missing, corrupt or truncated file, or
    one that does not match, raises ArtifactError.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no index at {path}; run `gamerec index`")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"{path} is not a readable FAISS index ({first_line[:160]}); {_RERUN}"
        ) from None
    index_kind(index)  # refuses index types this module never writes
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError(f"{path} does not rank by inner product; {_RERUN}")
    padded_dim = index.d - (1 if params and params.get("norm_padding") else 0)
    if dim is not None and padded_dim != dim:
        raise ArtifactError(
            f"{path} holds {padded_dim}-d vectors but the model's embeddings are {dim}-d; {_RERUN}"
        )
    if n_items is not None and index.ntotal != n_items:
        raise ArtifactError(
            f"{path} holds {index.ntotal} items but the model has {n_items}; {_RERUN}"
        )
    if params:
        configure_index(index, ef_search=params.get("ef_search"), nprobe=params.get("nprobe"))
    return index
