"""The one ranking engine: histories in, ranked games out (numpy only, batch-first).

``gamerec recommend`` (one request is a batch of one), ``recommend --all``, ``similar``, the
re-ranker's tuning at ``gamerec train`` and every evaluation protocol (P-SG, P-LOO, P-COLD) rank
through :meth:`RankingEngine.rank`, so what is evaluated is what is served. The policy:

1. the user tower embeds each history (:class:`~gamerec.ranking.user_tower.NumpyUserTower`);
2. first stage: the index's best games among those the model was trained on, the allowed ones
   only, never an excluded (owned) one;
3. second stage, when the model has a co-play re-ranker (:mod:`gamerec.ranking.stages`):
   those candidates and the co-play model's own best ones, re-ordered by a blend of the two;
4. games nobody in the play data owns (their vectors come from the content mapping) are
   ranked among themselves and take the places :func:`~gamerec.ranking.stages.new_game_slots`
   gives them;
5. for each answer, the history game that most supports it (``explain``): the one whose
   co-play weight adds most to it, else the one closest to it in the model's space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gamerec.artifacts.index import CatalogVectors
from gamerec.artifacts.model import ModelArtifacts, RerankPolicy
from gamerec.dataio.matrix import UserItems
from gamerec.index.reference import ExactIndex, VectorIndex
from gamerec.ranking.stages import CoPlay, blend, interleave, new_game_slots
from gamerec.ranking.user_tower import NumpyUserTower

__all__ = ["Ranked", "Ranker", "RankingEngine", "RankingPolicy"]

#: exact sub-indexes kept per engine (one per distinct filter: trained or new x genres)
_MAX_SUBSETS = 64


@dataclass(frozen=True)
class RankingPolicy:
    """How an engine ranks: the model's second stage (None: the first stage alone) and the
    share of each answer's places that go to games nobody in the play data owns."""

    rerank: RerankPolicy | None = None
    new_games_share: float = 0.2


@dataclass(frozen=True)
class Ranked:
    """A batch's answers, best first: row ``r`` answers the ``r``-th history."""

    items: np.ndarray  # (B, k) int64 catalog rows; -1 past the end of a short list
    scores: np.ndarray  # (B, k) float32; -inf past the end
    new: np.ndarray  # (B, k) bool: a game nobody in the play data owns
    because: np.ndarray | None = None  # (B, k) int64 supporting history game, -1: none

    def __len__(self) -> int:
        return int(self.items.shape[0])


class Ranker(Protocol):
    """What the evaluation asks of a ranking method that makes its own lists."""

    name: str

    def rank_lists(self, histories: UserItems, k: int, allowed: np.ndarray) -> np.ndarray:
        """(n_rows, k) catalog rows, best first, -1 past the end; never a history game."""
        ...


def _pad(array: np.ndarray, width: int, fill: float) -> np.ndarray:
    """``array`` (B, <= width) widened to (B, width) with ``fill``."""
    missing = width - array.shape[1]
    return np.pad(array, ((0, 0), (0, missing)), constant_values=fill) if missing > 0 else array


class RankingEngine:
    """Ranks the games of one catalog (``item_vectors``, searched through ``index``).

    ``trained`` flags the games the model was trained on; the others' vectors come from the
    content mapping. ``coplay`` covers trained games only and is used when ``policy.rerank``
    says so.
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
    ):
        self.user_tower = user_tower
        self.item_vectors = item_vectors  # (n, D)
        self.index = index
        self.trained = np.asarray(trained, dtype=bool)  # (n,)
        self.policy = policy
        self.coplay = coplay if policy.rerank is not None else None
        self.name = name
        self._subsets: dict[bytes, tuple[np.ndarray, ExactIndex]] = {}
        #: id of a kept (read-only) mask -> (the mask, its sub-index): no hashing next time
        self._subset_of_mask: dict[int, tuple[np.ndarray, tuple[np.ndarray, ExactIndex]]] = {}
        self._parts_of_mask: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_model(
        cls, model: ModelArtifacts, *, rerank: bool = True, new_games_share: float = 0.0
    ) -> RankingEngine:
        """The engine over the games a model was trained on, as ``model/`` holds them (exact
        search over its item embeddings; the second stage when ``rerank`` and the model has
        one). What P-SG and P-LOO evaluate: the games with players of ``processed/``."""
        description = model.description
        coplay = (
            CoPlay(model.coplay)
            if rerank and model.coplay is not None and description.rerank is not None
            else None
        )
        embeddings = model.item_embeddings
        return cls(
            NumpyUserTower(model.user_tower, description.playtime_weight),
            embeddings,
            ExactIndex(embeddings),
            np.ones(len(embeddings), dtype=bool),
            RankingPolicy(description.rerank if coplay is not None else None, new_games_share),
            coplay,
            name="two-tower + re-rank" if coplay is not None else "two-tower",
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
    ) -> RankingEngine:
        """The engine over every game of a catalog, as ``gamerec index`` embedded it
        (``vectors``: trained games keep the model's vectors, the others are mapped) and
        ``index`` searches it: what ``recommend`` ranks with, and P-COLD's evaluation."""
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
            RankingPolicy(description.rerank if coplay is not None else None, new_games_share),
            coplay,
            name="two-tower + re-rank" if coplay is not None else "two-tower",
        )

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
        history's own games). ``preferences`` ((B, n_tokens)) are stated tastes added to
        the user tower's input; ``queries`` ((B, D)) replace the user tower's vectors (a
        game's own vector, for ``similar``). ``explain`` adds each answer's supporting game.
        """
        if queries is None:
            queries = self.user_tower.embed(histories, preferences)
        excluded = (
            [histories.row(r) for r in range(histories.n_rows)]
            if exclude is None
            else [np.asarray(e, dtype=np.int64) for e in exclude]
        )
        trained_allowed, new_allowed = self._parts(allowed)
        items, scores, because = self._trained_stage(
            queries, histories, excluded, trained_allowed, k
        )
        items, scores, because = _pad(items, k, -1), _pad(scores, k, -np.inf), _pad(because, k, -1)
        n_new = len(new_game_slots(k, self.policy.new_games_share)) if new_allowed.any() else 0
        if n_new:
            new_scores, new_items = self._search(queries, n_new, excluded, new_allowed)
            items, scores, because, new = self._merge_new_games(
                (items, scores, because), (new_items, new_scores), k
            )
        else:
            new = np.zeros(items.shape, dtype=bool)
        if explain:
            because = self._supporting_games(histories, items, because)
        return Ranked(items, scores, new, because if explain else None)

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
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top ``k`` trained games of each row: two-tower, then the co-play stage.
        Returns (items, scores, supporting game by co-play or -1)."""
        rerank = self.policy.rerank
        if self.coplay is None or rerank is None:
            scores, items = self._search(queries, k, excluded, allowed)
            return items, scores, np.full(items.shape, -1, dtype=np.int64)
        _, candidates = self._search(queries, max(k, rerank.candidates), excluded, allowed)
        n_rows = histories.n_rows
        items = np.full((n_rows, k), -1, dtype=np.int64)
        scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
        because = np.full((n_rows, k), -1, dtype=np.int64)
        for row in range(n_rows):
            found = candidates[row][candidates[row] >= 0]
            owned = histories.row(row)
            extra = self.coplay.top(
                owned, rerank.coplay_candidates, allowed, (found, excluded[row])
            )
            if len(extra):
                found = np.concatenate([found, extra])
            first_stage = self.item_vectors[found] @ queries[row]
            contributions = self.coplay.block(owned, found)  # (history, candidates)
            final = blend(first_stage[None], contributions.sum(0)[None], rerank.alpha)[0]
            order = np.argsort(-final, kind="stable")[:k]
            items[row, : len(order)] = found[order]
            scores[row, : len(order)] = final[order]
            if len(owned):
                best = contributions[:, order]
                supported = best.max(0) > 0
                because[row, : len(order)] = np.where(supported, owned[np.argmax(best, axis=0)], -1)
        return items, scores, because

    def _merge_new_games(
        self,
        trained: tuple[np.ndarray, np.ndarray, np.ndarray],
        new: tuple[np.ndarray, np.ndarray],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each row's trained list with its new games at their places (fixed places policy)."""
        trained_items, trained_scores, trained_because = trained
        new_items, new_scores = new
        n_rows = trained_items.shape[0]
        items = np.full((n_rows, k), -1, dtype=np.int64)
        scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
        because = np.full((n_rows, k), -1, dtype=np.int64)
        is_new = np.zeros((n_rows, k), dtype=bool)
        share = self.policy.new_games_share
        for row in range(n_rows):
            kept = trained_items[row] >= 0
            fresh = new_items[row] >= 0
            old_entries = list(
                zip(
                    trained_items[row][kept].tolist(),
                    trained_scores[row][kept].tolist(),
                    trained_because[row][kept].tolist(),
                    [False] * int(kept.sum()),
                    strict=True,
                )
            )
            new_entries = [
                (item, score, -1, True)
                for item, score in zip(
                    new_items[row][fresh].tolist(), new_scores[row][fresh].tolist(), strict=True
                )
            ]
            answer = interleave(old_entries, new_entries, k, share)
            for place, (item, score, supporter, flag) in enumerate(answer):
                items[row, place], scores[row, place] = item, score
                because[row, place], is_new[row, place] = supporter, flag
        return items, scores, because, is_new

    def _supporting_games(
        self, histories: UserItems, items: np.ndarray, because: np.ndarray
    ) -> np.ndarray:
        """``because`` where the co-play stage named a game, else the history game closest to
        the answer in the model's space (-1 for an empty history)."""
        out = because.copy()
        for row in range(histories.n_rows):
            owned = histories.row(row)
            missing = (out[row] < 0) & (items[row] >= 0)
            if not len(owned) or not missing.any():
                continue
            similarity = self.item_vectors[owned] @ self.item_vectors[items[row][missing]].T
            out[row][missing] = owned[np.argmax(similarity, axis=0)]
        return out

    # ------------------------------------------------------------------ searching
    def _parts(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(allowed and trained, allowed and new), kept for a read-only (kept) mask."""
        kept = self._parts_of_mask.get(id(allowed))
        if kept is not None and kept[0] is allowed:
            return kept[1], kept[2]
        trained, new = allowed & self.trained, allowed & ~self.trained
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
        subset = self._exact_subset(allowed)
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

    def _exact_subset(self, allowed: np.ndarray) -> tuple[np.ndarray, ExactIndex] | None:
        """An exact index of the ``allowed`` rows alone, kept for the filters that repeat."""
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
            members = np.flatnonzero(allowed)
            subset = self._subsets[key] = (members, ExactIndex(self.item_vectors[members]))
        if not allowed.flags.writeable:  # a kept filter mask: found by identity next time
            self._subset_of_mask[id(allowed)] = (allowed, subset)
        return subset
