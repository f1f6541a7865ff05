"""Genre/tag/studio closeness between games and histories (``ranking.stages.ContentSimilarity``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
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


#: a larger vocabulary for a library: 0 "Indie", 1 "Action", 2 "RPG", 3 "Atlus", 4 "persona",
#: 5 "Open World", 6 "Racing"
LIBRARY_IDF = np.array([1.0, 1.1, 1.5, 4.0, 5.0, 1.8, 2.5], dtype=np.float32)


#: Atlus and "persona" name a studio and a series; the rest describe a game
LIBRARY_IDENTITY = np.array([False, False, False, True, True, False, False])


def library_similarity(games: list[list[int]], identity: bool = True) -> ContentSimilarity:
    indptr = np.zeros(len(games) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(tokens) for tokens in games])
    indices = np.array([t for tokens in games for t in tokens], dtype=np.int32)
    return ContentSimilarity(
        TokenRows(indptr, indices), LIBRARY_IDF, LIBRARY_IDENTITY if identity else None
    )


#: a library of four open-world action RPGs and one Persona game, then two candidates
LIBRARY_GAMES = [
    [1, 2, 5],  # 0-3: open-world action RPGs
    [1, 2, 5],
    [1, 2, 5],
    [1, 2, 5],
    [2, 3, 4],  # 4: Persona 4 Golden (RPG, Atlus, persona)
    [3, 4],  # 5: Persona 3 Reload: its studio and series only, no tag
    [0, 1],  # 6: an indie action game
    [6],  # 7: a racing game
]


def test_the_closest_game_of_a_library_lifts_its_series() -> None:
    """A profile dilutes one Persona game among four open-world RPGs, and ranks an indie
    action game above Persona 3 Reload; the blend with the closest game puts the series
    first, as a player of Persona 4 Golden expects (every token a description here: the
    comparison by studio and series alone is the next test's)."""
    content = library_similarity(LIBRARY_GAMES, identity=False)
    history = np.arange(5)
    profile = content.profile(history, np.ones(5, dtype=np.float32))
    persona, generic = 5, 6
    by_profile = content.scores(profile, np.array([persona, generic]))
    assert by_profile[0] < by_profile[1]
    blended = content.closeness(profile, history, np.array([persona, generic, 7]))
    assert blended[0] > blended[1] > blended[2] == 0.0
    nearest = content.pairwise(history, np.array([persona]))[:, 0].max()
    np.testing.assert_allclose(blended[0], 0.5 * by_profile[0] + 0.5 * nearest, rtol=1e-6)


def test_a_game_known_by_its_studio_and_series_alone_is_compared_by_them() -> None:
    """Persona 3 Reload has no genre or tag: against Persona 4 Golden (RPG, Atlus, persona)
    it is compared by studio and series, where both agree fully; games that both have tags
    are compared by all their tokens; a game with neither is close to nothing."""
    described = library_similarity([*LIBRARY_GAMES, []], identity=False)
    content = library_similarity([*LIBRARY_GAMES, []])
    assert content.described.tolist() == [True] * 5 + [False, True, True, False]
    persona_4, persona_3, indie = 4, 5, 6
    everything = described.pairwise(np.array([persona_4]), np.array([persona_3]))[0, 0]
    assert everything == pytest.approx(np.sqrt((4.0**2 + 5.0**2) / (1.5**2 + 4.0**2 + 5.0**2)))
    pairs = content.pairwise(np.array([persona_4, 0]), np.array([persona_3, indie, 8]))
    np.testing.assert_allclose(pairs[0, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(pairs[:, 1], described.pairwise([persona_4, 0], [indie])[:, 0])
    assert pairs[1, 0] == 0.0 and pairs[:, 2].tolist() == [0.0, 0.0]
    # against a profile: the profile's own studio and series part
    profile = content.profile(np.array([persona_4]), np.ones(1, dtype=np.float32))
    np.testing.assert_allclose(content.scores(profile, np.array([persona_3])), [1.0], rtol=1e-6)


def test_same_series_finds_the_other_games_of_an_owned_series() -> None:
    content = library_similarity([*LIBRARY_GAMES, [3]])  # 8: another Atlus game, no tag
    history = np.arange(5)
    new_games = np.array([5, 6, 7, 8])
    # Persona 3 Reload's studio and series are Persona 4 Golden's: cosine 1 over them; the
    # other Atlus game shares the studio alone; games without a studio or a name word, none
    assert content.same_series(history, new_games, 4).tolist() == [5, 8]
    assert content.same_series(history, new_games, 1).tolist() == [5]
    assert content.same_series(np.array([7]), new_games, 3).tolist() == []
    assert content.same_series(np.array([], dtype=np.int64), new_games, 3).tolist() == []


def test_same_series_leaves_out_tokens_on_too_many_games(monkeypatch: pytest.MonkeyPatch) -> None:
    import gamerec.ranking.stages as stages

    content = library_similarity([*LIBRARY_GAMES, [3]])
    persona_4, searched = np.array([4]), np.array([5, 8])  # Atlus is on both searched games
    assert content.same_series(persona_4, searched, 2).tolist() == [5, 8]
    # with "rare" meaning on at most one searched game, Atlus makes no candidate
    monkeypatch.setattr(stages, "RARE_TOKEN_GAMES", 1)
    assert content.same_series(persona_4, searched, 2).tolist() == [5]


#: small catalogs over the library's seven tokens
LIBRARIES = st.lists(st.lists(st.integers(0, 6), unique=True, max_size=4), min_size=2, max_size=12)


def token_vector(tokens: list[int], identity_only: bool) -> np.ndarray:
    """A game's idf-weighted tokens as a dense vector (its studio and name tokens alone)."""
    out = np.zeros(len(LIBRARY_IDF))
    for token in tokens:
        if LIBRARY_IDENTITY[token] or not identity_only:
            out[token] = LIBRARY_IDF[token]
    return out


def cosine(x: np.ndarray, y: np.ndarray) -> float:
    lengths = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / lengths) if lengths > 0 else 0.0


@given(LIBRARIES, st.data())
def test_same_series_ranks_by_the_closest_history_game_by_studio_and_name(
    games: list[list[int]], data: st.DataObject
) -> None:
    """Against a brute force: each game's largest cosine with a history game over their
    studio and name tokens (all of them rare among so few games)."""
    content = library_similarity(games)
    n = len(games)
    history = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
    found = content.same_series(np.array(history, dtype=np.int64), np.arange(n), n)

    def best(game: int) -> float:
        mine = token_vector(games[game], identity_only=True)
        theirs = [token_vector(games[h], identity_only=True) for h in history]
        return max((cosine(mine, other) for other in theirs), default=0.0)

    expected = {g for g in range(n) if best(g) > 1e-9}
    assert set(found.tolist()) == expected
    closeness = [best(g) for g in found.tolist()]
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(closeness))


@given(LIBRARIES, st.data())
def test_pairwise_against_a_brute_force_by_what_is_known_of_both(
    games: list[list[int]], data: st.DataObject
) -> None:
    """Each pair's cosine over every token, or over studio and name tokens where one of the
    two has no genre or tag; several lefts in a row (the last one is kept) answer alike."""
    content = library_similarity(games)
    n = len(games)
    indices = st.lists(st.integers(0, n - 1), max_size=n)
    lefts = data.draw(st.lists(indices, min_size=1, max_size=3))
    right = data.draw(indices)

    def described(game: int) -> bool:
        return any(not LIBRARY_IDENTITY[token] for token in games[game])

    def pair(a: int, b: int) -> float:
        only = not (described(a) and described(b))
        return cosine(token_vector(games[a], only), token_vector(games[b], only))

    for left in [*lefts, lefts[0]]:
        pairs = content.pairwise(np.array(left, dtype=np.int64), np.array(right, dtype=np.int64))
        expected = np.array([[pair(a, b) for b in right] for a in left]).reshape(
            len(left), len(right)
        )
        np.testing.assert_allclose(pairs, expected, rtol=1e-5, atol=1e-6)


#: a vocabulary of 60 tokens (every fifth one a studio or name) and catalogs whose games hold
#: from none to 40 of them: the row lengths :meth:`ContentSimilarity.closest` sums in blocks
WIDE_IDF = np.linspace(1.0, 5.0, 60).astype(np.float32)
WIDE_IDENTITY = np.arange(60) % 5 == 0
WIDE_CATALOGS = st.lists(
    st.one_of(
        st.lists(st.integers(0, 59), unique=True, max_size=8),
        st.lists(st.integers(0, 59), unique=True, min_size=20, max_size=40),
    ),
    min_size=2,
    max_size=30,
)


def wide_similarity(games: list[list[int]]) -> ContentSimilarity:
    indptr = np.zeros(len(games) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(tokens) for tokens in games])
    indices = np.array([t for tokens in games for t in tokens], dtype=np.int32)
    return ContentSimilarity(TokenRows(indptr, indices), WIDE_IDF, WIDE_IDENTITY)


def wide_vector(tokens: list[int], identity_only: bool = False) -> np.ndarray:
    out = np.zeros(len(WIDE_IDF))
    for token in tokens:
        if WIDE_IDENTITY[token] or not identity_only:
            out[token] = WIDE_IDF[token]
    return out


@given(WIDE_CATALOGS, st.data())
def test_closest_against_a_brute_force_of_profile_cosines(
    games: list[list[int]], data: st.DataObject
) -> None:
    """The games of highest cosine with a history's profile (with its studio and name part
    for a game that has nothing else), closest first, none with nothing in common; a kept
    (read-only) row set answers the same the second time."""
    content = wide_similarity(games)
    n = len(games)
    history = data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n))
    rows = np.array(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)))
    rows = rows.astype(np.int64)
    rows.setflags(write=False)
    weights = np.array(
        data.draw(st.lists(st.floats(0.5, 3.0), min_size=len(history), max_size=len(history))),
        dtype=np.float32,
    )
    profile = content.profile(np.array(history), weights)
    dense_profile = sum(
        w * wide_vector(games[h]) / max(np.linalg.norm(wide_vector(games[h])), 1e-12)
        for h, w in zip(history, weights, strict=True)
    )
    length = np.linalg.norm(dense_profile)
    np.testing.assert_allclose(
        profile, dense_profile / length if length > 0 else dense_profile, rtol=1e-5, atol=1e-6
    )

    def expected(game: int) -> float:
        described = any(not WIDE_IDENTITY[t] for t in games[game])
        if described:
            return cosine(wide_vector(games[game]), dense_profile)
        identity = np.where(WIDE_IDENTITY, dense_profile, 0.0)
        return cosine(wide_vector(games[game], identity_only=True), identity)

    truth = {int(g): expected(int(g)) for g in rows}
    for _ in range(2):
        found = content.closest(profile, rows, len(rows)).tolist()
        assert set(found) == {g for g, value in truth.items() if value > 1e-6}
        values = [truth[g] for g in found]
        assert all(a >= b - 1e-5 for a, b in itertools.pairwise(values))
        np.testing.assert_allclose(
            content.scores(profile, np.array(found, dtype=np.int64)), values, rtol=1e-4, atol=1e-6
        )


@given(WIDE_CATALOGS, st.data())
def test_closeness_blends_the_profile_and_the_closest_history_game(
    games: list[list[int]], data: st.DataObject
) -> None:
    """:meth:`ContentSimilarity.closeness` (one product over the history's tokens) is half the
    cosine with the profile and half the largest cosine with one history game."""
    content = wide_similarity(games)
    n = len(games)
    history = np.array(
        data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n)),
        dtype=np.int64,
    )
    candidates = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=n)), dtype=np.int64)
    profile = content.profile(history, np.ones(len(history), dtype=np.float32))
    blended = content.closeness(profile, history, candidates)
    expected = 0.5 * content.scores(profile, candidates)
    if len(candidates):
        expected += 0.5 * content.pairwise(history, candidates).max(axis=0)
    np.testing.assert_allclose(blended, expected, rtol=1e-5, atol=1e-6)


def test_equally_close_games_are_taken_in_the_order_of_the_rows_searched() -> None:
    """Where games tie at the cut, the earlier ones in ``rows`` (the catalog's order: most
    owned first) are taken, best first and then in that order, by :meth:`closest` and
    :meth:`same_series` alike, not wherever a partition happens to leave them."""
    # game 0 is the history (a studio and a tag); games 1-300 are copies of it, so each is
    # exactly as close; game 301 has one more tag, so it is less close by its tags and as
    # close by its studio
    games = [[0, 7]] * 301 + [[0, 7, 12]]
    content = wide_similarity(games)
    history = np.array([0], dtype=np.int64)
    rows = np.concatenate([[301], np.random.default_rng(0).permutation(np.arange(1, 301))])
    profile = content.profile(history, np.ones(1, dtype=np.float32))
    assert content.closest(profile, rows, 7).tolist() == rows[1:8].tolist()
    assert content.closest(profile, rows, 301).tolist() == [*rows[1:], 301]
    # by studio and name alone, game 301 is as close as the copies, and searched first
    assert content.same_series(history, rows, 7).tolist() == rows[:7].tolist()
    assert content.same_series(history, rows, 400).tolist() == rows.tolist()
