"""FAISS indexes: exactness, ANN recall, exclusions, save/load, the model tie, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from gamerec.artifacts import read_manifest, write_manifest
from gamerec.artifacts.index import INDEX_FILE, open_index
from gamerec.artifacts.model import EMBEDDINGS_FILE, read_item_embeddings
from gamerec.cli import app
from gamerec.errors import ArtifactError, InvalidRequestError
from gamerec.index import (
    ExactIndex,
    FaissIndex,
    PartitionedIndex,
    build_index,
    clustered_embeddings,
    default_nlist,
    exact_search,
    load_index,
    measure_recall,
    recall_at_k,
    resolve_kind,
    save_index,
    search,
    set_threads,
)
from gamerec.index.reference import best_columns

KINDS = ["flat", "hnsw", "ivf"]
N_ITEMS, DIM, K = 4000, 128, 20


@pytest.fixture(scope="module")
def drawn() -> np.ndarray:
    """4,000 catalog items and 500 held-out draws from the same clustered distribution."""
    return clustered_embeddings(N_ITEMS + 500, DIM, seed=7)


@pytest.fixture(scope="module")
def items(drawn: np.ndarray) -> np.ndarray:
    return drawn[:N_ITEMS]


@pytest.fixture(scope="module")
def held_out(drawn: np.ndarray) -> np.ndarray:
    return drawn[N_ITEMS:]


@pytest.fixture(scope="module")
def indexes(items: np.ndarray) -> dict[str, tuple[faiss.Index, dict]]:
    return {kind: build_index(items, kind) for kind in KINDS}


@pytest.fixture(scope="module")
def user_queries(items: np.ndarray) -> np.ndarray:
    """User-like queries: the normalised mean of five random games."""
    rng = np.random.default_rng(1)
    queries = items[rng.integers(0, N_ITEMS, size=(500, 5))].sum(axis=1)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def make_model(data_dir: Path, embeddings: np.ndarray) -> Path:
    """A model directory as the trainer writes it: embeddings plus a "model" manifest."""
    model_dir = data_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    np.save(model_dir / EMBEDDINGS_FILE, embeddings)
    write_manifest(model_dir, "model", counts={"items": len(embeddings)})
    return model_dir


def load_index_for_model(
    index_dir: Path, model_dir: Path, *, ef_search: int | None = None, verify: bool = True
) -> object:
    """The index as the runtime opens it: one FAISS index per part, or the exact numpy one."""
    from gamerec.artifacts.index import (
        check_index_matches,
        read_catalog_vectors,
        read_index_manifest,
    )
    from gamerec.artifacts.processed import read_processed_manifest

    _, digest = read_item_embeddings(model_dir)
    manifest = read_index_manifest(index_dir, verify=verify)
    processed = read_processed_manifest(index_dir.parent / "processed")
    check_index_matches(manifest, processed, digest, index_dir)
    vectors = read_catalog_vectors(index_dir, manifest)
    return open_index(index_dir, manifest, vectors, ef_search=ef_search)


@pytest.fixture
def workspace(trained_workspace: Path, tmp_path: Path) -> Path:
    """A copy of the small trained bundled workspace (processed/, model/, index/)."""
    import shutil

    target = tmp_path / "gamerec-data"
    shutil.copytree(trained_workspace, target)
    return target


def reindex(data_dir: Path, kind: str) -> None:
    from gamerec import pipeline
    from gamerec.settings import Settings

    pipeline.build_index(Settings.load(overrides={"data_dir": data_dir, "index.kind": kind}))


# --- the exact reference -------------------------------------------------------------------


def test_exact_search_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    scores, ids = exact_search(items, queries, 25)
    full = queries @ items.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)
    # k above the catalog size returns the whole catalog, ranked
    scores, ids = exact_search(items, queries[:2], 1000)
    assert ids.shape == (2, 300)
    assert np.all(np.diff(scores, axis=1) <= 0)


@given(
    st.integers(1, 6).flatmap(
        lambda rows: st.integers(1, 40).flatmap(
            lambda columns: st.tuples(
                st.lists(
                    st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0]),
                    min_size=rows * columns,
                    max_size=rows * columns,
                ).map(lambda cells: np.array(cells, np.float32).reshape(rows, columns)),
                st.integers(0, columns + 3),
            )
        )
    )
)
def test_best_columns_against_a_full_sort(drawn: tuple[np.ndarray, int]) -> None:
    """Each row's best columns, best first, ties (here most scores tie) to the smaller column,
    as a full stable sort of the row gives them; at most as many as the row has."""
    scores, width = drawn
    top_scores, columns = best_columns(scores, width)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, : min(width, scores.shape[1])]
    assert columns.tolist() == expected.tolist()
    assert top_scores.tolist() == np.take_along_axis(scores, expected, axis=1).tolist()
    assert top_scores.dtype == np.float32 and columns.dtype == np.int64


def low_rank_vectors(n: int, dim: int, rank: int, noise: float, seed: int) -> np.ndarray:
    """Vectors near a ``rank``-dimensional subspace, as a linear map of content gives them,
    with ties (repeated rows), as games with the same genres and tags have."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim))
    vectors = rng.standard_normal((n, rank)) @ basis + noise * rng.standard_normal((n, dim))
    vectors[1::7] = vectors[::7][: len(vectors[1::7])]
    return (0.3 * vectors / np.sqrt(dim)).astype(np.float32)


@pytest.mark.parametrize(("rank", "noise", "narrow"), [(8, 0.02, True), (256, 1.0, False)])
def test_one_query_on_a_large_exact_index_answers_as_the_full_scan(
    rank: int, noise: float, narrow: bool
) -> None:
    """Past its first search, one query on a large exact index scans the vectors' leading
    directions and scores in full only the rows its bounds cannot rule out: the answer is the
    full scan's, with filters, exclusions, ties and short rows, whether the vectors lie near
    a few directions (most rows ruled out) or not (too few ruled out: the full scan)."""
    import gamerec.index.reference as reference

    vectors = low_rank_vectors(reference.PRUNE_MIN_ROWS + 500, 64, rank, noise, seed=rank)
    index = ExactIndex(vectors)
    index.narrow_single_queries()
    rng = np.random.default_rng(1)
    scored = []
    real_search = reference._Projection.search

    def counting(self, *args):  # type: ignore[no-untyped-def]
        found = real_search(self, *args)
        scored.append(found is not None)
        return found

    for trial in range(40):
        query = vectors[rng.integers(len(vectors))] + 0.01 * rng.standard_normal(64)
        query = query.astype(np.float32)
        k = int(rng.choice([1, 10, 20, 200]))
        allowed = rng.random(len(vectors)) < (0.002 if trial % 10 == 9 else 0.8)
        exclude = [rng.integers(0, len(vectors), 50)]
        full = (query[None] @ vectors.T)[0].astype(np.float64)
        full[~allowed] = -np.inf
        full[exclude[0]] = -np.inf
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(reference._Projection, "search", counting)
            scores, ids = index.search(query[None], k, exclude, allowed)
        width = min(k, len(vectors) - len(np.unique(exclude[0])))
        assert ids.shape == scores.shape == (1, width)
        expected = sorted(np.flatnonzero(np.isfinite(full)), key=lambda i: (-full[i], i))[:width]
        found = ids[0][ids[0] >= 0]
        assert len(found) == len(expected)
        # the same games; where two differ in order or identity, their true scores tie
        np.testing.assert_allclose(full[found], full[expected], rtol=1e-5, atol=1e-7)
        assert set(found.tolist()) <= set(np.flatnonzero(np.isfinite(full)).tolist())
        assert (ids[0][len(found) :] == -1).all() and np.isneginf(scores[0][len(found) :]).all()
        np.testing.assert_allclose(scores[0][: len(found)], full[found], rtol=1e-5, atol=1e-6)
    assert len(scored) == 40
    # under a wide filter: always narrowly near a few directions; otherwise the bounds rule
    # out too few rows for most queries, and the full scan answers
    wide = [used for trial, used in enumerate(scored) if trial % 10 != 9]
    assert all(wide) if narrow else sum(wide) < len(wide) / 2


def test_one_query_breaks_ties_by_the_smaller_id_on_either_scan() -> None:
    """Rows that tie exactly (here every row, for a zero query) come back smallest id first,
    from the full scan and from the narrow one alike."""
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((5000, 8)) @ rng.standard_normal((8, 64))).astype(np.float32)
    full, narrow = ExactIndex(vectors), ExactIndex(vectors)
    narrow.narrow_single_queries()
    assert narrow._projection is not None
    allowed = np.zeros(5000, dtype=bool)
    allowed[300:1300] = True
    for index in (full, narrow):
        _, ids = index.search(np.zeros((1, 64), np.float32), 5, [np.array([301])], allowed)
        assert ids.tolist() == [[300, 302, 303, 304, 305]]


def test_the_narrow_scan_allows_for_rounding_among_near_duplicate_rows() -> None:
    """Sixty vectors, each a hundred times with a relative jitter of 1e-7 (the same game's
    vector under several editions, rounded apart): the narrow scan answers exactly as the full
    scan, ids and scores to the last bit, which holds only if its bounds leave room for float32
    rounding and both scans score their finalists alike."""
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.standard_normal((256, 32)))[0]
    distinct = rng.standard_normal((60, 32)) @ basis.T
    vectors = np.repeat(distinct, 100, axis=0) * (1 + 1e-7 * rng.standard_normal((6000, 1)))
    vectors = vectors.astype(np.float32)
    full, narrow = ExactIndex(vectors), ExactIndex(vectors)
    narrow.narrow_single_queries()
    for _ in range(200):
        query = (vectors[rng.integers(6000)] + 1e-3 * rng.standard_normal(256)).astype(np.float32)
        k = int(rng.choice([1, 5, 20, 100]))
        exclude = [rng.integers(0, 6000, 10)]
        expected_scores, expected_ids = full.search(query[None], k, exclude)
        scores, ids = narrow.search(query[None], k, exclude)
        assert ids.tolist() == expected_ids.tolist()
        assert scores.tobytes() == expected_scores.tobytes()


def test_only_a_large_index_asked_to_answers_narrowly() -> None:
    """A small index, or one not asked (a one-shot command's: making the narrow scan costs a
    few full scans), scans in full."""
    import gamerec.index.reference as reference

    vectors = low_rank_vectors(reference.PRUNE_MIN_ROWS + 10, 64, 8, 0.02, seed=3)
    large, small = ExactIndex(vectors), ExactIndex(vectors[:500])
    for _ in range(3):
        large.search(vectors[:1], 10, [np.empty(0, np.int64)])
    assert large._projection is None
    large.narrow_single_queries()
    small.narrow_single_queries()
    assert large._projection is not None and small._projection is None


def test_the_engine_answers_a_repeated_filter_narrowly_and_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ranking engine's kept sub-index of a filter searched again (a server's requests)
    answers narrowly, and every answer is what an engine that always scans in full gives."""
    import gamerec.index.reference as reference
    from gamerec.dataio.matrix import UserItems
    from gamerec.ranking import RankingEngine, RankingPolicy
    from gamerec.ranking.user_tower import USER_TOWER_ARRAYS, NumpyUserTower

    vectors = low_rank_vectors(3000, 64, 6, 0.15, seed=4)
    n = len(vectors)
    trained = np.arange(n) < 400
    tower = NumpyUserTower({name: np.zeros((n, 2)) for name in USER_TOWER_ARRAYS})
    policy = RankingPolicy(new_games_share=0.5)

    allowed = np.ones(n, dtype=bool)
    allowed[::5] = False
    allowed.setflags(write=False)
    rng = np.random.default_rng(5)
    requests = []
    for _ in range(6):
        owned = rng.choice(n, 12, replace=False)
        history = UserItems.from_pairs(
            np.zeros(12, np.int64), owned, np.ones(12), n_rows=1, n_items=n
        )
        query = (vectors[owned].sum(0) + 0.01 * rng.standard_normal(64))[None]
        requests.append((history, query.astype(np.float32)))

    def answers(prune_min_rows: int) -> tuple[RankingEngine, list]:
        monkeypatch.setattr(reference, "PRUNE_MIN_ROWS", prune_min_rows)
        engine = RankingEngine(tower, vectors, ExactIndex(vectors), trained, policy)
        return engine, [engine.rank(h, 20, allowed, queries=q) for h, q in requests]

    full, in_full = answers(10**9)
    narrow, narrowly = answers(1000)
    for one, other in zip(in_full, narrowly, strict=True):
        assert one.items.tolist() == other.items.tolist()
        np.testing.assert_allclose(one.scores, other.scores, rtol=1e-5)
        assert other.new[0].sum() == 10
    new_index = [index for _, index in narrow._subsets.values() if index.ntotal > 1000]
    assert new_index and all(index._projection is not None for index in new_index)
    assert not any(index._projection is not None for _, index in full._subsets.values())


def test_recall_at_k_counts_overlap() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 2, 1], [5, 6, -1, 9]])
    assert recall_at_k(found, truth) == pytest.approx(6 / 8)


# --- building and searching ---------------------------------------------------------------


def test_flat_equals_the_numpy_reference(
    items: np.ndarray, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    index, params = indexes["flat"]
    assert params == {"kind": "flat"}
    assert isinstance(index, faiss.IndexFlatIP)
    ref_scores, ref_ids = exact_search(items, items, K)
    scores, ids = search(index, items, K)
    assert ids.shape == ref_ids.shape == (N_ITEMS, K)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # Identical ids; where FAISS's BLAS and numpy's order two items differently, they must be a
    # genuine tie (equal true scores), never a different item.
    differ = ids != ref_ids
    true_scores = np.einsum("qd,qkd->qk", items.astype(np.float64), items[ids].astype(np.float64))
    np.testing.assert_allclose(true_scores[differ], ref_scores[differ], atol=1e-6)
    assert differ.mean() < 1e-3
    assert all(len(set(row)) == K for row in ids.tolist())


def test_exact_index_answers_like_a_flat_faiss_index(
    items: np.ndarray, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    """The runtime serves flat indexes with ExactIndex: same interface, same answers."""
    flat, _ = indexes["flat"]
    exact = ExactIndex(items)
    assert (exact.ntotal, exact.d) == (flat.ntotal, flat.d)
    queries = items[:50] + 0.01
    scores, ids = exact.search(queries, K)
    faiss_scores, faiss_ids = flat.search(queries.astype(np.float32), K)
    np.testing.assert_allclose(scores, faiss_scores, atol=1e-5)
    assert (ids == faiss_ids).mean() > 0.999
    assert exact.search(queries[:1], 10 * N_ITEMS)[1].shape == (1, N_ITEMS)


@pytest.mark.parametrize("kind", KINDS)
def test_recall_at_20_against_exact_search(
    kind: str,
    items: np.ndarray,
    user_queries: np.ndarray,
    held_out: np.ndarray,
    indexes: dict[str, tuple[faiss.Index, dict]],
) -> None:
    index, params = indexes[kind]
    assert params["kind"] == kind
    # held-out embeddings from the same distribution (new games / users)
    _, truth = exact_search(items, held_out, K)
    _, found = search(index, held_out, K)
    assert recall_at_k(found, truth) >= 0.99
    # items as queries ("similar games")
    _, truth = exact_search(items, items, K)
    _, found = search(index, items, K)
    assert recall_at_k(found, truth) >= 0.99
    # user-like queries (mean of a few games)
    _, truth = exact_search(items, user_queries, K)
    _, found = search(index, user_queries, K)
    assert recall_at_k(found, truth) >= 0.99


def test_recall_measurement_exposes_a_weak_index(items: np.ndarray) -> None:
    weak_ivf, _ = build_index(items, "ivf", ivf_nlist=100, ivf_nprobe=1)
    weak_hnsw, _ = build_index(items, "hnsw", hnsw_m=4, hnsw_ef_construction=8, hnsw_ef_search=8)
    assert measure_recall(weak_ivf, items) < 0.99
    assert measure_recall(weak_hnsw, items) < 0.99


def mixed_norm_catalog(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors for "trained" games and shorter ones (norm 0.3-1) for "mapped" games,
    interleaved in the catalog as a grown catalog interleaves them."""
    rng = np.random.default_rng(seed)
    vectors = clustered_embeddings(3000, 32, seed=seed)
    trained = rng.random(3000) < 0.25
    vectors[~trained] *= rng.uniform(0.3, 1.0, size=(int((~trained).sum()), 1)).astype(np.float32)
    return vectors, trained


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_vectors_of_differing_norms_are_padded_to_one_norm(kind: str) -> None:
    vectors, trained = mixed_norm_catalog()
    mapped = vectors[~trained]
    index, params = build_index(mapped, kind)
    assert params["norm_padding"] is True and index.d == 33
    padded = FaissIndex(index, norm_padding=True)
    assert padded.d == 32
    queries = clustered_embeddings(200, 32, seed=9)
    scores, found = padded.search(queries, K)
    _, truth = exact_search(mapped, queries, K)
    assert recall_at_k(found, truth) >= 0.99
    # the padding coordinate meets a zero: scores are the unpadded inner products
    assert np.allclose(scores, np.einsum("qd,qkd->qk", queries, mapped[found]), atol=1e-5)
    # unit vectors need no padding, and a flat index never pads
    assert "norm_padding" not in build_index(vectors[trained], kind)[1]
    assert "norm_padding" not in build_index(mapped, "flat")[1]


@pytest.mark.parametrize("kind", KINDS)
def test_a_partitioned_index_answers_what_one_exact_index_answers(kind: str) -> None:
    vectors, trained = mixed_norm_catalog(seed=4)
    parts = []
    for mask in (trained, ~trained):
        members = np.flatnonzero(mask)
        index, params = build_index(vectors[members], kind)
        parts.append((members, FaissIndex(index, norm_padding=bool(params.get("norm_padding")))))
    partitioned = PartitionedIndex(parts, len(vectors))
    exact = ExactIndex(vectors)
    assert partitioned.ntotal == 3000 and partitioned.d == 32
    rng = np.random.default_rng(1)
    queries = clustered_embeddings(40, 32, seed=11)
    exclude = [rng.choice(3000, size=rng.integers(0, 30), replace=False) for _ in range(40)]
    genre = rng.random(3000) < 0.3
    for allowed in (None, trained, ~trained, genre, genre & trained, np.zeros(3000, bool)):
        scores, ids = partitioned.search(queries, 10, exclude, allowed)
        exact_scores, exact_ids = exact.search(queries, 10, exclude, allowed)
        assert ids.shape == exact_ids.shape
        hits = [
            np.intersect1d(a[a >= 0], b[b >= 0]).size for a, b in zip(ids, exact_ids, strict=True)
        ]
        wanted = [(b >= 0).sum() for b in exact_ids]
        assert sum(hits) >= 0.97 * sum(wanted)  # approximate kinds may miss a few
        if kind == "flat":
            assert ids.tolist() == exact_ids.tolist()
            assert np.allclose(scores, exact_scores, atol=1e-5)
        for row, excluded in zip(ids, exclude, strict=True):
            assert not set(row.tolist()) & set(excluded.tolist())
            if allowed is not None:
                assert allowed[row[row >= 0]].all()


def test_a_partitioned_index_refuses_parts_that_do_not_cover_the_catalog() -> None:
    vectors = clustered_embeddings(10, 4, seed=1)
    first = (np.arange(5), ExactIndex(vectors[:5]))
    with pytest.raises(InvalidRequestError, match="every catalog id exactly once"):
        PartitionedIndex([first], 10)
    with pytest.raises(InvalidRequestError, match="every catalog id exactly once"):
        PartitionedIndex([first, (np.arange(4, 9), ExactIndex(vectors[4:9]))], 10)
    with pytest.raises(InvalidRequestError, match="sorted ids, one per row"):
        PartitionedIndex([first, (np.arange(5, 10), ExactIndex(vectors[5:9]))], 10)


def test_index_types_and_parameters(indexes: dict[str, tuple[faiss.Index, dict]]) -> None:
    hnsw, hnsw_params = indexes["hnsw"]
    assert isinstance(hnsw, faiss.IndexHNSWFlat)
    assert hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    assert hnsw_params == {"kind": "hnsw", "m": 32, "ef_construction": 200, "ef_search": 256}
    assert hnsw.hnsw.efSearch == 256
    ivf, ivf_params = indexes["ivf"]
    assert isinstance(ivf, faiss.IndexIVFFlat)
    assert ivf.metric_type == faiss.METRIC_INNER_PRODUCT
    assert ivf_params == {"kind": "ivf", "nlist": default_nlist(N_ITEMS), "nprobe": 64}
    assert ivf.nlist == default_nlist(N_ITEMS) and ivf.nprobe == 64


def test_default_nlist_is_about_four_sqrt_n() -> None:
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(100_000) == 1265
    # small catalogs keep >= 39 training points per cell
    assert default_nlist(4000) == 102
    assert default_nlist(10) == 1


def test_auto_is_exact_up_to_the_limit_then_hnsw(items: np.ndarray) -> None:
    assert resolve_kind("auto", 100, exact_max_items=100) == "flat"
    assert resolve_kind("auto", 101, exact_max_items=100) == "hnsw"
    assert resolve_kind("ivf", 10, exact_max_items=100) == "ivf"
    small, params = build_index(items[:500], "auto", exact_max_items=500)
    assert isinstance(small, faiss.IndexFlatIP) and params["kind"] == "flat"
    big, params = build_index(
        items[:501], "auto", exact_max_items=500, hnsw_m=8, hnsw_ef_construction=16
    )
    assert isinstance(big, faiss.IndexHNSWFlat) and params["kind"] == "hnsw"
    with pytest.raises(InvalidRequestError, match="unknown index kind"):
        build_index(items, "lsh")


def test_bad_inputs_are_refused(indexes: dict[str, tuple[faiss.Index, dict]]) -> None:
    index, _ = indexes["flat"]
    with pytest.raises(InvalidRequestError, match="dimension"):
        search(index, np.ones((1, DIM + 1), np.float32), 5)
    with pytest.raises(InvalidRequestError, match="k must be"):
        search(index, np.ones((1, DIM), np.float32), 0)
    with pytest.raises(InvalidRequestError, match="one id list per query"):
        search(index, np.ones((2, DIM), np.float32), 5, exclude=[[1]])
    with pytest.raises(InvalidRequestError, match="NaN"):
        build_index(np.full((3, 4), np.nan, np.float32))
    with pytest.raises(InvalidRequestError, match="empty"):
        build_index(np.zeros((0, 4), np.float32))


def test_single_queries_leave_the_thread_setting_as_it_was(
    items: np.ndarray, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    before = set_threads(None)
    try:
        assert set_threads(2) == 2
        _, ids = search(indexes["flat"][0], items[:1], K)  # runs on one thread ...
        assert ids[0, 0] == 0
        assert set_threads(None) == 2  # ... and restores the caller's setting
        with pytest.raises(InvalidRequestError, match="at least 1"):
            set_threads(0)
    finally:
        set_threads(before)


# --- exclusions ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_excluded_ids_never_come_back(
    kind: str, items: np.ndarray, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    index, _ = indexes[kind]
    rng = np.random.default_rng(3)
    queries = items[:200]
    _, nearest = exact_search(items, queries, 30)
    # each query excludes its own 15 nearest games plus 40 random ones (an owned library)
    exclude = [np.concatenate([nearest[i, :15], rng.integers(0, N_ITEMS, 40)]) for i in range(200)]
    scores, ids = search(index, queries, K, exclude=exclude)
    assert ids.shape == (200, K)
    assert (ids >= 0).all()
    for row, excluded in zip(ids, exclude, strict=True):
        assert not np.isin(row, excluded).any()
        assert len(set(row.tolist())) == K
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # and what is left is still the best of the rest
    _, wide = exact_search(items, queries, K + 60)
    truth = np.array(
        [row[~np.isin(row, excluded)][:K] for row, excluded in zip(wide, exclude, strict=True)]
    )
    assert recall_at_k(ids, truth) >= 0.99


def test_exclusions_on_a_small_catalog_shrink_k_but_never_pad() -> None:
    items = clustered_embeddings(30, 8, seed=2)
    index, _ = build_index(items, "flat")
    _, ids = search(index, items[:2], 10, exclude=[np.arange(25), [0, 1, 2, 3, 4]])
    assert ids.shape == (2, 5)
    assert (ids >= 0).all()
    assert set(ids[0].tolist()) == set(range(25, 30))
    assert not np.isin(ids[1], [0, 1, 2, 3, 4]).any()
    # k above the catalog: every item, once, no -1
    _, ids = search(index, items[:3], 100)
    assert ids.shape == (3, 30)
    assert all(sorted(row) == list(range(30)) for row in ids.tolist())
    # out-of-range and duplicate exclusions are ignored, not counted
    _, ids = search(index, items[:1], 10, exclude=[[-5, 99, 7, 7]])
    assert ids.shape == (1, 10) and 7 not in ids[0]


def test_ann_shortfall_is_refilled_without_padding() -> None:
    items = clustered_embeddings(1000, 32, seed=3)
    index, _ = build_index(items, "ivf", ivf_nlist=100, ivf_nprobe=1)
    # with one cell of ~10 items per query, FAISS itself pads with -1 ...
    _, raw = index.search(items[:50], 200)
    assert (raw < 0).any()
    # ... search widens nprobe until every row is full
    scores, ids = search(index, items[:50], 200)
    assert ids.shape == (50, 200)
    assert (ids >= 0).all()
    assert all(len(set(row)) == 200 for row in ids.tolist())
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # widening only adds cells: everything the narrow search found is still there
    for row, narrow in zip(ids, raw, strict=True):
        assert set(narrow[narrow >= 0].tolist()) <= set(row.tolist())


def test_a_graph_that_cannot_fill_a_row_falls_back_to_exact_search(
    monkeypatch: pytest.MonkeyPatch, items: np.ndarray
) -> None:
    from gamerec.index import faiss_index

    index, _ = build_index(items[:500], "hnsw", hnsw_m=8, hnsw_ef_construction=32)
    real = faiss_index._search_widening

    def half_padded(*args: object) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = real(*args)  # type: ignore[arg-type]
        ids[:, ids.shape[1] // 2 :] = -1  # as if the graph reached too few nodes
        return scores, ids

    monkeypatch.setattr(faiss_index, "_search_widening", half_padded)
    exclude = [[int(i)] for i in range(10)]
    scores, ids = search(index, items[:10], K, exclude=exclude)
    ref_scores, ref_ids = exact_search(items[:500], items[:10], K + 1)
    np.testing.assert_array_equal(ids, ref_ids[:, 1:])  # each query excludes itself
    np.testing.assert_allclose(scores, ref_scores[:, 1:], atol=1e-5)


# --- save / load --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_is_identical(
    kind: str, tmp_path: Path, items: np.ndarray, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    index, _ = indexes[kind]
    path = tmp_path / "sub" / INDEX_FILE
    save_index(index, path)
    assert [p.name for p in path.parent.iterdir()] == [INDEX_FILE]  # no temp file left over
    loaded = load_index(path, dim=DIM, n_items=N_ITEMS)
    assert type(loaded) is type(index)
    exclude = [np.arange(i, i + 5) for i in range(300)]
    before = search(index, items[:300], K, exclude=exclude)
    after = search(loaded, items[:300], K, exclude=exclude)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    if isinstance(index, faiss.IndexHNSWFlat):
        assert isinstance(loaded, faiss.IndexHNSWFlat)
        assert loaded.hnsw.efSearch == index.hnsw.efSearch == 256
        tuned = load_index(path, params={"ef_search": 64})
        assert isinstance(tuned, faiss.IndexHNSWFlat) and tuned.hnsw.efSearch == 64
    if isinstance(index, faiss.IndexIVFFlat):
        assert isinstance(loaded, faiss.IndexIVFFlat)
        assert loaded.nprobe == index.nprobe == 64
        tuned = load_index(path, params={"nprobe": 4})
        assert isinstance(tuned, faiss.IndexIVFFlat) and tuned.nprobe == 4


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "header"])
def test_a_damaged_index_file_is_an_artifact_error(
    damage: str, tmp_path: Path, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    path = tmp_path / INDEX_FILE
    save_index(indexes["ivf"][0], path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        path.write_bytes(b"JUNK" + data[4:])
    with pytest.raises(ArtifactError, match="run `gamerec index` again"):
        load_index(path)


def test_a_missing_index_file_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="gamerec index"):
        load_index(tmp_path / INDEX_FILE)


def test_dimension_or_count_mismatch_is_an_artifact_error(
    tmp_path: Path, indexes: dict[str, tuple[faiss.Index, dict]]
) -> None:
    path = tmp_path / INDEX_FILE
    save_index(indexes["flat"][0], path)
    with pytest.raises(ArtifactError, match="128-d vectors but the model's embeddings are 64-d"):
        load_index(path, dim=64)
    with pytest.raises(ArtifactError, match="4000 items but the model has 3999"):
        load_index(path, dim=DIM, n_items=3999)


# --- the index stage and its tie to the model ---------------------------------------------


def test_index_stage_is_tied_to_its_model(workspace: Path) -> None:
    from gamerec.artifacts.index import (
        check_index_matches,
        read_catalog_vectors,
        read_index_manifest,
    )

    reindex(workspace, "hnsw")
    manifest = read_manifest(workspace / "index", "index")
    model_manifest = read_manifest(workspace / "model", "model")
    processed_manifest = read_manifest(workspace / "processed", "processed")
    catalog_size = processed_manifest["summary"]["catalog"]["games"]
    assert manifest["model_embeddings"] == model_manifest["files"][EMBEDDINGS_FILE]
    assert manifest["index"]["kind"] == "hnsw"
    assert manifest["index"]["n_items"] == catalog_size  # every catalog game is indexed
    assert manifest["index"]["params"]["ef_search"] == 256

    index = load_index_for_model(workspace / "index", workspace / "model", ef_search=300)
    assert isinstance(index, PartitionedIndex)
    vectors = read_catalog_vectors(workspace / "index", read_index_manifest(workspace / "index"))
    members = vectors.part_members()
    assert sorted(manifest["index"]["parts"]) == ["mapped", "trained"]
    for (part_members, part), name in zip(index.parts, ["trained", "mapped"], strict=True):
        assert isinstance(part, FaissIndex) and isinstance(part.index, faiss.IndexHNSWFlat)
        assert part.index.hnsw.efSearch == 300 and part.d == 64
        assert part_members.tolist() == members[name].tolist()
        assert manifest["index"]["parts"][name]["items"] == members[name].size
    # mapped vectors differ in norm: their index pads them to one norm, the trained one not
    assert index.parts[1][1].norm_padding and not index.parts[0][1].norm_padding
    # each kind of game searched among its own kind finds what an exact scan finds
    for name in ("trained", "mapped"):
        allowed = np.zeros(vectors.n_items, dtype=bool)
        allowed[members[name]] = True
        queries = vectors.item_vectors[members[name][:5]]
        _, ids = index.search(queries, 3, None, allowed)
        _, exact = ExactIndex(vectors.item_vectors).search(queries, 3, None, allowed)
        assert ids.tolist() == exact.tolist()

    # a retrained model, or another catalog: the index is refused until `gamerec index`
    with pytest.raises(ArtifactError, match="built for another model; run `gamerec index`"):
        check_index_matches(manifest, processed_manifest, "0" * 16, workspace / "index")
    other_catalog = {"files": {"items.parquet": "0" * 16}}
    with pytest.raises(ArtifactError, match=r"another catalog .* run `gamerec index`"):
        check_index_matches(
            manifest, other_catalog, manifest["model_embeddings"], workspace / "index"
        )
    check_index_matches(
        manifest, processed_manifest, manifest["model_embeddings"], workspace / "index"
    )


def test_index_changed_after_writing_is_refused(workspace: Path) -> None:
    # hnsw: a flat index is answered from the catalog vectors, its file never read
    reindex(workspace, "hnsw")
    index_file = workspace / "index" / INDEX_FILE
    index_file.write_bytes(index_file.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="changed since it was written; run `gamerec index`"):
        load_index_for_model(workspace / "index", workspace / "model")
    with pytest.raises(ArtifactError, match="run `gamerec index` again"):
        load_index_for_model(workspace / "index", workspace / "model", verify=False)


def test_index_whose_shape_disagrees_with_the_vectors_is_refused(workspace: Path) -> None:
    reindex(workspace, "hnsw")
    # an index of 12-d vectors swapped in under a manifest that still names this model
    save_index(
        build_index(clustered_embeddings(300, 12, seed=6))[0], workspace / "index" / INDEX_FILE
    )
    with pytest.raises(ArtifactError, match="12-d vectors but the model's embeddings are 64-d"):
        load_index_for_model(workspace / "index", workspace / "model", verify=False)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("no-manifest", "no model output .* run `gamerec train` first"),
        ("changed", "changed since the model was trained; run `gamerec train` again"),
        ("not-normalised", "not L2-normalised"),
        ("float64", "float64, not float32"),
        ("1-d", r"must hold an \(n_items, d\) array"),
        ("unlisted", "lists no item_embeddings.npy"),
    ],
)
def test_bad_model_embeddings_are_refused(tmp_path: Path, problem: str, message: str) -> None:
    model_dir = tmp_path / "model"
    good = clustered_embeddings(50, 8, seed=1)
    arrays = {
        "not-normalised": good * 2,
        "float64": good.astype(np.float64),
        "1-d": good[0],
    }
    if problem == "no-manifest":
        model_dir.mkdir()
        np.save(model_dir / EMBEDDINGS_FILE, good)
    elif problem == "unlisted":
        model_dir.mkdir()
        write_manifest(model_dir, "model")
        np.save(model_dir / EMBEDDINGS_FILE, good)
    else:
        make_model(tmp_path, arrays.get(problem, good))
        if problem == "changed":
            np.save(model_dir / EMBEDDINGS_FILE, clustered_embeddings(50, 8, seed=2))
    with pytest.raises(ArtifactError, match=message):
        read_item_embeddings(model_dir)


# --- the CLI ------------------------------------------------------------------------------


def test_cli_index_json_writes_the_index_and_reports_recall(workspace: Path) -> None:
    data_dir = workspace
    catalog_size = read_manifest(data_dir / "processed", "processed")["summary"]["catalog"]["games"]
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(data_dir), "index", "--kind", "hnsw", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "hnsw"
    assert summary["items"] == catalog_size and summary["dim"] == 64
    # trained and mapped games are indexed apart, the mapped ones padded to one norm: in one
    # graph over both the trained games' recall@20 was 0.51 (0.89 over all queries), and IVF
    # over the mapped games' own norms 0.31 (``auto`` serves this catalog exactly anyway)
    assert summary["recall_at_20"] >= 0.97
    assert summary["params"]["norm_padding"] is True
    assert summary["recall_queries"] == 1000
    assert summary["build_seconds"] >= 0
    assert (data_dir / "index" / INDEX_FILE).is_file()
    assert read_manifest(data_dir / "index", "index", verify=True)["index"]["kind"] == "hnsw"
    assert not list(data_dir.glob(".*.staging"))  # no staging left

    result = runner.invoke(app, ["--data-dir", str(data_dir), "index", "--kind", "ivf", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recall_at_20"] >= 0.97

    # the table rendering, with auto (exact at this size)
    result = runner.invoke(app, ["--data-dir", str(data_dir), "index"])
    assert result.exit_code == 0, result.output
    assert "recall@20" in result.stdout and "flat" in result.stdout
    assert read_manifest(data_dir / "index", "index")["index"]["kind"] == "flat"


def test_cli_index_without_a_model_says_to_train(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(workdir / "empty"), "index"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    assert "run `gamerec train`" in result.stderr
    assert "Traceback" not in result.output
    assert not (workdir / "empty" / "index").exists()


def test_cli_index_rejects_an_unknown_kind(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(workdir), "index", "--kind", "lsh"])
    assert result.exit_code == 2
    assert "lsh" in result.output


# --- the catalog's columns, kept for recommending ------------------------------------------


def test_the_index_keeps_the_catalog_as_processed_has_it(trained_workspace: Path) -> None:
    """What recommending reads of each game from index/catalog.npz is what
    processed/items.parquet says, game by game."""
    from gamerec.artifacts.index import read_catalog_columns, read_index_manifest
    from gamerec.runtime.catalog import Catalog

    manifest = read_index_manifest(trained_workspace / "index")
    columns = read_catalog_columns(trained_workspace / "index", manifest)
    assert columns is not None
    n = manifest["index"]["n_items"]
    kept = Catalog.from_arrays(columns, n)
    read = Catalog.read(trained_workspace / "processed", n)
    items = pq.read_table(trained_workspace / "processed" / "items.parquet").to_pylist()
    assert list(kept.names) == list(read.names) == [item["name"] for item in items]
    assert kept.kinds == read.kinds == [item["kind"] for item in items]
    assert [kept.tags[i] for i in range(n)] == [list(item["tags"]) for item in items]
    assert [kept.genres[i] for i in range(n)] == [list(item["genres"]) for item in items]
    fields = ("appids", "players", "recommendable", "base_appids", "release_years", "family")
    for field in (*fields, "reviews"):
        assert np.array_equal(getattr(kept, field), getattr(read, field)), field
    reviews = [
        -1
        if item["positive"] is None and item["negative"] is None
        else (item["positive"] or 0) + (item["negative"] or 0)
        for item in items
    ]
    assert kept.reviews.tolist() == reviews and max(reviews) > 1_000_000
    assert kept.by_appid == read.by_appid
    # an index written before it kept the reviews still loads: no reviews known
    older = Catalog.from_arrays({k: v for k, v in columns.items() if k != "reviews"}, n)
    assert (older.reviews == -1).all() and list(older.names) == list(kept.names)
    assert kept.names[-1] == items[-1]["name"] and kept.names[-3:] == [
        item["name"] for item in items[-3:]
    ]


def test_an_index_from_before_the_catalog_columns_answers_the_same(workspace: Path) -> None:
    from gamerec.artifacts.index import CATALOG_COLUMNS_FILE
    from gamerec.runtime.recommender import Recommender

    before = Recommender.from_dir(workspace).recommend(played={620: 600, 400: 60}, k=10)
    manifest_path = workspace / "index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["catalog_columns"]
    del manifest["files"][CATALOG_COLUMNS_FILE]
    manifest_path.write_text(json.dumps(manifest))
    (workspace / "index" / CATALOG_COLUMNS_FILE).unlink()
    for in_memory in (False, True):
        after = Recommender.from_dir(workspace, in_memory=in_memory).recommend(
            played={620: 600, 400: 60}, k=10
        )
        assert [a.to_dict() for a in after] == [b.to_dict() for b in before]


@pytest.mark.parametrize("damage", ["missing", "garbage", "column"])
def test_damaged_catalog_columns_are_an_artifact_error(workspace: Path, damage: str) -> None:
    from gamerec.artifacts.index import CATALOG_COLUMNS_FILE
    from gamerec.runtime.recommender import Recommender

    path = workspace / "index" / CATALOG_COLUMNS_FILE
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not an npz archive")
    else:  # an archive whose columns are not the ones the manifest lists
        with np.load(path) as archive:
            columns = {name: archive[name] for name in archive.files}
        columns["appid"] = columns["appid"][:-1]
        np.savez(path, **columns)
    with pytest.raises(ArtifactError, match="run `gamerec index`"):
        Recommender.from_dir(workspace)
    assert json.loads((workspace / "index" / "manifest.json").read_text())["catalog_columns"]
