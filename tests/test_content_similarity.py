"""Genre/tag/studio closeness between games and histories (``ranking.stages.ContentSimilarity``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gamerec.dataio.content import TokenRows
from gamerec.ranking.stages import ContentSimilarity

#: tokens 0 "Roguelike", 1 "Action", 2 "Indie", 3 "Supergiant Games", 4 "RPG"
IDF = np.array([3.0, 1.2, 1.0, 4.0, 2.0], dtype=np.float32)


def similarity(games: list[list[int]]) -> ContentSimilarity:
    indptr = np.zeros(len(games) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(tokens) for tokens in games])
    indices = np.array([t for tokens in games for t in tokens], dtype=np.int32)
    return ContentSimilarity(TokenRows(indptr, indices), IDF)


def test_pairwise_closeness_of_known_games() -> None:
    # Hades, Hades II (the same studio), an RPG with nothing in common, a game with no tokens
    content = similarity([[0, 1, 3], [0, 1, 2, 3], [4], []])
    pairs = content.pairwise(np.array([0, 2, 3]), np.array([1, 0, 2]))
    hades_ii = (3.0**2 + 1.2**2 + 4.0**2) / np.sqrt(
        (3.0**2 + 1.2**2 + 4.0**2) * (3.0**2 + 1.2**2 + 1.0**2 + 4.0**2)
    )
    np.testing.assert_allclose(pairs[0], [hades_ii, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(pairs[1], [0.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(pairs[2], [0.0, 0.0, 0.0])  # no tokens: close to nothing


@given(
    st.lists(st.lists(st.integers(0, 4), unique=True, max_size=5), min_size=2, max_size=8).flatmap(
        lambda games: st.tuples(st.just(games), st.integers(0, len(games) - 1))
    )
)
def test_pairwise_is_the_closeness_of_a_one_game_history(
    drawn: tuple[list[list[int]], int],
) -> None:
    """The cosine of two games is the closeness of one to a history of the other alone."""
    games, one = drawn
    content = similarity(games)
    everyone = np.arange(len(games))
    profile = content.profile(np.array([one]), np.ones(1, dtype=np.float32))
    np.testing.assert_allclose(
        content.pairwise(np.array([one]), everyone)[0],
        content.scores(profile, everyone),
        rtol=1e-5,
        atol=1e-6,
    )
