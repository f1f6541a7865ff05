"""Baselines and the two-tower: one shared suite run against every method, plus each one's math.

To put a new method through the shared suite, add one ``Method`` to ``METHODS``: a name, a
function that fits it on the training matrix (validation users given for tuning or early
stopping), and whether it is personalised (it should solve the checkerboard).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from gamerec.dataio.matrix import UserItems
from gamerec.dataio.splits import HeldOutUsers
from gamerec.errors import ConfigError
from gamerec.evaluation.baselines import (
    EASE,
    ItemKNN,
    Popularity,
    check_ease_size,
    tune_ease,
)
from gamerec.evaluation.protocol import Method as RankingMethod
from gamerec.evaluation.protocol import evaluate_scorer, mean_ndcg, ranked_items
from gamerec.ranking import Ranker
from gamerec.ranking.scorer import Scorer
from gamerec.towers.ease import ease_weights, gram_matrix


@dataclass(frozen=True)
class Method:
    name: str
    fit: Callable[[UserItems, HeldOutUsers], RankingMethod]
    personalised: bool


def two_tower(train: UserItems, valid: HeldOutUsers, rerank: bool = False) -> Ranker:
    """A small two-tower trained on ``train`` (seeded), early-stopped on ``valid``, ranking
    through the one engine (with its co-play second stage when ``rerank``)."""
    from gamerec.artifacts.model import RerankPolicy
    from gamerec.index import ExactIndex
    from gamerec.ranking import CoPlay, RankingEngine, RankingPolicy
    from gamerec.ranking.user_tower import NumpyUserTower
    from gamerec.towers.checkpoint import export_item_embeddings, export_user_tower
    from gamerec.towers.features import build_item_features
    from gamerec.towers.model import TwoTowerConfig
    from gamerec.towers.train import TrainConfig, TrainRun, train_two_tower

    n_items = train.n_items
    items = pd.DataFrame(
        {
            "item_idx": np.arange(n_items),
            "genres": [["Indie"]] * n_items,
            "tags": [[]] * n_items,
            "n_users": np.bincount(train.indices, minlength=n_items),
        }
    )
    features = build_item_features(items)
    config = TwoTowerConfig(
        n_items=n_items,
        n_tokens=features.n_tokens,
        n_numeric=features.numeric.shape[1],
        embedding_dim=16,
        hidden_dim=32,
        dropout=0.0,
        temperature=0.1,
    )
    result = train_two_tower(
        train,
        features,
        config,
        TrainConfig(
            epochs=40,
            patience=40,
            batch_size=16,
            learning_rate=0.02,
            holdout_fraction=0.2,
            max_full_softmax_items=1000,
            sampled_negatives=8,
        ),
        TrainRun(
            validate=lambda scorer: mean_ndcg(scorer, valid.histories, valid.targets, k=5),
            threads=1,
        ),
    )
    tower = NumpyUserTower(export_user_tower(result.model, features))
    embeddings = export_item_embeddings(result.model, features)
    trained = np.ones(n_items, dtype=bool)
    if not rerank:
        return RankingEngine(tower, embeddings, ExactIndex(embeddings), trained, RankingPolicy())
    policy = RerankPolicy(alpha=0.5, regularisation=10.0, candidates=n_items)
    coplay = CoPlay(ease_weights(gram_matrix(train), 10.0))
    return RankingEngine(
        tower, embeddings, ExactIndex(embeddings), trained, RankingPolicy(policy), coplay
    )


METHODS = [
    Method("popularity", lambda train, valid: Popularity().fit(train), personalised=False),
    Method("itemknn", lambda train, valid: ItemKNN().fit(train), personalised=True),
    Method("itemknn-10nn", lambda train, valid: ItemKNN(neighbors=10).fit(train), True),
    Method("ease", lambda train, valid: EASE(lam=10.0).fit(train), personalised=True),
    Method(
        "ease-tuned",
        lambda train, valid: tune_ease(
            train, valid.histories, valid.targets, [1.0, 10.0, 100.0], k=1
        )[0],
        personalised=True,
    ),
    Method("two-tower", two_tower, personalised=True),
    Method(
        "two-tower-reranked",
        lambda train, valid: two_tower(train, valid, rerank=True),
        personalised=True,
    ),
]


def matrix(rows: list[list[int]], n_items: int, values: list[list[float]] | None = None):
    users = [u for u, items in enumerate(rows) for _ in items]
    items = [i for row in rows for i in row]
    flat = None if values is None else [v for row in values for v in row]
    return UserItems.from_pairs(np.array(users), np.array(items), flat, len(rows), n_items)


def eval_users(histories: list[list[int]], targets: list[list[int]], n_items: int) -> HeldOutUsers:
    return HeldOutUsers(
        user_idx=np.arange(len(histories)),
        histories=matrix(histories, n_items),
        targets=matrix(targets, n_items),
    )


N_ITEMS = 10
EVEN = [0, 2, 4, 6, 8]
ODD = [1, 3, 5, 7, 9]


def checkerboard() -> tuple[UserItems, HeldOutUsers, HeldOutUsers]:
    """Even users own even games, odd users odd games; twice as many even users, so even games
    are the most popular. Each evaluated user has one of their parity's games withheld."""
    train = matrix([EVEN] * 6 + [ODD] * 3, N_ITEMS)
    histories, targets = [], []
    for withheld in range(N_ITEMS):
        games = EVEN if withheld % 2 == 0 else ODD
        histories.append([g for g in games if g != withheld])
        targets.append([withheld])
    test = eval_users(histories, targets, N_ITEMS)
    valid = eval_users(histories[::-1], targets[::-1], N_ITEMS)
    return train, valid, test


def random_data(seed: int = 0, n_users: int = 40, n_items: int = 25):
    rng = np.random.default_rng(seed)
    owned = rng.random((n_users, n_items)) < 0.3
    owned[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    rows = [list(np.flatnonzero(r)) for r in owned]
    playtime = [list(rng.integers(0, 600, len(r)).astype(float)) for r in rows]
    return matrix(rows, n_items, playtime), owned


# --- the shared suite ------------------------------------------------------------------------


@pytest.fixture(params=METHODS, ids=[m.name for m in METHODS])
def method(request: pytest.FixtureRequest) -> Method:
    return request.param


def test_implements_a_ranking_interface(method: Method) -> None:
    train, valid, _ = checkerboard()
    fitted = method.fit(train, valid)
    assert isinstance(fitted, Scorer) or hasattr(fitted, "rank_lists")
    assert isinstance(fitted.name, str) and fitted.name


def test_ranks_distinct_games_never_from_the_history(method: Method) -> None:
    train, _ = random_data()
    valid = eval_users([[0, 1], [2]], [[3], [4]], train.n_items)
    fitted = method.fit(train, valid)
    if isinstance(fitted, Scorer):  # a baseline scores every game, as a finite float32
        scores = fitted.score(train)
        assert scores.shape == (train.n_rows, train.n_items)
        assert scores.dtype == np.float32 and np.isfinite(scores).all()
    top = ranked_items(fitted, train, 8, None)
    assert top.shape == (train.n_rows, 8)
    for row in range(train.n_rows):
        listed = top[row][top[row] >= 0]
        assert len(set(listed.tolist())) == len(listed)
        assert not set(listed.tolist()) & set(train.row(row).tolist())
        # a list runs short only when too few games are left
        assert len(listed) == min(8, train.n_items - len(set(train.row(row).tolist())))


def test_a_user_is_ranked_the_same_alone_or_in_a_batch(method: Method) -> None:
    train, _ = random_data(1)
    valid = eval_users([[0, 1], [2]], [[3], [4]], train.n_items)
    fitted = method.fit(train, valid)
    together = ranked_items(fitted, train, 10, None)
    order = np.random.default_rng(0).permutation(train.n_rows)
    shuffled = ranked_items(fitted, train.take_rows(order), 10, None)
    np.testing.assert_array_equal(shuffled, together[order])
    for row in (0, 7, train.n_rows - 1):
        alone = ranked_items(fitted, train.take_rows(np.array([row])), 10, None)
        np.testing.assert_array_equal(alone[0], together[row])


def test_fitting_is_deterministic(method: Method) -> None:
    train, _ = random_data(2)
    valid = eval_users([[0, 1], [2]], [[3], [4]], train.n_items)
    first = ranked_items(method.fit(train, valid), train, 10, None)
    second = ranked_items(method.fit(train, valid), train, 10, None)
    np.testing.assert_array_equal(first, second)


def test_only_allowed_games_are_ranked(method: Method) -> None:
    train, _ = random_data(3)
    valid = eval_users([[0, 1], [2]], [[3], [4]], train.n_items)
    allowed = np.zeros(train.n_items, dtype=bool)
    allowed[::3] = True
    allowed.setflags(write=False)
    top = ranked_items(method.fit(train, valid), train, 5, allowed)
    assert allowed[top[top >= 0]].all()
    assert (top >= 0).sum() > 0


def test_checkerboard_withheld_game_ranks_first_iff_personalised(method: Method) -> None:
    train, valid, test = checkerboard()
    scorer = method.fit(train, valid)
    result = evaluate_scorer(scorer, test.histories, test.targets, [1])
    first = result.top_items[:, 0]
    if method.personalised:
        assert first.tolist() == list(range(N_ITEMS))  # the withheld game, for every user
        assert result.mean("hit_rate@1") == 1.0
    else:
        # Even games are the most owned: an even user's only unowned even game is the withheld
        # one, but every odd user is offered an even game (0), which is wrong.
        assert result.mean("hit_rate@1") < 1.0
        assert set(first[1::2].tolist()) <= set(EVEN)


# --- each baseline's own math ----------------------------------------------------------------


@pytest.mark.parametrize("batch_pairs", [1, 50, 1 << 24])
def test_cooccurrence_is_x_transpose_x(batch_pairs: int) -> None:
    train, owned = random_data(3)
    dense = owned.astype(np.float64)
    np.testing.assert_array_equal(gram_matrix(train, batch_pairs), dense.T @ dense)


def test_popularity_counts_owners_once() -> None:
    train = matrix([[0, 1], [1, 2], [1, 1]], 4)  # the last row lists game 1 twice
    scores = Popularity().fit(train).score(matrix([[0]], 4))
    assert scores.tolist() == [[1.0, 3.0, 1.0, 0.0]]


def test_popularity_ignores_playtime() -> None:
    train = matrix([[0, 1], [1]], 2, [[10_000.0, 0.0], [0.0]])
    assert Popularity().fit(train).counts.tolist() == [1.0, 2.0]


def test_itemknn_cosine_by_hand() -> None:
    # users {0, 1}, {0, 1, 2}, {2}: columns 0 = (1,1,0), 1 = (1,1,0), 2 = (0,1,1)
    # cos(0, 1) = 2 / (sqrt2 * sqrt2) = 1; cos(0, 2) = cos(1, 2) = 1 / (sqrt2 * sqrt2) = 0.5
    train = matrix([[0, 1], [0, 1, 2], [2]], 4)
    knn = ItemKNN().fit(train)
    np.testing.assert_allclose(
        knn.similarity[:3, :3], [[0, 1, 0.5], [1, 0, 0.5], [0.5, 0.5, 0]], atol=1e-6
    )
    assert not knn.similarity[3].any()  # a game nobody owns is similar to nothing
    # history {0}: scores = row 0 of the similarity; history {0, 2}: rows 0 + 2
    np.testing.assert_allclose(
        knn.score(matrix([[0], [0, 2]], 4))[:, :3], [[0, 1, 0.5], [0.5, 1.5, 0.5]]
    )


def test_itemknn_keeps_the_nearest_neighbours_per_game() -> None:
    train, _ = random_data(4)
    full = ItemKNN().fit(train).similarity
    pruned = ItemKNN(neighbors=3).fit(train).similarity
    assert ((pruned > 0).sum(axis=1) <= 3).all()
    for row in range(len(full)):
        kept = np.flatnonzero(pruned[row])
        np.testing.assert_allclose(pruned[row, kept], full[row, kept])
        if len(kept):  # nothing dropped is more similar than what was kept
            dropped = np.setdiff1d(np.arange(len(full)), kept)
            assert full[row, dropped].max() <= full[row, kept].min() + 1e-6
    with pytest.raises(ConfigError):
        ItemKNN(neighbors=0)


def test_ease_is_the_constrained_least_squares_solution() -> None:
    # EASE solves min ||X - XB||^2 + lam ||B||^2 subject to diag(B) = 0. Its stationarity
    # condition: (X^T X + lam I) B - X^T X is zero off the diagonal (the diagonal holds the
    # constraint's Lagrange multipliers).
    train, owned = random_data(5)
    lam = 7.0
    weights = EASE(lam=lam).fit(train).weights.astype(np.float64)
    gram = owned.T.astype(np.float64) @ owned
    residual = (gram + lam * np.eye(len(gram))) @ weights - gram
    np.fill_diagonal(residual, 0.0)
    assert np.abs(residual).max() < 1e-3
    assert not np.diag(weights).any()


def test_ease_with_a_huge_lambda_ranks_like_popularity_of_cooccurrence() -> None:
    # B -> G / lam off the diagonal as lam grows: scores ~ co-occurrence with the history
    train, owned = random_data(6)
    gram = owned.T.astype(np.float64) @ owned
    np.fill_diagonal(gram, 0.0)
    history = matrix([[0, 3]], train.n_items)
    scores = EASE(lam=1e7).fit(train).score(history)[0] * 1e7
    np.testing.assert_allclose(scores, gram[0] + gram[3], rtol=1e-3, atol=1e-3)


def test_ease_refuses_catalogs_above_the_limit() -> None:
    train, _ = random_data(7)
    with pytest.raises(ConfigError, match=r"eval\.ease_max_items = 10") as info:
        EASE(max_items=10).fit(train)
    assert "25 games" in str(info.value)
    check_ease_size(25, 25)  # at the limit is fine
    with pytest.raises(ConfigError, match="positive"):
        EASE(lam=0)


def test_tune_ease_keeps_the_best_lambda_it_tried() -> None:
    train, owned = random_data(8, n_users=80)
    rng = np.random.default_rng(0)
    histories, targets = [], []
    for row in owned[:30]:
        games = list(np.flatnonzero(row))
        if len(games) < 2:
            continue
        held = int(rng.choice(games))
        histories.append([g for g in games if g != held])
        targets.append([held])
    valid = eval_users(histories, targets, train.n_items)
    grid = [0.1, 1.0, 10.0, 100.0, 1000.0]
    model, tried = tune_ease(train, valid.histories, valid.targets, grid, k=5)
    assert 1 <= len(tried) <= len(grid)
    assert model.lam == max(tried, key=lambda lam: tried[lam])
    # the walk starts in the middle of the grid
    assert 10.0 in tried
    # a single lambda, or no validation users: that lambda / the middle of the grid
    assert tune_ease(train, valid.histories, valid.targets, [42.0])[0].lam == 42.0
    empty = matrix([[] for _ in range(3)], train.n_items)
    model, tried = tune_ease(train, empty, empty, grid)
    assert (model.lam, tried) == (10.0, {})


@pytest.mark.parametrize("with_torch", [True, False])
def test_ease_weights_closed_form_on_a_tiny_matrix(
    with_torch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # users {0, 1}, {1, 2}, {0}: G = X^T X = [[2,1,0],[1,2,1],[0,1,1]]; lambda 1:
    # P = (G + I)^-1 = [[5,-2,1],[-2,6,-3],[1,-3,8]] / 13; B[i, j] = -P[i, j] / P[j, j]
    if not with_torch:  # the numpy path that serving installations without torch take
        monkeypatch.setitem(sys.modules, "torch", None)
    train = matrix([[0, 1], [1, 2], [0]], 3)
    gram = gram_matrix(train)
    np.testing.assert_array_equal(gram, [[2, 1, 0], [1, 2, 1], [0, 1, 1]])
    expected = [[0, 1 / 3, -1 / 8], [2 / 5, 0, 3 / 8], [-1 / 5, 1 / 2, 0]]
    weights = ease_weights(gram, 1.0)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(EASE(lam=1.0).fit(train).weights, expected, atol=1e-6)


def test_ease_weights_of_a_game_nobody_plays_are_zero_and_leave_the_others_alone() -> None:
    # the tiny matrix above with two unplayed games put between its games: same weights
    train = matrix([[0, 2], [2, 4], [0]], 5)
    weights = ease_weights(gram_matrix(train), 1.0)
    expected = [[0, 1 / 3, -1 / 8], [2 / 5, 0, 3 / 8], [-1 / 5, 1 / 2, 0]]
    np.testing.assert_allclose(weights[np.ix_([0, 2, 4], [0, 2, 4])], expected, atol=1e-6)
    assert not weights[[1, 3]].any() and not weights[:, [1, 3]].any()


def test_the_reranker_and_the_baseline_share_one_ease() -> None:
    import gamerec.evaluation.baselines as baselines
    import gamerec.towers.fit as fit

    assert baselines.ease_weights is fit.ease_weights is ease_weights


def test_the_reranker_size_error_names_its_own_setting() -> None:
    with pytest.raises(ConfigError, match=r"train\.rerank_max_items = 2.*rerank = false"):
        check_ease_size(3, 2, "train.rerank_max_items", "set train.rerank = false")
