"""The parts of the ranking policy: the co-play second stage and the places of new games.

The co-play model is EASE's item-item weights ``B`` fit on the training users
(:mod:`gamerec.towers.ease`). A candidate's co-play score is the sum of ``B[j, c]`` over the
games ``j`` a user owns. The final score blends the two stages, each standardised over the
user's candidates: ``alpha * z(two-tower) + (1 - alpha) * z(co-play)``. The candidates are the
union of the two-tower's top games and the co-play model's own top games: a game the two-tower
ranks 201st but the co-play model ranks 3rd is still re-ranked (with the two-tower's top 200
alone the blend trailed EASE).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from gamerec.dataio.content import TokenRows, TokenTable, identity_tokens
from gamerec.dataio.matrix import UserItems
from gamerec.index.reference import best_columns

#: a row whose spread is below this share of its mean is taken as constant (float rounding
#: of equal values leaves a spread of about 1e-8 of them)
_CONSTANT = 1e-6
#: rows of the co-play weights gathered at once when summing histories (a bound on memory)
_GATHER_ROWS = 2048

__all__ = [
    "CoPlay",
    "ContentSimilarity",
    "Editions",
    "blend",
    "interleave",
    "new_game_slots",
    "release_years",
    "years_older",
]

T = TypeVar("T")


def _standardise(values: np.ndarray, where: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's values over their mean and spread (those ``where`` is True, when given),
    and (n_rows,) whether the row's values vary at all (beyond float rounding of a constant:
    a row that does not is all 0)."""
    if where is None:
        mean = values.mean(1, keepdims=True)
        std = values.std(1, keepdims=True)
    else:
        counts = np.maximum(where.sum(1, keepdims=True), 1)
        mean = np.where(where, values, 0.0).sum(1, keepdims=True) / counts
        std = np.sqrt(np.where(where, (values - mean) ** 2, 0.0).sum(1, keepdims=True) / counts)
    varies = std > _CONSTANT * np.abs(mean)
    standard = np.where(varies, (values - mean) / np.where(varies, std, 1.0), 0.0)
    return standard, varies[:, 0]


def blend(
    first_stage: np.ndarray,
    second_stage: np.ndarray,
    alpha: float,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """``alpha * z(first) + (1 - alpha) * z(second)`` over each row's candidates (those
    ``where`` is True, when given: a row's padding must not move its mean and spread). A stage
    whose scores do not vary over a row's candidates says nothing of them, and the other stage
    ranks that row alone, at its full weight: the co-play stage of a history of games nobody in
    the play data owns (without this, the first stage's scores were halved against the genre
    and tag closeness added to them, and the default ranked such histories below the towers
    alone: benchmarks/new_inputs.py, 0.375 against 0.394, now 0.400)."""
    first, first_varies = _standardise(first_stage, where)
    second, second_varies = _standardise(second_stage, where)
    # where neither varies both are 0, and any weight gives 0
    weight = np.where(~second_varies, 1.0, np.where(~first_varies, 0.0, alpha))
    weight = weight.astype(first.dtype)[:, None]
    return weight * first + (1.0 - weight) * second


class CoPlay:
    """The co-play weights, which cover only the games the model was trained on, addressed by
    catalog row: ``rows[i]`` is catalog game ``i``'s row of ``weights`` (-1: none)."""

    def __init__(self, weights: np.ndarray, rows: np.ndarray | None = None):
        self.weights = weights  # (m, m) float32, possibly memory-mapped
        size = weights.shape[0]
        self.rows = (
            np.arange(size, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        )  # (n,)
        #: the catalog game of each weights row
        self.item_of_row = np.full(size, -1, dtype=np.int64)
        known = self.rows >= 0
        self.item_of_row[self.rows[known]] = np.flatnonzero(known)
        self._rows_with_item = np.flatnonzero(self.item_of_row >= 0)

    def block(self, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(history, candidates) weights. A candidate the co-play model does not cover gets
        its history's mean contribution over the other candidates, so its blended score
        rests on the first stage alone."""
        history_rows = self.rows[history]
        candidate_rows = self.rows[candidates]
        owned, known = history_rows >= 0, candidate_rows >= 0
        out = np.zeros((len(history), len(candidates)), dtype=np.float32)
        if owned.any() and known.any():
            # only the (owned x candidates) block, not whole rows of the matrix
            out[np.ix_(owned, known)] = self.weights[
                np.ix_(history_rows[owned], candidate_rows[known])
            ]
            if not known.all():
                out[:, ~known] = out[:, known].mean(1, keepdims=True)
        return out

    def sums(self, histories: UserItems) -> np.ndarray:
        """(n_rows, m) each history's co-play score of every game the model covers (in the
        weights' rows): the sum of its games' rows of the weights."""
        rows = self.rows[histories.indices]
        owner = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
        keep = rows >= 0
        rows, owner = rows[keep], owner[keep]
        size = self.weights.shape[0]
        if len(rows) > size // 4:
            # many histories at once: one product reads the weights once, where gathering
            # their rows would read them several times over
            owned = np.zeros((histories.n_rows, size), dtype=np.float32)
            np.add.at(owned, (owner, rows), 1.0)
            return owned @ np.asarray(self.weights)
        out = np.zeros((histories.n_rows, size), dtype=np.float32)
        for start in range(0, len(rows), _GATHER_ROWS):  # bounded memory for long histories
            part, who = rows[start : start + _GATHER_ROWS], owner[start : start + _GATHER_ROWS]
            firsts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
            out[who[firsts]] += np.add.reduceat(np.asarray(self.weights[part]), firsts, axis=0)
        return out

    def top_of(
        self,
        sums: np.ndarray,
        n: int,
        allowed: np.ndarray,
        blocked: np.ndarray,
        excluded: Sequence[np.ndarray],
    ) -> np.ndarray:
        """(n_rows, n) per row the catalog games of highest co-play score (``sums``, from
        :meth:`sums`) among ``allowed``, none of ``blocked`` ((n_rows, c) catalog rows, -1 for
        none) or ``excluded``, best first; -1 past the eligible ones."""
        n_rows, size = sums.shape
        if n <= 0 or n_rows == 0:
            return np.full((n_rows, 0), -1, dtype=np.int64)
        eligible = np.zeros(size, dtype=bool)
        with_item = self._rows_with_item
        eligible[with_item] = allowed[self.item_of_row[with_item]]
        scores = np.where(eligible[None, :], sums, -np.inf)
        for row in range(n_rows):
            for ids in (blocked[row], excluded[row]):
                covered = self.rows[ids[ids >= 0]]
                scores[row, covered[covered >= 0]] = -np.inf
        n = min(n, size)
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        found = np.isfinite(np.take_along_axis(top_scores, order, axis=1))
        out = np.where(found, self.item_of_row[top], -1)
        for row in np.flatnonzero(self._alike(scores)).tolist():
            out[row] = self._spread_sample(scores[row], n)
        return out

    @staticmethod
    def _alike(scores: np.ndarray) -> np.ndarray:
        """(n_rows,) bool: the rows whose eligible (finite) scores are all one value, as for a
        history the co-play model knows none of."""
        finite = np.isfinite(scores)
        high = np.where(finite, scores, -np.inf).max(axis=1)
        low = np.where(finite, scores, np.inf).min(axis=1)
        return finite.any(axis=1) & (high == low)

    def _spread_sample(self, scores: np.ndarray, n: int) -> np.ndarray:
        """(n,) catalog games: ``n`` of the eligible games of a row that names no best ones,
        evenly spaced in the weights' order (the catalog's: most played first); -1 past them.

        A history the co-play model knows none of scores every game 0, and which games a
        partition of equal values leaves first is an accident; yet these candidates set the
        centre and spread of the trained candidates' scores, which new games are put on the
        scale by. An even sample gives that scale the whole catalog's spread, the same for every
        such history: `similar Hades` answers Hades II, Noita, Dead Cells, Transistor, Bastion,
        Children of Morta, Pyre; the 100 most played in their place gave it Lost Ark and ELDEN
        RING, no candidates at all Lost Ark, Apex Legends and PUBG before Hades II."""
        eligible = np.flatnonzero(np.isfinite(scores))
        taken = min(n, len(eligible))
        out = np.full(n, -1, dtype=np.int64)
        if taken:
            spaced = np.linspace(0, len(eligible) - 1, taken).astype(np.int64)
            out[:taken] = self.item_of_row[eligible[spaced]]
        return out


#: dated games on each side of an undated one whose median year it is given
_YEAR_NEIGHBOURS = 25


def release_years(appids: np.ndarray, years: np.ndarray) -> np.ndarray:
    """(n,) float32 each game's release year, estimated where the catalog has none from the
    games of nearby appids (Steam numbers its store pages in order of creation): the median
    year of the dated games around it in appid order. NaN where there is no appid (a title
    the play data alone knows) or no dated game at all.

    On the bundled catalog half the games (12,317 of 25,385) have a year; estimated this
    way from the others with a twentieth of them hidden at a time, the year is right for
    65% of them and within a year for 92%."""
    appids = np.asarray(appids, dtype=np.int64)
    years = np.asarray(years, dtype=np.float64)
    out = np.where(years > 0, years, np.nan).astype(np.float32)
    dated = (appids >= 0) & (years > 0)
    undated = (appids >= 0) & ~dated
    if not dated.any() or not undated.any():
        return out
    order = np.argsort(appids[dated], kind="stable")
    dated_appids, dated_years = appids[dated][order], years[dated][order]
    width = 2 * _YEAR_NEIGHBOURS + 1
    padded = np.pad(dated_years, _YEAR_NEIGHBOURS, mode="edge")
    medians = np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    # each undated game takes the running median at the dated game just above it in appid
    above = np.minimum(np.searchsorted(dated_appids, appids[undated]), len(dated_appids) - 1)
    out[undated] = medians[above]
    return out


def years_older(years: np.ndarray, histories: UserItems, candidates: np.ndarray) -> np.ndarray:
    """(B, c) how many years each candidate was released before its history's games, on
    average (0 for a newer one, and where either year is unknown). ``years``: (n,) from
    :func:`release_years`; ``candidates``: (B, c) rows, -1 for none."""
    known = np.isfinite(years[histories.indices])
    year_sums = histories.row_sums(np.where(known, years[histories.indices], 0.0))
    counts = histories.row_sums(known.astype(np.float32))
    history_year = np.divide(
        year_sums, counts, out=np.full(len(counts), np.nan, np.float32), where=counts > 0
    )
    candidate_years = np.where(candidates >= 0, years[np.maximum(candidates, 0)], np.nan)
    older = history_year[:, None] - candidate_years
    return np.where(np.isfinite(older), np.maximum(older, 0.0), 0.0).astype(np.float32)


def new_game_slots(k: int, share: float) -> np.ndarray:
    """The places (0-based) of an answer of ``k`` that go to games nobody in the play data owns:
    one each time ``share`` adds up to a whole game (0.2: places 4, 9, 14, ...), so the first K
    places of a longer answer are the answer of K."""
    return np.array(_slots(k, share), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _slots(k: int, share: float) -> tuple[int, ...]:
    # every answer of one size asks this again: computed once per (k, share)
    ranks = np.arange(1, max(k, 0) + 1)
    whole = np.floor(ranks * share + 1e-9)
    return tuple(np.flatnonzero(np.diff(whole, prepend=0.0) > 0).tolist())


def interleave(trained: Sequence[T], new: Sequence[T], k: int, share: float) -> list[T]:
    """An answer of up to ``k``: ``new`` (best first) at :func:`new_game_slots`, ``trained``
    (best first) everywhere else; when one list runs out the other fills its places."""
    slots = set(_slots(k, share))
    answer: list[T] = []
    next_trained = next_new = 0
    for place in range(k):
        take_new = place in slots and next_new < len(new)
        if not take_new and next_trained >= len(trained):
            take_new = next_new < len(new)
        if take_new:
            answer.append(new[next_new])
            next_new += 1
        elif next_trained < len(trained):
            answer.append(trained[next_trained])
            next_trained += 1
        else:
            break
    return answer


class Editions:
    """Which catalog rows are editions of one game, as ranking uses it.

    ``family[i]`` names row ``i``'s game (rows with the same value are editions of one game;
    :mod:`gamerec.dataio.families` makes it the row of the edition to buy). A history's edition
    counts as the edition the model knows best (:attr:`anchor`: the trained member with the most
    players), no other edition of an owned game comes back, and an answer names its game by
    the family's edition to buy (:meth:`shown`) where that one may be recommended.
    """

    def __init__(self, family: np.ndarray, trained: np.ndarray, players: np.ndarray):
        family = np.asarray(family, dtype=np.int64)
        n = len(family)
        _, group = np.unique(family, return_inverse=True)
        sizes = np.bincount(group)
        self.family = family
        self.group = group.astype(np.int64)  # (n,) dense family number
        self.in_family = sizes[group] > 1  # (n,) bool: a game with more than one edition
        # the member the model knows best: trained first, then the most players, then lower row
        strength = np.where(np.asarray(trained, bool), 1.0, 0.0) * 1e12 + np.asarray(players)
        order = np.lexsort((np.arange(n), -strength, self.group))
        first = order[np.r_[True, self.group[order][1:] != self.group[order][:-1]]]
        best_of_group = np.empty(len(sizes), dtype=np.int64)
        best_of_group[self.group[first]] = first
        self.anchor = best_of_group[self.group]  # (n,)
        members = np.flatnonzero(self.in_family)
        by_group = members[np.argsort(self.group[members], kind="stable")]
        starts = np.searchsorted(self.group[by_group], np.arange(len(sizes) + 1))
        self._members, self._starts = by_group, starts

    @property
    def any(self) -> bool:
        return bool(self.in_family.any())

    def fold(self, histories: UserItems) -> UserItems:
        """Each history game as its family's anchor; a game owned twice counts once, with the
        larger playtime."""
        if not self.any or histories.nnz == 0:
            return histories
        rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
        items = self.anchor[histories.indices]
        order = np.lexsort((-histories.values, items, rows))
        keep = np.r_[
            True, (rows[order][1:] != rows[order][:-1]) | (items[order][1:] != items[order][:-1])
        ]
        chosen = order[keep]
        return UserItems.from_pairs(
            rows[chosen],
            items[chosen],
            histories.values[chosen],
            histories.n_rows,
            histories.n_items,
        )

    def expand(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` and every other edition of their games."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.any or len(rows) == 0:
            return rows
        grouped = rows[self.in_family[rows]]
        if len(grouped) == 0:
            return rows
        groups = np.unique(self.group[grouped])
        extra = np.concatenate(
            [self._members[self._starts[g] : self._starts[g + 1]] for g in groups]
        )
        return np.unique(np.concatenate([rows, extra]))

    def as_owned(self, supporters: np.ndarray, histories: UserItems) -> np.ndarray:
        """(B, k) ``supporters`` (history games as :meth:`fold` made them, -1 for none) named
        by the edition each history holds: an owner of Rebirth played Rebirth, not the
        original the model knows; the most played where a history holds several."""
        out = np.asarray(supporters, dtype=np.int64).copy()
        if not self.any:
            return out
        for row in range(len(out)):
            named = out[row] >= 0
            if not named.any():
                continue
            start, end = histories.indptr[row], histories.indptr[row + 1]
            owned, minutes = histories.indices[start:end], histories.values[start:end]
            by_playtime = np.argsort(minutes, kind="stable")  # the most played written last
            ordered = owned[by_playtime]
            most_played = dict(zip(self.group[ordered].tolist(), ordered.tolist(), strict=True))
            held = set(owned.tolist())
            out[row, named] = [
                game if game in held else most_played.get(group, game)
                for game, group in zip(
                    out[row, named].tolist(), self.group[out[row, named]].tolist(), strict=True
                )
            ]
        return out

    def shown(self, rows: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """The row an answer names for each of ``rows``: the family's edition to buy when it
        is a row of this catalog that may be recommended, else the row itself."""
        rows = np.asarray(rows, dtype=np.int64)
        named = self.family[np.maximum(rows, 0)]
        usable = (rows >= 0) & (named < len(self.family))
        usable[usable] &= allowed[named[usable]]
        return np.where(usable, named, rows)


#: the share of a game's closeness to a history that is its closeness to the history's closest
#: game (the rest: to the whole history's profile)
NEAREST_SHARE = 0.5
#: a studio or name token on more of the searched games than this makes no candidate
RARE_TOKEN_GAMES = 500
#: the bounds of the token counts of the rows :meth:`ContentSimilarity.closest` sums together
_BLOCK_LENGTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 1 << 62)
#: rows of about the same number of tokens: (positions (m,), tokens (m, w), weights (m, w))
_Block = tuple[np.ndarray, np.ndarray, np.ndarray]


class ContentSimilarity:
    """How close a game is to a history in genres, tags, studios and the start of its name:
    the cosine of their idf-weighted token vectors (:mod:`gamerec.dataio.content`; rare tokens
    such as "Roguelike", a studio or "persona" say more than "Indie" or "Action").

    :meth:`closeness` blends two cosines: with the history's profile (what the player's games
    have in common) and with the history's closest game (what one of them shares with it). A
    profile alone dilutes a series among a large library: for a 90-game library holding three
    Persona games, Persona 3 Reload ranked 8,064th of 21,257 new games by the profile; its
    closest game, Persona 4 Golden, shares its studio, publisher and series. Games nobody in the
    play data owns have tokens too, so a history of them counts in full here. Rows hold a
    handful of tokens each and are kept sparse: a dense pass over 20,000 games costs tens of
    milliseconds."""

    def __init__(self, rows: TokenRows, idf: np.ndarray, identity: np.ndarray | None = None):
        self.rows = rows
        self.idf = np.asarray(idf, dtype=np.float32)  # (T,)
        #: (T,) bool: the tokens that name a studio or a series (none: every token describes)
        self.identity = (
            np.zeros(len(self.idf), dtype=bool)
            if identity is None
            else np.asarray(identity, dtype=bool)
        )
        weights = self.idf[rows.indices] ** 2
        self.norms = self._row_sums(weights)  # (n,) each game's idf-weighted token vector's length
        self.identity_norms = self._row_sums(np.where(self.identity[rows.indices], weights, 0.0))
        #: (n,) bool: the games with a genre or a tag (most games nobody in the play data owns
        #: have neither: their studio and name are all that is known of them)
        self.described = self._row_sums((~self.identity[rows.indices]).astype(np.float32)) > 0
        self._kept: dict[int, tuple[np.ndarray, list[_Block], np.ndarray]] = {}
        self._kept_postings: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}
        self._last_left: tuple[bytes, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def of_table(cls, rows: TokenRows, table: TokenTable) -> ContentSimilarity:
        """Closeness over ``rows``, numbered by ``table``, its studio and series tokens known
        as such."""
        return cls(rows, table.idf, identity_tokens(table.tokens))

    def _row_sums(self, values: np.ndarray) -> np.ndarray:
        """(n,) the square root of each row's sum of ``values`` (one per token entry)."""
        out = np.zeros(self.rows.n_rows, dtype=np.float32)
        present = np.flatnonzero(np.diff(self.rows.indptr) > 0)
        if len(present):
            out[present] = np.sqrt(np.add.reduceat(values, self.rows.indptr[present]))
        return out

    def _identity_length(self, profile: np.ndarray) -> float:
        """The length of a (unit) profile's studio and series part: what a game known by
        those alone is compared with."""
        part = profile[self.identity]
        return float(np.sqrt(part @ part))

    def profile(self, history: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(T,) the history's weighted token profile (each game's unit vector, weighted),
        idf-weighted and of unit length; 0 when no history game has a token."""
        history = np.asarray(history, dtype=np.int64)
        held = self.rows.take(history)
        norms = self.norms[history]
        per_game = np.divide(
            np.asarray(weights, dtype=np.float32),
            norms,
            out=np.zeros(len(history), dtype=np.float32),
            where=norms > 0,
        )
        entries = np.repeat(per_game, np.diff(held.indptr)) * self.idf[held.indices]
        profile = np.bincount(held.indices, weights=entries, minlength=len(self.idf)).astype(
            np.float32
        )
        norm = float(np.sqrt(profile @ profile))
        return profile / norm if norm > 0 else profile

    def scores(self, profile: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(c,) cosine of ``profile`` with each candidate's token vector (with the profile's
        studio and series part alone for a game known by nothing else)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        out = self._scores(profile, self.rows.take(candidates), self.norms[candidates])
        return self._by_what_is_known(out, profile, self.described[candidates])

    def _by_what_is_known(
        self, cosines: np.ndarray, profile: np.ndarray, described: np.ndarray
    ) -> np.ndarray:
        """``cosines`` with a (unit) profile, those of undescribed games turned into their
        cosine with the profile's studio and series part (their only non-zero terms)."""
        if described.all():
            return cosines
        length = self._identity_length(profile)
        if length <= 0:
            return cosines
        return np.where(described, cosines, np.minimum(cosines / length, 1.0)).astype(np.float32)

    def closeness(
        self, profile: np.ndarray, history: np.ndarray, candidates: np.ndarray
    ) -> np.ndarray:
        """(c,) each candidate's closeness to a history (``profile``, its :meth:`profile`,
        and its games' rows): the cosine with the profile and the largest with one of its
        games, blended by :data:`NEAREST_SHARE`."""
        candidates = np.asarray(candidates, dtype=np.int64)
        history = np.asarray(history, dtype=np.int64)
        if not len(history) or not len(candidates):
            return (1.0 - NEAREST_SHARE) * self.scores(profile, candidates)
        # the profile is a sum of the history's rows, so it lives on the history's tokens: one
        # product with the candidates' rows over those tokens gives both cosines
        vocabulary, position, left_dense = self._dense_left(history)
        right_dense = self._dense_right(position, len(vocabulary), candidates)
        products = np.vstack([left_dense, profile[vocabulary][None]]) @ right_dense.T
        to_profile = products[-1] / np.maximum(self.norms[candidates], 1e-12)
        to_profile = self._by_what_is_known(to_profile, profile, self.described[candidates])
        nearest = self._cosines(products[:-1], history, candidates).max(axis=0)
        return ((1.0 - NEAREST_SHARE) * to_profile + NEAREST_SHARE * nearest).astype(np.float32)

    def batch_closeness(
        self, profiles: np.ndarray, histories: UserItems, candidates: np.ndarray
    ) -> np.ndarray:
        """(B, c) :meth:`closeness` of each row's candidates ((B, c) catalog rows; -1 is 0)."""
        out = np.zeros(candidates.shape, dtype=np.float32)
        for row in range(len(candidates)):
            found = candidates[row] >= 0
            out[row, found] = self.closeness(
                profiles[row], histories.row(row), candidates[row][found]
            )
        return out

    def same_series(self, history: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
        """The (at most) ``n`` of ``rows`` closest to one of a history's games by their studios
        and the starts of their names alone (the cosine over those tokens, through the rare
        ones: on at most :data:`RARE_TOKEN_GAMES` of ``rows``), closest first: the other games
        of a series the player owns, which a profile dilutes among a large library and which
        often have no genre or tag to be found by (a kept, read-only row set is indexed once).
        Equally close games come in the order of ``rows`` (the catalog's: most owned first).
        """
        starts, owners = self._postings(rows)
        history = np.asarray(history, dtype=np.int64)
        held = self.rows.take(history)
        entries = held.indices
        which = np.repeat(np.arange(len(history)), np.diff(held.indptr))
        lengths = starts[entries + 1] - starts[entries]
        entries, which, lengths = entries[lengths > 0], which[lengths > 0], lengths[lengths > 0]
        if not len(entries) or n <= 0:
            return np.empty(0, dtype=np.int64)
        gather = np.repeat(starts[entries] - np.cumsum(lengths) + lengths, lengths) + np.arange(
            int(lengths.sum())
        )
        positions = owners[gather]
        pairs, inverse = np.unique(
            np.repeat(which, lengths) * len(rows) + positions, return_inverse=True
        )
        shared = np.bincount(inverse, weights=np.repeat(self.idf[entries] ** 2, lengths))
        game, position = pairs // len(rows), pairs % len(rows)
        lengths_of_pairs = (
            self.identity_norms[history[game]].astype(np.float64)
            * self.identity_norms[np.asarray(rows)[position]]
        )
        cosines = shared / np.maximum(lengths_of_pairs, 1e-12)
        best = np.zeros(len(rows))
        np.maximum.at(best, position, cosines)
        found = np.flatnonzero(best > 0)  # few: the games sharing a rare studio or name token
        if n <= 0 or not len(found):
            return np.empty(0, dtype=np.int64)
        order = np.lexsort((found, -best[found]))[:n]  # ties to the earlier row
        return np.asarray(rows)[found[order]]

    def _postings(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each studio or name token, the positions in ``rows`` of the games holding it,
        rare tokens only: (starts (T + 1,), positions), kept for a kept (read-only) row set."""
        kept = self._kept_postings.get(id(rows))
        if kept is not None and kept[0] is rows:
            return kept[1]
        subset = self.rows.take(rows)
        owners = np.repeat(np.arange(subset.n_rows), np.diff(subset.indptr))
        counts = np.bincount(subset.indices, minlength=len(self.idf))
        rare = (counts[subset.indices] <= RARE_TOKEN_GAMES) & self.identity[subset.indices]
        tokens, owners = subset.indices[rare], owners[rare]
        order = np.argsort(tokens, kind="stable")
        starts = np.zeros(len(self.idf) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tokens, minlength=len(self.idf)), out=starts[1:])
        postings = (starts, owners[order])
        if not rows.flags.writeable and len(self._kept_postings) < 16:
            self._kept_postings[id(rows)] = (rows, postings)
        return postings

    def closest(self, profile: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
        """The (at most) ``n`` of ``rows`` closest to ``profile``, closest first (equally close
        ones in the order of ``rows``), none with nothing in common (a kept, read-only row set
        is gathered and weighted once)."""
        kept = self._kept.get(id(rows))
        if kept is not None and kept[0] is rows:
            _, blocks, undescribed = kept
        else:
            blocks, undescribed = self._weighted(rows), np.flatnonzero(~self.described[rows])
            if not rows.flags.writeable and len(self._kept) < 16:
                self._kept[id(rows)] = (rows, blocks, undescribed)
        closeness = np.zeros(len(rows), dtype=np.float32)
        for positions, tokens, weights in blocks:
            closeness[positions] = np.einsum("ij,ij->i", np.take(profile, tokens), weights)
        if len(undescribed):
            # as :meth:`_by_what_is_known`, on the undescribed rows alone
            length = self._identity_length(profile)
            if length > 0:
                closeness[undescribed] = np.minimum(closeness[undescribed] / length, 1.0)
        # about half the rows share nothing with the profile: a partition of the others
        # costs half of an argpartition of every row (0.12 against 0.25 ms on the bundled
        # catalog's 21,000 new games), and equal values go in the order of ``rows``
        found = np.flatnonzero(closeness > 0)
        if n <= 0 or not len(found):
            return np.empty(0, dtype=np.int64)
        return rows[found[best_columns(closeness[found][None], n)[1][0]]]

    def pairwise(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(len(left), len(right)) the cosine of each pair of games' token vectors, compared
        by what is known of both: by their studios and series alone where one of them has no
        genre or tag (Persona 3 Reload, known by its studio, publisher and name, is close to
        Persona 4 Golden, not far from it for the twenty tags it lacks)."""
        left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
        vocabulary, position, left_dense = self._dense_left(left)
        products = left_dense @ self._dense_right(position, len(vocabulary), right).T
        return self._cosines(products, left, right)

    def _dense_right(self, position: np.ndarray, width: int, right: np.ndarray) -> np.ndarray:
        """(len(right), width) the ``right`` games as dense rows over the left games' own
        tokens (``position``: each token's column, -1 for none), their other tokens dropped:
        they add nothing to a product with the left games, whatever the vocabulary's size."""
        right_rows = self.rows.take(right)
        right_dense = np.zeros((len(right), width), dtype=np.float32)
        owner = np.repeat(np.arange(len(right)), np.diff(right_rows.indptr))
        columns = position[right_rows.indices]
        shared = columns >= 0
        right_dense[owner[shared], columns[shared]] = self.idf[right_rows.indices[shared]]
        return right_dense

    def _cosines(self, products: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """:meth:`pairwise` from the pairs' token-vector products."""
        cosines = products / np.maximum(np.outer(self.norms[left], self.norms[right]), 1e-12)
        both = self.described[left][:, None] & self.described[right][None, :]
        if both.all():
            return cosines.astype(np.float32)
        # an undescribed game has identity tokens only: the products are already theirs
        identity = np.outer(self.identity_norms[left], self.identity_norms[right])
        by_identity = np.where(identity > 0, products / np.maximum(identity, 1e-12), 0.0)
        return np.where(both, cosines, np.minimum(by_identity, 1.0)).astype(np.float32)

    def _dense_left(self, left: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For :meth:`pairwise`: the ``left`` games' own tokens, each token's column among them
        (-1: none of theirs), and the left games as dense rows over those columns. The last one
        is kept: a request compares its history with its trained candidates, its new ones and
        its answers."""
        key, last = left.tobytes(), self._last_left  # one read: a server shares this object
        if last is not None and last[0] == key:
            return last[1], last[2], last[3]
        left_rows = self.rows.take(left)
        vocabulary = np.unique(left_rows.indices)
        position = np.full(len(self.idf), -1, dtype=np.int64)
        position[vocabulary] = np.arange(len(vocabulary))
        dense = np.zeros((len(left), len(vocabulary)), dtype=np.float32)
        owner = np.repeat(np.arange(len(left)), np.diff(left_rows.indptr))
        dense[owner, position[left_rows.indices]] = self.idf[left_rows.indices]
        self._last_left = (key, vocabulary, position, dense)
        return vocabulary, position, dense

    def _weighted(self, rows: np.ndarray) -> list[_Block]:
        """``rows``' tokens with each token's idf over its row's norm, what :meth:`closest`
        multiplies a profile by: in blocks of rows of about the same number of tokens, each
        (positions in ``rows``, (m, width) tokens, (m, width) weights), short rows padded
        with weight 0. A sum over a block's rows is one call, where a sum per row of 20,000
        rows was the larger part of a request."""
        subset = self.rows.take(rows)
        lengths = np.diff(subset.indptr)
        weights = (
            self.idf[subset.indices] / np.repeat(np.maximum(self.norms[rows], 1e-12), lengths)
        ).astype(np.float32)
        blocks = []
        for low, high in itertools.pairwise(_BLOCK_LENGTHS):
            positions = np.flatnonzero((lengths >= low) & (lengths < high))
            if not len(positions):
                continue
            width = int(lengths[positions].max())
            entry = subset.indptr[positions][:, None] + np.arange(width)[None, :]
            inside = np.arange(width)[None, :] < lengths[positions][:, None]
            entry = np.where(inside, entry, 0)
            blocks.append(
                (
                    positions,
                    np.where(inside, subset.indices[entry], 0),
                    np.where(inside, weights[entry], 0.0).astype(np.float32),
                )
            )
        return blocks

    def _scores(self, profile: np.ndarray, subset: TokenRows, norms: np.ndarray) -> np.ndarray:
        products = profile[subset.indices] * self.idf[subset.indices]
        out = np.zeros(subset.n_rows, dtype=np.float32)
        present = np.flatnonzero(np.diff(subset.indptr) > 0)
        if len(present):
            sums = np.add.reduceat(products, subset.indptr[present])
            out[present] = sums / np.maximum(norms[present], 1e-12)
        return out
