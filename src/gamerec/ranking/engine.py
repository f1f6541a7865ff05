"""The one ranking engine: histories in, ranked games out (numpy only, batch-first).

``gamerec recommend`` (one request is a batch of one), ``recommend --all``, ``similar``, the
re-ranker's tuning at ``gamerec train`` and every evaluation protocol (P-SG, P-LOO, P-COLD) rank
through :meth:`RankingEngine.rank`, so what is evaluated is what is served. The policy:

1. editions (:class:`~gamerec.ranking.stages.Editions`): an owned edition counts as the
   edition the model knows best, no edition of an owned game may come back, and a new
   edition of a game the model knows is ranked as that game, never as a new game;
2. the user tower embeds each history (:class:`~gamerec.ranking.user_tower.NumpyUserTower`);
3. first stage: the index's best games among those the model was trained on, the allowed ones
   only, never an excluded (owned) one;
4. second stage, when the model has a co-play re-ranker (:mod:`gamerec.ranking.stages`):
   those candidates and the co-play model's own best ones, re-ordered by a blend of the two,
   each standardised over the candidates; without one, the first stage standardised alike;
5. games nobody in the play data owns (their vectors come from the content mapping) compete
   on merit: their first-stage score, standardised against the trained candidates', is put on
   the trained games' scale by the model's :class:`~gamerec.artifacts.model.NewGamePolicy`,
   and they may be given a least share of the places (``new_games_share``); a model without
   that policy gives them the fixed places :func:`~gamerec.ranking.stages.new_game_slots` says;
6. one answer per game, named by the edition to buy;
7. for each answer, the history game that most supports it (``explain``): the one whose
   co-play weight adds most to it, else the one closest to it in the model's space.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gamerec.artifacts.index import CatalogVectors
from gamerec.artifacts.model import (
    ModelArtifacts,
    ModelDescription,
    NewGamePolicy,
    RerankPolicy,
)
from gamerec.dataio.content import TokenRows, identity_tokens
from gamerec.dataio.matrix import UserItems
from gamerec.index.reference import ExactIndex, VectorIndex
from gamerec.ranking.stages import (
    ContentSimilarity,
    CoPlay,
    Editions,
    blend,
    interleave,
    new_game_slots,
    years_older,
)
from gamerec.ranking.user_tower import NumpyUserTower, history_weights

__all__ = ["Ranked", "Ranker", "RankingEngine", "RankingPolicy"]

#: exact sub-indexes kept per engine (one per distinct filter: trained or new x genres)
_MAX_SUBSETS = 64
#: first-stage candidates the trained games' scores are standardised over (and re-ranked)
CANDIDATES = 200
#: histories ranked together (bounds the memory of their candidates' vectors)
_CHUNK = 64


@dataclass(frozen=True)
class RankingPolicy:
    """How an engine ranks: the model's second stage (None: the first stage alone), how games
    nobody in the play data owns compete (None: at fixed places), and the share of each
    answer's places they take: their least share on merit, their whole share at fixed places."""

    rerank: RerankPolicy | None = None
    new_games: NewGamePolicy | None = None
    new_games_share: float = 0.2
    #: the weight of genre/tag closeness (:class:`ContentSimilarity`) in the final score
    content_weight: float = 0.0
    #: new games closest in genres and tags added to the new candidates of each request
    content_candidates: int = 50

    @property
    def uses_content(self) -> bool:
        """Whether genre/tag closeness weighs in, for trained or new games."""
        return self.content_weight > 0 or (
            self.new_games is not None and self.new_games.content > 0
        )


@dataclass
class _Stage:
    """One stage's lists, best first: (B, width) rows, scores, supporting games, and per row
    the centre and spread of the trained candidates' first-stage scores."""

    items: np.ndarray
    scores: np.ndarray
    because: np.ndarray
    new: np.ndarray
    centre: np.ndarray  # (B,)
    spread: np.ndarray  # (B,)
    #: per row, the trained candidates' content closeness: centre and spread, and the profile
    content_centre: np.ndarray | None = None
    content_spread: np.ndarray | None = None
    profiles: np.ndarray | None = None  # (B, T)


def _fingerprint(batch: UserItems) -> bytes:
    """A digest of a batch's histories: the evaluation slices a new object out of the same
    users for every method it ranks, so a kept stage is found by what the batch holds."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (batch.indptr, batch.indices, batch.values):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


class _StageMemo:
    """The last batch's trained stage, and its new-game candidates, for engines that differ in
    their new-game policy alone: found again by a key that holds a digest of the batch's
    histories (see :func:`_fingerprint`)."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: tuple[np.ndarray, _Stage] | None = None
        #: the same stage's new-game candidates: (key, (scores, rows, content closeness))
        self._new: tuple[tuple[Any, ...], tuple[np.ndarray, ...]] | None = None

    def get(self, key: tuple[Any, ...]) -> tuple[np.ndarray, _Stage] | None:
        if self._key != key or self._value is None:
            return None
        queries, stage = self._value
        return queries.copy(), copy.deepcopy(stage)  # later stages write into theirs

    def put(self, key: tuple[Any, ...], queries: np.ndarray, stage: _Stage) -> None:
        self._key = key
        self._value = (queries.copy(), copy.deepcopy(stage))
        self._new = None

    def get_new(
        self, stage_key: tuple[Any, ...], key: tuple[Any, ...]
    ) -> tuple[np.ndarray, ...] | None:
        """The new-game candidates kept for the trained stage of ``stage_key`` and ``key``."""
        if self._key != stage_key or self._new is None or self._new[0] != key:
            return None
        return tuple(array.copy() for array in self._new[1])

    def put_new(
        self, stage_key: tuple[Any, ...], key: tuple[Any, ...], value: tuple[np.ndarray, ...]
    ) -> None:
        if self._key == stage_key:
            self._new = (key, tuple(array.copy() for array in value))


@dataclass(frozen=True)
class Ranked:
    """A batch's answers, best first: row ``r`` answers the ``r``-th history."""

    items: np.ndarray  # (B, k) int64 catalog rows; -1 past the end of a short list
    scores: np.ndarray  # (B, k) float32; -inf past the end
    new: np.ndarray  # (B, k) bool: a game nobody in the play data owns
    #: (B, k) int64: the history game whose co-play weight adds most to each answer (-1: none),
    #: or with ``explain`` the one that most supports it by co-play or closeness in the model
    because: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.items.shape[0])


class Ranker(Protocol):
    """What the evaluation asks of a ranking method that makes its own lists."""

    name: str

    def rank_lists(self, histories: UserItems, k: int, allowed: np.ndarray) -> np.ndarray:
        """(n_rows, k) catalog rows, best first, -1 past the end; never a history game."""
        ...


def _policy(description: ModelDescription, reranks: bool, new_games_share: float) -> RankingPolicy:
    """The policy a model's description asks for (its second stage only with ``reranks``)."""
    return RankingPolicy(
        rerank=description.rerank if reranks else None,
        new_games=description.new_games,
        new_games_share=new_games_share,
        content_weight=description.content_weight,
    )


def _content(description: ModelDescription, rows: TokenRows | None) -> ContentSimilarity | None:
    """Content closeness over the engine's games (``rows``: their content tokens, numbered by
    the model's token table), when the model has a table."""
    idf = description.content_idf
    if rows is None or not idf or len(idf) != len(description.content_tokens):
        return None
    identity = identity_tokens(description.content_tokens)
    return ContentSimilarity(rows, np.asarray(idf, np.float32), identity)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Each row over its length (a zero row stays zero)."""
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(lengths, 1e-12)


def _merged(trained: _Stage, new_items: np.ndarray, new_scores: np.ndarray, k: int) -> _Stage:
    """Both lists of every row merged by score (a trained game first on a tie), first ``k``."""
    items = np.concatenate([trained.items, new_items], axis=1)
    scores = np.concatenate([trained.scores, new_scores], axis=1)
    is_new = np.concatenate(
        [np.zeros(trained.items.shape, bool), np.ones(new_items.shape, bool)], axis=1
    )
    because = np.concatenate([trained.because, np.full(new_items.shape, -1, np.int64)], axis=1)
    scores = np.where(items >= 0, scores, -np.inf)
    order = np.lexsort((is_new, -scores), axis=1)[:, :k]
    merged = _Stage(
        np.take_along_axis(items, order, 1),
        np.take_along_axis(scores, order, 1),
        np.take_along_axis(because, order, 1),
        np.take_along_axis(is_new, order, 1),
        trained.centre,
        trained.spread,
    )
    merged.items[~np.isfinite(merged.scores)] = -1
    if merged.items.shape[1] < k:
        return _Stage(
            _pad(merged.items, k, -1),
            _pad(merged.scores, k, -np.inf),
            _pad(merged.because, k, -1),
            _pad(merged.new.astype(np.int8), k, 0).astype(bool),
            trained.centre,
            trained.spread,
        )
    return merged


def _on_merit(
    trained: list[tuple[int, float, int, bool]],
    new: list[tuple[int, float, int, bool]],
    k: int,
    share: float,
) -> list[tuple[int, float, int, bool]]:
    """Both lists (best first) merged by score, a trained game first on a tie, except that the
    answer holds at least one new game at each place :func:`new_game_slots` gives ``share``
    (when new ones are left): the least share of places new games get. Each place depends on
    the places before it only, so the first K of a longer answer are the answer of K."""
    slots = set(new_game_slots(k, share).tolist()) if share > 0 else set()
    answer: list[tuple[int, float, int, bool]] = []
    next_trained = next_new = placed_new = owed = 0
    for place in range(k):
        if place in slots:
            owed += 1
        have_trained, have_new = next_trained < len(trained), next_new < len(new)
        if not (have_trained or have_new):
            break
        take_new = have_new and (
            not have_trained or placed_new < owed or new[next_new][1] > trained[next_trained][1]
        )
        if take_new:
            answer.append(new[next_new])
            next_new += 1
            placed_new += 1
        else:
            answer.append(trained[next_trained])
            next_trained += 1
    return answer


def _centre_and_spread(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the mean and standard deviation of the ``valid`` values (spread 1 where they
    do not vary)."""
    counts = np.maximum(valid.sum(1), 1)
    centre = np.where(valid, values, 0.0).sum(1) / counts
    spread = np.sqrt(np.where(valid, (values - centre[:, None]) ** 2, 0.0).sum(1) / counts)
    return centre.astype(np.float32), np.where(spread > 0, spread, 1.0).astype(np.float32)


def _pad(array: np.ndarray, width: int, fill: float) -> np.ndarray:
    """``array`` (B, <= width) widened to (B, width) with ``fill``."""
    missing = width - array.shape[1]
    return np.pad(array, ((0, 0), (0, missing)), constant_values=fill) if missing > 0 else array


class RankingEngine:
    """Ranks the games of one catalog (``item_vectors``, searched through ``index``).

    ``trained`` flags the games the model was trained on; the others' vectors come from the
    content mapping. ``coplay`` covers trained games only and is used when ``policy.rerank``
    says so. ``editions`` groups the editions of one game (None: every row is its own game).
    ``release_years`` ((n,) float, NaN unknown: :func:`~gamerec.ranking.stages.release_years`)
    lets the new-game policy weigh how much older than a history a new game is (None: it
    cannot, and does not).
    """

    def __init__(
        self,
        user_tower: NumpyUserTower,
        item_vectors: np.ndarray,
        index: VectorIndex,
        trained: np.ndarray,
        policy: RankingPolicy,
        coplay: CoPlay | None = None,
        name: str = "two-tower",
        editions: Editions | None = None,
        content: ContentSimilarity | None = None,
        release_years: np.ndarray | None = None,
    ):
        self.user_tower = user_tower
        self.item_vectors = item_vectors  # (n, D)
        self.index = index
        self.trained = np.asarray(trained, dtype=bool)  # (n,)
        self.policy = policy
        self.coplay = coplay if policy.rerank is not None else None
        self.name = name
        self.editions = editions if editions is not None and editions.any else None
        self.content = content if policy.uses_content else None
        self.release_years = release_years
        self._subsets: dict[bytes, tuple[np.ndarray, ExactIndex]] = {}
        self._searched_once: set[bytes] = set()
        #: id of a kept (read-only) mask -> (the mask, its sub-index): no hashing next time
        self._subset_of_mask: dict[int, tuple[np.ndarray, tuple[np.ndarray, ExactIndex]]] = {}
        self._parts_of_mask: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._rows_of_mask: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: the last batch's trained stage, shared by the engines :meth:`with_policy` makes
        self._stage_memo: _StageMemo | None = None

    @classmethod
    def from_model(
        cls,
        model: ModelArtifacts,
        *,
        rerank: bool = True,
        new_games_share: float = 0.0,
        editions: Editions | None = None,
        content_rows: TokenRows | None = None,
    ) -> RankingEngine:
        """The engine over the games a model was trained on, as ``model/`` holds them (exact
        search over its item embeddings; the second stage when ``rerank`` and the model has
        one). What P-SG and P-LOO evaluate: the games with players of ``processed/``.
        ``content_rows``: those games' content tokens (for genre/tag/studio closeness)."""
        description = model.description
        coplay = (
            CoPlay(model.coplay)
            if rerank and model.coplay is not None and description.rerank is not None
            else None
        )
        embeddings = model.item_embeddings
        tower = NumpyUserTower(model.user_tower, description.playtime_weight)
        return cls(
            tower,
            embeddings,
            ExactIndex(embeddings),
            np.ones(len(embeddings), dtype=bool),
            _policy(description, coplay is not None, new_games_share),
            coplay,
            name="two-tower + re-rank" if coplay is not None else "two-tower",
            editions=editions,
            content=_content(description, content_rows),
        )

    @classmethod
    def over_catalog(
        cls,
        model: ModelArtifacts,
        vectors: CatalogVectors,
        index: VectorIndex,
        *,
        rerank: bool = True,
        new_games_share: float = 0.2,
        editions: Editions | None = None,
        release_years: np.ndarray | None = None,
    ) -> RankingEngine:
        """The engine over every game of a catalog, as ``gamerec index`` embedded it
        (``vectors``: trained games keep the model's vectors, the others are mapped) and
        ``index`` searches it: what ``recommend`` ranks with, and P-COLD's evaluation.
        ``release_years``: the catalog's (see :class:`RankingEngine`)."""
        description = model.description
        coplay = (
            CoPlay(model.coplay, vectors.model_rows)
            if rerank and model.coplay is not None and description.rerank is not None
            else None
        )
        tower = NumpyUserTower(
            {
                **model.user_tower,
                "history": vectors.history,
                "token_matrix": vectors.token_matrix,
            },
            description.playtime_weight,
        )
        return cls(
            tower,
            vectors.item_vectors,
            index,
            np.asarray(vectors.model_rows) >= 0,
            _policy(description, coplay is not None, new_games_share),
            coplay,
            name="two-tower + re-rank" if coplay is not None else "two-tower",
            editions=editions,
            content=_content(
                description,
                None if vectors.content is None else TokenRows(*vectors.content),
            ),
            release_years=release_years,
        )

    def with_policy(self, policy: RankingPolicy, share_stages: bool = True) -> RankingEngine:
        """This engine with another policy. Engines made this way share their last trained
        stage (unless ``share_stages`` is False): trying new-game policies on one batch ranks
        its trained games once."""
        other = copy.copy(self)
        other.policy = policy
        if policy.uses_content and self.content is None:
            raise ValueError("with_policy: this engine was made without content closeness")
        other.content = self.content if policy.uses_content else None
        if not share_stages:
            other._stage_memo = None
            return other
        if self._stage_memo is None:
            self._stage_memo = _StageMemo()
        other._stage_memo = self._stage_memo
        return other

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    @property
    def reranks(self) -> bool:
        return self.coplay is not None

    # ------------------------------------------------------------------ the policy
    def rank(
        self,
        histories: UserItems,
        k: int,
        allowed: np.ndarray,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        preferences: np.ndarray | None = None,
        queries: np.ndarray | None = None,
        explain: bool = False,
    ) -> Ranked:
        """The top ``k`` of each history among ``allowed`` ((n,) bool), best first.

        ``exclude`` lists, per row, catalog rows that must not come back (default: the
        history's own games), with every other edition of them. ``preferences``
        ((B, n_tokens)) are stated tastes added to the user tower's input; ``queries``
        ((B, D)) replace the user tower's vectors (a game's own vector, for ``similar``).
        ``explain`` adds each answer's supporting game.
        """
        given = histories
        excluded = (
            [histories.row(r) for r in range(histories.n_rows)]
            if exclude is None
            else [np.asarray(e, dtype=np.int64) for e in exclude]
        )
        width = k
        if self.editions is not None:
            histories = self.editions.fold(histories)
            excluded = [self.editions.expand(rows) for rows in excluded]
            width = 2 * k  # room for the editions that fold into one answer
        trained_allowed, new_allowed = self._parts(allowed)
        memo_key = None
        if self._stage_memo is not None and exclude is None and queries is None:
            memo_key = (
                _fingerprint(given),
                width,
                trained_allowed.tobytes(),
                None
                if preferences is None
                else hashlib.blake2b(np.ascontiguousarray(preferences).tobytes()).digest(),
                explain,
                self.policy.rerank,
                self.policy.content_weight,
                self.content is None,
            )
        hit = None if memo_key is None else self._stage_memo.get(memo_key)  # type: ignore[union-attr]
        if hit is not None:
            queries, stage = hit
        else:
            if queries is None:
                queries = self.user_tower.embed(histories, preferences)
            stage = self._trained_stage(
                queries, histories, excluded, trained_allowed, width, explain=explain
            )
            if memo_key is not None:
                self._stage_memo.put(memo_key, queries, stage)  # type: ignore[union-attr]
        if new_allowed.any() and (
            self.policy.new_games is not None or self.policy.new_games_share > 0
        ):
            memo = None
            if memo_key is not None and self._stage_memo is not None:
                memo = (self._stage_memo, memo_key, new_allowed.tobytes())
            stage = self._with_new_games(
                queries, histories, excluded, new_allowed, stage, width, memo
            )
        if self.editions is not None:
            stage = self._one_per_game(stage, allowed, k)
        items, scores = stage.items[:, :k], stage.scores[:, :k]
        because = stage.because[:, :k]
        if explain:
            because = self._supporting_games(histories, items, because)
            if self.editions is not None:
                because = self.editions.as_owned(because, given)
        return Ranked(items, scores, stage.new[:, :k], because)

    def nearest(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, exclude: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first stage alone: the trained games of highest inner product with each query,
        among ``allowed``, none of ``exclude``: (scores, ids), each (B, k), ids -1 past the end."""
        trained_allowed, _ = self._parts(allowed)
        scores, ids = self._search(queries, k, [np.asarray(e) for e in exclude], trained_allowed)
        return _pad(scores, k, -np.inf), _pad(ids, k, -1)

    def rank_lists(self, histories: UserItems, k: int, allowed: np.ndarray) -> np.ndarray:
        """:class:`Ranker`: the ranked catalog rows alone, for the evaluation."""
        return self.rank(histories, k, allowed).items

    def _trained_stage(
        self,
        queries: np.ndarray,
        histories: UserItems,
        excluded: list[np.ndarray],
        allowed: np.ndarray,
        k: int,
        explain: bool = False,
    ) -> _Stage:
        """The top ``k`` trained games of each row: two-tower, then the co-play stage, then
        genre/tag/studio closeness, each standardised over the row's candidates. Rows are
        ranked together in chunks (a batch is as fast per row as it can be); ``explain`` also
        finds, for each answer, the history game whose co-play weight adds most to it."""
        rerank = self.policy.rerank
        n_candidates = max(k, rerank.candidates if rerank is not None else CANDIDATES)
        first_scores, candidates = self._search(queries, n_candidates, excluded, allowed)
        n_rows = histories.n_rows
        stage = _Stage(
            np.full((n_rows, k), -1, dtype=np.int64),
            np.full((n_rows, k), -np.inf, dtype=np.float32),
            np.full((n_rows, k), -1, dtype=np.int64),
            np.zeros((n_rows, k), dtype=bool),
            np.zeros(n_rows, dtype=np.float32),
            np.ones(n_rows, dtype=np.float32),
        )
        if self.content is not None:
            stage.content_centre = np.zeros(n_rows, dtype=np.float32)
            stage.content_spread = np.ones(n_rows, dtype=np.float32)
            stage.profiles = self._profiles(histories)
        for start in range(0, n_rows, _CHUNK):
            rows = np.arange(start, min(start + _CHUNK, n_rows))
            part = histories.take_rows(rows)
            found, first, final = self._candidates(
                queries[rows],
                part,
                [excluded[r] for r in rows],
                allowed,
                (first_scores[rows], candidates[rows]),
            )
            valid = found >= 0
            stage.centre[rows], stage.spread[rows] = _centre_and_spread(first, valid)
            if self.content is not None:
                final = self._with_content(stage, rows, part, found, final, valid)
            final = np.where(valid, final, -np.inf)
            order = np.argsort(-final, axis=1, kind="stable")[:, :k]
            width = order.shape[1]
            stage.items[rows, :width] = np.take_along_axis(found, order, axis=1)
            stage.scores[rows, :width] = np.take_along_axis(final, order, axis=1)
        stage.items[~np.isfinite(stage.scores)] = -1
        if explain and self.coplay is not None:
            stage.because = self._co_played(histories, stage.items)
        return stage

    def _candidates(
        self,
        queries: np.ndarray,
        histories: UserItems,
        excluded: list[np.ndarray],
        allowed: np.ndarray,
        first_stage: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A chunk's candidates (the first stage's and the co-play model's own), their
        first-stage scores and their blended scores, each (b, c); -1 pads a short row."""
        scores, found = first_stage
        rerank = self.policy.rerank
        if self.coplay is None or rerank is None:
            valid = found >= 0
            first = np.where(valid, scores, 0.0).astype(np.float32)
            return found, first, blend(first, first, 1.0, valid)
        sums = self.coplay.sums(histories)
        extra = self.coplay.top_of(sums, rerank.coplay_candidates, allowed, found, excluded)
        found = np.concatenate([found, extra], axis=1)
        valid = found >= 0
        safe = np.maximum(found, 0)
        first = np.einsum("bcd,bd->bc", self.item_vectors[safe], queries).astype(np.float32)
        first = np.where(valid, first, 0.0)
        coplay_rows = self.coplay.rows[safe]
        covered = valid & (coplay_rows >= 0)
        second = np.take_along_axis(sums, np.maximum(coplay_rows, 0), axis=1)
        # a candidate the co-play model does not cover gets the mean of those it does, so
        # its blended score rests on the first stage alone
        counts = np.maximum(covered.sum(1, keepdims=True), 1)
        mean = np.where(covered, second, 0.0).sum(1, keepdims=True) / counts
        second = np.where(covered, second, mean)
        return found, first, blend(first, second, rerank.alpha, valid)

    def _co_played(self, histories: UserItems, items: np.ndarray) -> np.ndarray:
        """(B, k) the history game whose co-play weight adds most to each answer (-1: none
        adds anything)."""
        assert self.coplay is not None
        because = np.full(items.shape, -1, dtype=np.int64)
        for row in range(histories.n_rows):
            owned, answered = histories.row(row), items[row] >= 0
            if not len(owned) or not answered.any():
                continue
            contributions = self.coplay.block(owned, items[row][answered])
            supported = contributions.max(0) > 0
            because[row][answered] = np.where(
                supported, owned[np.argmax(contributions, axis=0)], -1
            )
        return because

    def _profiles(self, histories: UserItems) -> np.ndarray:
        """(B, T) each history's content profile (:class:`ContentSimilarity`)."""
        assert self.content is not None
        weights = history_weights(histories.values, self.user_tower.playtime_weight)
        profiles = np.zeros((histories.n_rows, len(self.content.idf)), dtype=np.float32)
        for row in range(histories.n_rows):
            start, end = histories.indptr[row], histories.indptr[row + 1]
            profiles[row] = self.content.profile(histories.indices[start:end], weights[start:end])
        return profiles

    def _with_content(
        self,
        stage: _Stage,
        rows: np.ndarray,
        histories: UserItems,
        candidates: np.ndarray,
        final: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray:
        """``final`` blended with the candidates' standardised content closeness to each
        history (``histories``: the chunk's), keeping what new games need to be put on the
        same scale."""
        assert self.content is not None and stage.profiles is not None
        assert stage.content_centre is not None and stage.content_spread is not None
        closeness = self.content.batch_closeness(stage.profiles[rows], histories, candidates)
        centre, spread = _centre_and_spread(closeness, valid)
        stage.content_centre[rows], stage.content_spread[rows] = centre, spread
        weight = self.policy.content_weight
        standard = (closeness - centre[:, None]) / spread[:, None]
        return (1.0 - weight) * final + weight * standard

    def _with_new_games(
        self,
        queries: np.ndarray,
        histories: UserItems,
        excluded: list[np.ndarray],
        allowed: np.ndarray,
        trained: _Stage,
        k: int,
        memo: tuple[_StageMemo, tuple[Any, ...], bytes] | None = None,
    ) -> _Stage:
        """The trained list with the games nobody in the play data owns among it: on merit
        (with their least share of places), or at fixed places for a model without the
        policy that puts them on one scale. ``memo`` (the memo, the trained stage's key and
        the new games allowed): engines that differ in their new-game policy alone find the
        candidates once."""
        policy = self.policy
        share = policy.new_games_share
        n_new = k if policy.new_games is not None else len(new_game_slots(k, share))
        if n_new == 0:
            return trained
        on_merit = policy.new_games is not None
        with_content = on_merit and self.content is not None and trained.profiles is not None
        kept = None
        if memo is not None:
            store, stage_key, new_allowed = memo
            key = (new_allowed, n_new, on_merit, policy.content_candidates)
            kept = store.get_new(stage_key, key)
        if kept is not None:
            new_scores, new_items, closeness = kept
        else:
            new_scores, new_items = self._search(queries, n_new, excluded, allowed)
            if on_merit and policy.content_candidates and trained.profiles is not None:
                new_scores, new_items = self._with_content_candidates(
                    queries, histories, excluded, allowed, trained.profiles, (new_scores, new_items)
                )
            closeness = (
                self._new_content(trained, histories, new_items)
                if with_content
                else np.zeros(new_items.shape, dtype=np.float32)
            )
            if memo is not None:
                store.put_new(stage_key, key, (new_scores, new_items, closeness))
        if policy.new_games is not None:
            z = (new_scores - trained.centre[:, None]) / trained.spread[:, None]
            calibrated = policy.new_games.scale * z + policy.new_games.offset
            if policy.new_games.history_weight:
                calibrated += policy.new_games.history_weight * self._newness(histories)[:, None]
            if with_content:
                calibrated += policy.new_games.content * closeness
            if policy.new_games.older and self.release_years is not None:
                calibrated -= policy.new_games.older * years_older(
                    self.release_years, histories, new_items
                )
            new_scores = np.where(new_items >= 0, calibrated, -np.inf).astype(np.float32)
            if share <= 0:  # on merit alone: one sort of both lists, row by row at once
                return _merged(trained, new_items, new_scores, k)
        out = _Stage(
            np.full((len(queries), k), -1, dtype=np.int64),
            np.full((len(queries), k), -np.inf, dtype=np.float32),
            np.full((len(queries), k), -1, dtype=np.int64),
            np.zeros((len(queries), k), dtype=bool),
            trained.centre,
            trained.spread,
        )
        for row in range(len(queries)):
            old = [
                (item, score, supporter, False)
                for item, score, supporter in zip(
                    trained.items[row].tolist(),
                    trained.scores[row].tolist(),
                    trained.because[row].tolist(),
                    strict=True,
                )
                if item >= 0
            ]
            fresh = sorted(
                (
                    (item, score, -1, True)
                    for item, score in zip(
                        new_items[row].tolist(), new_scores[row].tolist(), strict=True
                    )
                    if item >= 0
                ),
                key=lambda entry: -entry[1],
            )
            if policy.new_games is None:
                answer = interleave(old, fresh, k, share)
            else:
                answer = _on_merit(old, fresh, k, share)
            for place, (item, score, supporter, is_new) in enumerate(answer):
                out.items[row, place], out.scores[row, place] = item, score
                out.because[row, place], out.new[row, place] = supporter, is_new
        return out

    def _with_content_candidates(
        self,
        queries: np.ndarray,
        histories: UserItems,
        excluded: list[np.ndarray],
        allowed: np.ndarray,
        profiles: np.ndarray,
        found: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first stage's new games and, not among them, the ``content_candidates`` new
        games closest to each history's profile and as many closest to one of its games by
        studio and series (:meth:`ContentSimilarity.same_series`): (first-stage scores, rows)."""
        assert self.content is not None
        scores, items = found
        rows = self._rows_of(allowed)
        n = self.policy.content_candidates
        out_items, out_scores = [], []
        for row in range(len(items)):
            history, skip = histories.row(row), len(excluded[row])
            closest = self.content.closest(profiles[row], rows, n + skip)
            series = self.content.same_series(history, rows, n + skip)
            taken = np.zeros(len(self.trained) + 1, dtype=bool)  # the last one: -1, a pad
            taken[excluded[row]] = True
            taken[items[row]] = True
            extra = np.concatenate([part[~taken[part]][:n] for part in (closest, series)])
            extra = extra[np.sort(np.unique(extra, return_index=True)[1])]
            kept = items[row] >= 0
            out_items.append(np.concatenate([items[row][kept], extra]))
            out_scores.append(
                np.concatenate([scores[row][kept], self.item_vectors[extra] @ queries[row]])
            )
        width = max(len(row) for row in out_items)
        return (
            np.stack([_pad(s[None], width, -np.inf)[0] for s in out_scores]),
            np.stack([_pad(i[None], width, -1)[0] for i in out_items]),
        )

    def _newness(self, histories: UserItems) -> np.ndarray:
        """(B,) the share of each history's games nobody in the play data owns."""
        lengths = histories.row_lengths()
        new = ~self.trained[histories.indices]
        counts = histories.row_sums(new.astype(np.float32))
        return np.divide(counts, lengths, out=np.zeros(len(lengths), np.float32), where=lengths > 0)

    def _new_content(
        self, trained: _Stage, histories: UserItems, new_items: np.ndarray
    ) -> np.ndarray:
        """(B, width) the new games' genre/tag closeness, standardised as the trained
        candidates' of the same row."""
        assert self.content is not None and trained.profiles is not None
        assert trained.content_centre is not None and trained.content_spread is not None
        out = np.zeros(new_items.shape, dtype=np.float32)
        for row in range(len(new_items)):
            found = new_items[row] >= 0
            closeness = self.content.closeness(
                trained.profiles[row], histories.row(row), new_items[row][found]
            )
            out[row, found] = (closeness - trained.content_centre[row]) / trained.content_spread[
                row
            ]
        return out

    def _one_per_game(self, stage: _Stage, allowed: np.ndarray, k: int) -> _Stage:
        """Each row's first ``k`` games, one edition each, named by the edition to buy."""
        assert self.editions is not None
        shown = self.editions.shown(stage.items, allowed)
        group = np.where(shown >= 0, self.editions.group[np.maximum(shown, 0)], -1)
        out = _Stage(
            np.full((len(shown), k), -1, dtype=np.int64),
            np.full((len(shown), k), -np.inf, dtype=np.float32),
            np.full((len(shown), k), -1, dtype=np.int64),
            np.zeros((len(shown), k), dtype=bool),
            stage.centre,
            stage.spread,
        )
        for row in range(len(shown)):
            seen: set[int] = set()
            place = 0
            for column in range(shown.shape[1]):
                if place == k:
                    break
                if shown[row, column] < 0 or group[row, column] in seen:
                    continue
                seen.add(int(group[row, column]))
                out.items[row, place] = shown[row, column]
                out.scores[row, place] = stage.scores[row, column]
                out.because[row, place] = stage.because[row, column]
                # new to gamerec's players only if none of the game's editions is known
                out.new[row, place] = not self.trained[self.editions.anchor[shown[row, column]]]
                place += 1
        return out

    def _supporting_games(
        self, histories: UserItems, items: np.ndarray, because: np.ndarray
    ) -> np.ndarray:
        """``because`` where the co-play stage named a game, else the history game closest to
        the answer by the two terms a game without co-play support is ranked by: the cosine of
        their vectors (not the inner product: a mapped game's vector is shorter, and a trained
        game would win every answer) plus their genre/tag/studio closeness, which names Hades
        for Hades II where the vectors alone named The Binding of Isaac (-1 for an empty
        history)."""
        out = because.copy()
        for row in range(histories.n_rows):
            owned = histories.row(row)
            missing = (out[row] < 0) & (items[row] >= 0)
            if not len(owned) or not missing.any():
                continue
            answers = items[row][missing]
            similarity = _unit(self.item_vectors[owned]) @ _unit(self.item_vectors[answers]).T
            if self.content is not None:
                similarity += self.content.pairwise(owned, answers)
            out[row][missing] = owned[np.argmax(similarity, axis=0)]
        return out

    # ------------------------------------------------------------------ searching
    def _rows_of(self, mask: np.ndarray) -> np.ndarray:
        """``np.flatnonzero(mask)``, kept (read-only) for a kept mask."""
        kept = self._rows_of_mask.get(id(mask))
        if kept is not None and kept[0] is mask:
            return kept[1]
        rows = np.flatnonzero(mask)
        if not mask.flags.writeable and len(self._rows_of_mask) < _MAX_SUBSETS:
            rows.setflags(write=False)
            self._rows_of_mask[id(mask)] = (mask, rows)
        return rows

    def _parts(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(allowed and trained, allowed and new), kept for a read-only (kept) mask."""
        kept = self._parts_of_mask.get(id(allowed))
        if kept is not None and kept[0] is allowed:
            return kept[1], kept[2]
        trained, new = allowed & self.trained, allowed & ~self.trained
        if self.editions is not None:
            # a new edition of a game the model knows (Grand Theft Auto IV: Complete Edition
            # beside The Complete Edition) is that game, ranked by its trained edition and
            # named by the edition to buy: as a new game of its own it would place the game
            # a second time, by a guess from its genres and tags
            anchor = self.editions.anchor
            new &= ~(self.trained[anchor] & allowed[anchor])
        if not allowed.flags.writeable and len(self._parts_of_mask) < _MAX_SUBSETS:
            trained.setflags(write=False)
            new.setflags(write=False)
            self._parts_of_mask[id(allowed)] = (allowed, trained, new)
        return trained, new

    def _search(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray], allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's top ``k`` per query among ``allowed``, without ``excluded``:
        (scores, ids), each (B, width), ids -1 past the end."""
        queries = np.asarray(queries, dtype=np.float32)
        most_excluded = max((len(ids) for ids in excluded), default=0)
        if len(queries) > 1 and k > int(allowed.sum()) - most_excluded:
            # an index answers a batch as wide as its most excluded row allows: near the end of
            # a small catalog the other rows would lose candidates they have alone
            found = [
                self._search(queries[row : row + 1], k, [excluded[row]], allowed)
                for row in range(len(queries))
            ]
            width = max(scores.shape[1] for scores, _ in found)
            return (
                np.concatenate([_pad(scores, width, -np.inf) for scores, _ in found]),
                np.concatenate([_pad(ids, width, -1) for _, ids in found]),
            )
        subset = self._exact_subset(allowed, at_once=len(queries) > 1)
        if subset is None:
            return self.index.search(queries, k, excluded, allowed)
        # the same exact search over only the allowed rows: a request's filters (trained or
        # new games, a genre) repeat, and scanning 25,000 rows to keep 1,000 is the larger
        # part of a request
        members, index = subset
        local_excluded = []
        for ids in excluded:
            position = np.searchsorted(members, ids)
            inside = position < len(members)
            inside[inside] = members[position[inside]] == ids[inside]
            local_excluded.append(position[inside])
        scores, local = index.search(queries, k, local_excluded)
        return scores, np.where(local >= 0, members[np.maximum(local, 0)], -1)

    def _exact_subset(
        self, allowed: np.ndarray, at_once: bool = True
    ) -> tuple[np.ndarray, ExactIndex] | None:
        """An exact index of the ``allowed`` rows alone, kept for the filters that repeat;
        without ``at_once`` made on a filter's second search only (None the first time)."""
        if not isinstance(self.index, ExactIndex):
            return None
        kept = self._subset_of_mask.get(id(allowed))
        if kept is not None and kept[0] is allowed:
            return kept[1]
        key = hashlib.blake2b(np.packbits(allowed).tobytes(), digest_size=16).digest()
        subset = self._subsets.get(key)
        if subset is None:
            if len(self._subsets) >= _MAX_SUBSETS:
                return None
            # one query's first search under a filter scans the catalog under its mask: copying
            # the rows costs more than the search, and a one-shot command searches each filter
            # once. A batch always searches a sub-index: a matrix product's last bits depend on
            # the matrix, and a batch ranked twice must score alike to the last bit.
            if not at_once and key not in self._searched_once:
                self._searched_once.add(key)
                return None
            members = np.flatnonzero(allowed)
            index = ExactIndex(self.item_vectors[members])
            if not at_once:  # a request's filter, searched again: a server's
                index.narrow_single_queries()
            subset = self._subsets[key] = (members, index)
        if not allowed.flags.writeable:  # a kept filter mask: found by identity next time
            self._subset_of_mask[id(allowed)] = (allowed, subset)
        return subset
