"""Ranking metrics: hand-computed answers, edge cases, and a naive per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError, InvalidRequestError
from gamerec.evaluation.metrics import (
    check_ks,
    coverage,
    hit_matrix,
    popularity_bias,
    popularity_percentiles,
    ranking_metrics,
    top_k,
)
from gamerec.evaluation.protocol import bootstrap_ci, evaluate_scorer, mean_ndcg, summarise


def rows_to_matrix(rows: list[list[int]], n_items: int) -> UserItems:
    users = [u for u, items in enumerate(rows) for _ in items]
    items = [i for row in rows for i in row]
    return UserItems.from_pairs(
        np.array(users, dtype=np.int64), np.array(items), None, len(rows), n_items
    )


class FixedScorer:
    """Returns preset scores for rows in order (the tests score each row once)."""

    name = "fixed"

    def __init__(self, scores: np.ndarray):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.next_row = 0

    def score(self, histories: UserItems) -> np.ndarray:
        rows = self.scores[self.next_row : self.next_row + histories.n_rows]
        self.next_row += histories.n_rows
        return rows.copy()


# --- hand-computed answers -------------------------------------------------------------------


def test_metrics_of_one_ranking_by_hand() -> None:
    # ranking [3, 1, 7, 2, 5]; targets {1, 2, 9}: hits at ranks 2 and 4, |T| = 3
    top = np.array([[3, 1, 7, 2, 5]])
    targets = rows_to_matrix([[1, 2, 9]], 10)
    hits = hit_matrix(top, targets)
    assert hits.tolist() == [[False, True, False, True, False]]
    m = ranking_metrics(hits, targets.row_lengths(), [2, 5])
    # K = 2: one hit; min(2, 3) = 2
    assert m["recall@2"][0] == pytest.approx(1 / 2)
    assert m["precision@2"][0] == pytest.approx(1 / 2)
    # DCG = 1/log2(3) = 0.63093; IDCG over 2 ranks = 1 + 0.63093 = 1.63093
    assert m["ndcg@2"][0] == pytest.approx(0.63093 / 1.63093, abs=1e-5)
    # AP@2 = precision@2 * rel_2 / min(2, 3) = (1/2) / 2
    assert m["map@2"][0] == pytest.approx(0.25)
    assert m["hit_rate@2"][0] == 1.0
    # K = 5: two hits; min(5, 3) = 3
    assert m["recall@5"][0] == pytest.approx(2 / 3)
    assert m["precision@5"][0] == pytest.approx(2 / 5)
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068; IDCG over 3 = 1 + 0.63093 + 0.5
    assert m["ndcg@5"][0] == pytest.approx((0.63093 + 0.43068) / 2.13093, abs=1e-5)
    # AP@5 = (P@2 + P@4) / 3 = (1/2 + 2/4) / 3
    assert m["map@5"][0] == pytest.approx(1 / 3)


def test_recall_and_ndcg_normalise_by_min_k_and_targets() -> None:
    # 30 targets, K = 10, every one of the top 10 is a target: a perfect top 10
    targets = rows_to_matrix([list(range(30))], 40)
    top = np.arange(10)[None, :]
    m = ranking_metrics(hit_matrix(top, targets), targets.row_lengths(), [10])
    assert m["recall@10"][0] == 1.0  # 10 / min(10, 30), not 10 / 30
    assert m["ndcg@10"][0] == pytest.approx(1.0)
    assert m["map@10"][0] == pytest.approx(1.0)
    assert m["precision@10"][0] == 1.0


def test_single_target_at_rank_one_and_a_miss() -> None:
    targets = rows_to_matrix([[4], [4]], 6)
    top = np.array([[4, 0, 1], [0, 1, 2]])
    m = ranking_metrics(hit_matrix(top, targets), targets.row_lengths(), [1, 3])
    assert m["recall@1"].tolist() == [1.0, 0.0]
    assert m["ndcg@3"].tolist() == [1.0, 0.0]
    assert m["precision@3"][0] == pytest.approx(1 / 3)
    assert m["hit_rate@3"].tolist() == [1.0, 0.0]


def test_empty_slots_never_hit() -> None:
    targets = rows_to_matrix([[0]], 3)
    top = np.array([[-1, -1]])
    assert not hit_matrix(top, targets).any()


def test_ranking_metrics_needs_a_target_per_row() -> None:
    with pytest.raises(ValueError, match="target"):
        ranking_metrics(np.zeros((1, 2), dtype=bool), np.array([0]), [2])


def test_popularity_percentiles_by_hand() -> None:
    # counts [5, 1, 1, 0] sorted: [0, 1, 1, 5]
    # item 0: 3 below, 1 equal -> 100 * (3 + 0.5) / 4 = 87.5
    # items 1, 2: 1 below, 2 equal -> 100 * (1 + 1) / 4 = 50
    # item 3: 0 below, 1 equal -> 12.5
    pct = popularity_percentiles(np.array([5, 1, 1, 0]))
    assert pct.tolist() == [87.5, 50.0, 50.0, 12.5]
    assert popularity_percentiles(np.array([3, 3, 3])).tolist() == [50.0, 50.0, 50.0]
    bias = popularity_bias(np.array([[0, 1, -1]]), pct, [1, 2, 3])
    assert bias["pop_pct@1"][0] == 87.5
    assert bias["pop_pct@2"][0] == pytest.approx((87.5 + 50) / 2)
    assert bias["pop_pct@3"][0] == pytest.approx((87.5 + 50) / 2)  # the empty slot is ignored


def test_coverage_by_hand() -> None:
    top = np.array([[0, 1], [0, 2], [0, -1]])
    # K = 1: {0} of 4 items; K = 2: {0, 1, 2} of 4 (the empty slot does not count)
    assert coverage(top, [1, 2], 4) == {"coverage@1": 0.25, "coverage@2": 0.75}


# --- top-k ---------------------------------------------------------------------------------


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5, 0.9]])
    assert top_k(scores, 4).tolist() == [[1, 5, 0, 2]]
    assert top_k(scores, 6).tolist() == [[1, 5, 0, 2, 4, 3]]


def test_top_k_marks_masked_slots_and_ignores_nan() -> None:
    scores = np.array([[-np.inf, 2.0, np.nan, -np.inf], [1.0, 2.0, 3.0, 4.0]])
    assert top_k(scores, 3).tolist() == [[1, -1, -1], [3, 2, 1]]


def test_top_k_rejects_k_outside_the_catalog() -> None:
    with pytest.raises(InvalidRequestError, match="catalog"):
        top_k(np.zeros((2, 3)), 4)


def test_check_ks() -> None:
    assert check_ks([20, 10, 20], 100) == [10, 20]
    with pytest.raises(InvalidRequestError, match="larger than the catalog"):
        check_ks([10, 500], 100)
    with pytest.raises(InvalidRequestError, match="at least 1"):
        check_ks([0], 100)
    with pytest.raises(InvalidRequestError, match="no cut-off"):
        check_ks([], 100)


# --- evaluate_scorer -------------------------------------------------------------------------


def test_history_items_are_masked_from_the_ranking() -> None:
    # the scorer loves the history's games; only masking lets the target come first
    histories = rows_to_matrix([[0, 1], [2, 3]], 5)
    targets = rows_to_matrix([[4], [4]], 5)
    scores = np.array([[9, 8, 0, 0, 1], [0, 0, 9, 8, 1]], dtype=np.float32)
    result = evaluate_scorer(FixedScorer(scores), histories, targets, [1])
    assert result.per_user["recall@1"].tolist() == [1.0, 1.0]
    assert result.top_items[:, 0].tolist() == [4, 4]


def test_rows_without_targets_are_not_evaluated() -> None:
    histories = rows_to_matrix([[0], [1], [2]], 4)
    targets = rows_to_matrix([[3], [], [3]], 4)
    scores = np.tile(np.array([0, 0, 0, 1], dtype=np.float32), (2, 1))
    result = evaluate_scorer(FixedScorer(scores), histories, targets, [1])
    assert result.rows.tolist() == [0, 2]
    assert result.per_user["hit_rate@1"].tolist() == [1.0, 1.0]


def test_scores_of_the_wrong_shape_are_refused() -> None:
    histories = rows_to_matrix([[0]], 4)
    targets = rows_to_matrix([[1]], 4)
    with pytest.raises(ArtifactError, match="another catalog"):
        evaluate_scorer(FixedScorer(np.zeros((1, 3))), histories, targets, [1])


def test_batches_do_not_change_the_result() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 23, 30
    scores = rng.random((n_users, n_items)).astype(np.float32)
    histories = rows_to_matrix([list(range(u % 5)) for u in range(n_users)], n_items)
    targets = rows_to_matrix([[10 + u % 7, 20 + u % 3] for u in range(n_users)], n_items)
    pct_counts = rng.integers(0, 50, n_items)
    results = [
        evaluate_scorer(
            FixedScorer(scores), histories, targets, [5, 10], popularity=pct_counts, batch_size=b
        )
        for b in (1, 4, 1024)
    ]
    for other in results[1:]:
        assert other.per_user.keys() == results[0].per_user.keys()
        for key, values in results[0].per_user.items():
            np.testing.assert_array_equal(other.per_user[key], values)
        assert other.aggregate == results[0].aggregate


def test_mean_ndcg_caps_k_at_the_catalog() -> None:
    histories = rows_to_matrix([[0]], 3)
    targets = rows_to_matrix([[2]], 3)
    # only 2 rankable games: 2 at rank 1 -> NDCG 1 even though k=20 > 3 games
    value = mean_ndcg(FixedScorer(np.array([[0, 0, 1]])), histories, targets, k=20)
    assert value == pytest.approx(1.0)


# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(0)
    values = {"recall@20": rng.binomial(1, 0.5, 400).astype(float)}
    first = bootstrap_ci(values, 1000, seed=5)
    assert first == bootstrap_ci(values, 1000, seed=5)
    assert first != bootstrap_ci(values, 1000, seed=6)
    low, high = first["recall@20"]
    mean = values["recall@20"].mean()
    assert low < mean < high
    # a Bernoulli(0.5) mean over 400 users: standard error 0.025, so the 95% CI is ~0.098 wide
    assert high - low == pytest.approx(2 * 1.96 * 0.025, rel=0.15)


def test_bootstrap_of_a_constant_collapses() -> None:
    assert bootstrap_ci({"x": np.full(50, 0.25)}, 200, seed=0) == {"x": (0.25, 0.25)}
    assert bootstrap_ci({"x": np.full(50, 0.25)}, 0, seed=0) == {}


def test_summarise_reports_means_cis_and_coverage() -> None:
    histories = rows_to_matrix([[0], [1]], 4)
    targets = rows_to_matrix([[3], [2]], 4)
    scores = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], dtype=np.float32)
    result = evaluate_scorer(FixedScorer(scores), histories, targets, [1])
    summary = summarise(result, resamples=100, seed=0)
    assert summary["recall@1"]["mean"] == 0.5
    low, high = summary["recall@1"]["ci"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert summary["coverage@1"] == {"mean": 0.25, "ci": None}


# --- the vectorised metrics against a naive per-user loop ----------------------------------


def naive_metrics(
    scores: np.ndarray, history: list[set[int]], targets: list[set[int]], ks: list[int]
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    n_items = scores.shape[1]
    for u in range(len(scores)):
        order = sorted(range(n_items), key=lambda i: (-scores[u][i], i))
        ranked = [i for i in order if i not in history[u]]
        for k in ks:
            hits = [1 if i in targets[u] else 0 for i in ranked[:k]]
            m = min(k, len(targets[u]))
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(m))
            ap = sum(sum(hits[: r + 1]) / (r + 1) * hits[r] for r in range(len(hits))) / m
            for name, value in [
                ("recall", sum(hits) / m),
                ("ndcg", dcg / idcg),
                ("precision", sum(hits) / k),
                ("map", ap),
                ("hit_rate", float(sum(hits) > 0)),
            ]:
                out.setdefault(f"{name}@{k}", []).append(value)
    return out


@st.composite
def ranking_cases(draw: st.DrawFn) -> tuple:
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(2, 12))
    # small integer scores: plenty of ties, to check the tie-breaking too
    scores = np.array(
        draw(st.lists(st.integers(0, 3), min_size=n_users * n_items, max_size=n_users * n_items)),
        dtype=np.float32,
    ).reshape(n_users, n_items)
    history, targets = [], []
    for _ in range(n_users):
        roles = draw(st.lists(st.sampled_from("hto"), min_size=n_items, max_size=n_items))
        if "t" not in roles:
            roles[draw(st.integers(0, n_items - 1))] = "t"
        history.append({i for i, r in enumerate(roles) if r == "h"})
        targets.append({i for i, r in enumerate(roles) if r == "t"})
    ks = sorted(set(draw(st.lists(st.integers(1, n_items), min_size=1, max_size=3))))
    return scores, history, targets, ks


@settings(max_examples=150, deadline=None)
@given(ranking_cases())
def test_vectorised_metrics_match_a_naive_loop(case: tuple) -> None:
    scores, history, targets, ks = case
    n_items = scores.shape[1]
    h = rows_to_matrix([sorted(s) for s in history], n_items)
    t = rows_to_matrix([sorted(s) for s in targets], n_items)
    result = evaluate_scorer(FixedScorer(scores), h, t, ks, batch_size=2)
    expected = naive_metrics(scores, history, targets, ks)
    for key, values in expected.items():
        np.testing.assert_allclose(result.per_user[key], values, rtol=1e-9, atol=1e-12)
