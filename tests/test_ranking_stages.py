"""The blend of the two stages (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from gamerec.ranking.stages import blend


def standard(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def test_a_stage_that_varies_over_no_candidate_leaves_the_row_to_the_other() -> None:
    first = np.array([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]], dtype=np.float32)
    # row 0: the co-play stage knows none of the history's games, so every score is 0
    second = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 4.0, 1.0, 1.0]], dtype=np.float32)
    out = blend(first, second, 0.25)
    np.testing.assert_allclose(out[0], standard(first[0]), rtol=1e-6)
    np.testing.assert_allclose(
        out[1], 0.25 * standard(first[1]) + 0.75 * standard(second[1]), rtol=1e-6
    )


def test_the_spread_is_judged_over_each_rows_candidates_only() -> None:
    first = np.array([[3.0, 1.0, 2.0, 9.0]], dtype=np.float32)
    second = np.array([[5.0, 5.0, 5.0, -7.0]], dtype=np.float32)  # the last is padding
    where = np.array([[True, True, True, False]])
    out = blend(first, second, 0.5, where)
    kept = first[0, :3]
    np.testing.assert_allclose(out[0, :3], standard(kept), rtol=1e-6)
    # neither stage varies: both count as asked (all zero)
    flat = blend(np.ones((1, 3)), np.ones((1, 3)), 0.5)
    np.testing.assert_array_equal(flat, np.zeros((1, 3)))


def test_equal_scores_are_constant_whatever_their_rounding() -> None:
    """Float32 sums of equal values keep a spread of rounding (about 1e-8 of them): standardised
    it became scores of +-1 made of noise. A stage of equal non-zero scores is constant."""
    first = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=np.float32)
    second = np.full((1, 7), 0.1, dtype=np.float32)
    assert second.std(dtype=np.float32) > 0  # the rounding this test is about
    out = blend(first, second, 0.5, np.ones((1, 7), dtype=bool))
    np.testing.assert_allclose(out[0], standard(first[0]), rtol=1e-6)


def test_a_history_the_co_play_model_does_not_know_is_ranked_by_the_towers_at_full_weight() -> None:
    """Game 9 is new to the play data (no co-play row). A player of it alone gets co-play
    scores of 0 for every candidate: the towers' standardised scores are the final ones, not
    half of them (which put genre/tag closeness and new games at twice their weight)."""
    from gamerec.artifacts.model import RerankPolicy
    from gamerec.dataio.matrix import UserItems
    from gamerec.index import ExactIndex
    from gamerec.ranking import RankingEngine, RankingPolicy
    from gamerec.ranking.stages import CoPlay
    from gamerec.ranking.user_tower import USER_TOWER_ARRAYS, NumpyUserTower

    n = 10
    first_stage = np.array([0, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=np.float32)
    vectors = np.stack([first_stage, np.zeros(n, np.float32)], axis=1)
    rows = np.r_[np.arange(9), -1]
    coplay = CoPlay(np.ones((9, 9), dtype=np.float32) - np.eye(9, dtype=np.float32), rows)
    tower = NumpyUserTower({name: np.zeros((n, 2)) for name in USER_TOWER_ARRAYS})
    rerank = RerankPolicy(alpha=0.5, regularisation=1.0, candidates=8, coplay_candidates=0)
    engine = RankingEngine(
        tower, vectors, ExactIndex(vectors), rows >= 0, RankingPolicy(rerank), coplay
    )
    plays_9 = UserItems.from_pairs(np.array([0]), np.array([9]), np.ones(1), n_rows=1, n_items=n)
    allowed = np.r_[np.zeros(1, bool), np.ones(8, bool), np.zeros(1, bool)]
    ranked = engine.rank(plays_9, 3, allowed, queries=np.array([[1.0, 0.0]], np.float32))
    assert ranked.items[0].tolist() == [1, 2, 3]
    expected = standard(first_stage[1:9])[:3]
    np.testing.assert_allclose(ranked.scores[0], expected, rtol=1e-5)


def test_a_history_the_co_play_model_does_not_know_draws_an_even_sample_of_its_games() -> None:
    """With every co-play score 0 there are no best games to draw: the co-play candidates are
    the eligible games evenly spaced in the catalog's order, not whichever a partition of equal
    values left first. A history the model knows draws its best games, as before."""
    from gamerec.dataio.matrix import UserItems
    from gamerec.ranking.stages import CoPlay

    n_games = 13  # games 0-11 have co-play rows (in reverse order), game 12 has none
    rows = np.r_[np.arange(11, -1, -1), -1]
    weights = np.arange(144, dtype=np.float32).reshape(12, 12) % 7 + 1.0
    coplay = CoPlay(weights, rows)
    histories = UserItems.from_pairs(
        np.array([0, 1]), np.array([12, 0]), np.ones(2), n_rows=2, n_items=n_games
    )
    sums = coplay.sums(histories)
    allowed = np.ones(n_games, dtype=bool)
    allowed[5] = False
    blocked = np.full((2, 1), -1, dtype=np.int64)
    excluded = [np.array([12]), np.array([0, 3])]
    drawn = coplay.top_of(sums, 4, allowed, blocked, excluded)
    # the 11 eligible weights rows (all but game 5's, row 6), evenly spaced: the 1st, 4th,
    # 7th and 11th, rows 0, 3, 7 and 11, which are games 11, 8, 4 and 0
    assert drawn[0].tolist() == [11, 8, 4, 0]
    # game 0's own weights row (row 11) ranks the rest: highest first
    eligible = [g for g in range(12) if g not in (0, 3, 5)]
    expected = sorted(eligible, key=lambda g: -weights[11, rows[g]])[:4]
    assert sorted(weights[11, rows[drawn[1]]].tolist()) == sorted(
        weights[11, rows[expected]].tolist()
    )
    # fewer eligible games than asked: every one, then -1
    every = coplay.top_of(sums[:1], 12, allowed, blocked[:1], excluded[:1])[0]
    assert every.tolist() == [11, 10, 9, 8, 7, 6, 4, 3, 2, 1, 0, -1]


def test_an_undated_games_year_is_the_median_of_the_dated_games_around_it() -> None:
    from gamerec.ranking.stages import release_years

    # 60 dated games: appids 0, 10, ..., 590, one year for each block of 20 (2000, 2001, 2002)
    dated_appids = np.arange(60) * 10
    dated_years = 2000 + np.arange(60) // 20
    appids = np.r_[dated_appids, 95, 305, 585, 10_000, -1]
    years = np.r_[dated_years, -1, -1, -1, -1, -1]
    out = release_years(appids, years)
    np.testing.assert_array_equal(out[:60], dated_years.astype(np.float32))
    # 95: before the 11th dated game, whose window of 51 (padded at the edge) holds 35 of
    # 2000 and 16 of 2001
    assert out[60] == 2000.0
    assert out[61] == 2001.0  # the middle of the 2001 block
    assert out[62] == 2002.0  # the end: the edge's own year
    assert out[63] == 2002.0  # past every dated appid: the last one's
    assert np.isnan(out[64])  # no appid, no year
    # nothing dated: nothing to estimate from
    assert np.isnan(release_years(np.array([5, 6]), np.array([-1, -1]))).all()


def test_years_older_counts_the_years_before_the_historys_mean_and_never_after() -> None:
    from gamerec.dataio.matrix import UserItems
    from gamerec.ranking.stages import years_older

    years = np.array([2010.0, 2020.0, 2005.0, 2024.0, np.nan], dtype=np.float32)
    # row 0 owns games 0 and 1 (mean 2015); row 1 owns the undated game 4 alone
    histories = UserItems.from_pairs(
        np.array([0, 0, 1]), np.array([0, 1, 4]), np.ones(3), n_rows=2, n_items=5
    )
    candidates = np.array([[2, 3, 4, -1], [2, 3, 0, -1]])
    out = years_older(years, histories, candidates)
    assert out.tolist() == [[10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_a_new_game_older_than_the_history_loses_its_weight_per_year() -> None:
    """Rows 0-2 were trained; 3 and 4 are new, equally good by their vectors, 4 released 10
    years before the history's game and 3 after it. Without the weight they tie (the smaller
    id first); with 0.2 a year, 4 loses exactly 2 points and falls below 3 and below the
    trained game 1."""
    from gamerec.artifacts.model import NewGamePolicy
    from gamerec.dataio.matrix import UserItems
    from gamerec.index import ExactIndex
    from gamerec.ranking import RankingEngine, RankingPolicy
    from gamerec.ranking.user_tower import USER_TOWER_ARRAYS, NumpyUserTower

    trained = np.array([True, True, True, False, False])
    first_stage = np.array([0.0, 0.5, 0.1, 0.45, 0.45], dtype=np.float32)
    vectors = np.stack([first_stage, np.ones(5, np.float32)], axis=1)
    tower = NumpyUserTower({name: np.zeros((5, 2)) for name in USER_TOWER_ARRAYS})
    years = np.array([2015.0, 2012.0, 2010.0, 2020.0, 2005.0], dtype=np.float32)
    owns_0 = UserItems.from_pairs(np.array([0]), np.array([0]), np.ones(1), n_rows=1, n_items=5)
    query = np.array([[1.0, 0.0]], np.float32)

    def ranked(older: float) -> tuple[list[int], list[float]]:
        policy = RankingPolicy(None, NewGamePolicy(1.0, 0.0, older=older), new_games_share=0.0)
        engine = RankingEngine(
            tower, vectors, ExactIndex(vectors), trained, policy, release_years=years
        )
        out = engine.rank(owns_0, 4, np.ones(5, dtype=bool), queries=query)
        return out.items[0].tolist(), out.scores[0].tolist()

    items, scores = ranked(0.0)
    assert items[:3] == [1, 3, 4] and scores[1] == scores[2]
    items, older_scores = ranked(0.2)
    assert items == [1, 3, 2, 4]
    assert older_scores[3] == pytest.approx(scores[2] - 0.2 * 10, abs=1e-5)
    assert older_scores[1] == pytest.approx(scores[1])  # the newer one keeps its score
