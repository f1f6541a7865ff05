"""The Recommender: load the artifacts once, then answer in about a millisecond.

Never imports torch (the user tower runs in numpy) nor pandas (tables are read with pyarrow).
A known user is looked up in ``processed/``; an unknown user with a history is embedded from
it; a user with only genres (or nothing) gets a genre-aware popularity fallback, and the reason
says so.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.dataio.files import normalise_title
from gamerec.dataio.ids import appid_or_none, is_appid_text
from gamerec.dataio.matrix import UserItems
from gamerec.errors import (
    AmbiguousNameError,
    ArtifactError,
    InvalidRequestError,
    NotFoundError,
)
from gamerec.index.reference import ExactIndex
from gamerec.towers.inference import (
    NumpyUserTower,
    load_coplay,
    load_model_arrays,
    manifest_playtime_weight,
)
from gamerec.towers.rerank import blend

__all__ = ["Recommendation", "Recommender"]

#: minutes of play one unlocked achievement stands for when no playtime is given
MINUTES_PER_ACHIEVEMENT = 30.0


@dataclass(frozen=True)
class Recommendation:
    appid: int | None
    name: str
    score: float
    genres: list[str]
    reason: str
    item_idx: int

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives, without its recursive deep copy (a third of the time
        # of an HTTP answer): the fields are scalars and strings but for the genres list
        return {**self.__dict__, "genres": list(self.genres)}


@dataclass
class _Catalog:
    appids: np.ndarray  # (n,) int64, -1 where unknown
    names: list[str]
    genres: list[list[str]]
    players: np.ndarray  # (n,) owners in the training data: the popularity fallback
    by_appid: dict[int, int] = field(default_factory=dict)
    by_title: dict[str, list[int]] = field(default_factory=dict)
    lower_names: list[str] = field(default_factory=list)


def _read_table(path: Path, columns: Sequence[str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # not pq.read_table: it goes through pyarrow.dataset, which imports pandas (about 1 s)
        with pq.ParquetFile(path) as handle:
            table = handle.read(columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); run `gamerec preprocess`") from None
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise ArtifactError(f"{path} lacks columns {missing}; run `gamerec preprocess` again")
    return {name: table.column(name) for name in columns}


_NUMPY_TYPES: dict[str, Any] = {
    "int32": np.int32,
    "int64": np.int64,
    "float": np.float32,
    "double": np.float64,
}


def _to_numpy(column: Any, fill: int | float | None = None) -> np.ndarray:
    """A primitive column as numpy, nulls set to ``fill``, read from its buffers.

    Not ``column.to_numpy()``: pyarrow's conversion imports pandas (about 1 s and 50 MB).
    """
    array = column.combine_chunks()
    dtype = np.dtype(_NUMPY_TYPES.get(str(array.type), np.void))
    if dtype == np.void:
        raise ArtifactError(f"unexpected column type {array.type}; run `gamerec preprocess` again")
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    validity, data = array.buffers()
    values = np.frombuffer(
        data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    ).copy()
    if array.null_count:
        if fill is None:
            raise ArtifactError("a required column has nulls; run `gamerec preprocess` again")
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        values[~bits[array.offset : array.offset + len(array)].astype(bool)] = fill
    return values


class Recommender:
    """Recommendations from a workspace (``gamerec-data``) with processed/, model/ and index/."""

    def __init__(
        self,
        catalog: _Catalog,
        user_tower: NumpyUserTower,
        item_embeddings: np.ndarray,
        index: Any,
        known_users: dict[str, int] | Callable[[], tuple[dict[str, int], UserItems]],
        histories: UserItems | None,
        model_manifest: dict[str, Any],
        index_manifest: dict[str, Any],
        max_top_k: int = 1000,
        coplay: np.ndarray | None = None,
    ):
        """``known_users`` maps user ids to rows of ``histories``; it may instead be a function
        returning both, called on first use (a process answering one ``--played`` request
        never reads the users)."""
        self.catalog = catalog
        self.user_tower = user_tower
        self.item_embeddings = item_embeddings
        self.index = index
        self._users_lock = threading.Lock()
        if callable(known_users):
            self._load_users: Callable[[], tuple[dict[str, int], UserItems]] | None = known_users
            self._known_users: dict[str, int] = {}
            self._histories = UserItems.from_pairs(
                np.empty(0), np.empty(0), None, 0, len(catalog.names)
            )
        else:
            assert histories is not None
            self._load_users = None
            self._known_users, self._histories = known_users, histories
        self.model_manifest = model_manifest
        self.index_manifest = index_manifest
        self.max_top_k = max_top_k
        rerank = model_manifest.get("rerank") or {}
        self.coplay = coplay if rerank else None
        self.rerank_alpha = float(rerank.get("alpha", 1.0))
        self.rerank_candidates = int(rerank.get("candidates", 200))
        self.genres = list(model_manifest.get("genres", []))
        self._genre_lookup = {g.lower(): g for g in self.genres}
        tokens = list(model_manifest.get("tokens", []))
        self._token_position = {t: i for i, t in enumerate(tokens)}
        self._n_tokens = len(tokens)
        self._item_genres_lower = [{g.lower() for g in gs} for gs in catalog.genres]
        self._genre_items = {
            key: np.array([key in genres for genres in self._item_genres_lower], dtype=bool)
            for key in self._genre_lookup
        }
        self._popularity_order = np.argsort(-catalog.players, kind="stable")
        self._lock = threading.Lock()  # FAISS search objects are not re-entrant for HNSW params

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dir(
        cls, data_dir: str | Path = "gamerec-data", max_top_k: int = 1000, rerank: bool = True
    ) -> Recommender:
        """Load ``processed/``, ``model/`` and ``index/`` of a workspace once.

        With ``rerank`` (and a model trained with its co-play re-ranker) the two-tower's FAISS
        candidates are re-ordered by the second stage.
        """
        from gamerec.artifacts import fingerprint, read_manifest

        root = Path(data_dir)
        processed_dir, model_dir = root / "processed", root / "model"
        processed_manifest = read_manifest(processed_dir, "processed")
        arrays, item_embeddings, model_manifest = load_model_arrays(model_dir)
        trained_on = model_manifest.get("inputs", {}).get("processed/items.parquet")
        if trained_on != processed_manifest.get("files", {}).get("items.parquet"):
            raise ArtifactError(
                f"the model in {model_dir} was trained on another catalog than "
                f"{processed_dir}; run `gamerec train` (then `gamerec index`) again"
            )
        index_manifest = read_manifest(root / "index", "index", verify=True)
        index_info = index_manifest.get("index")
        kind = index_info.get("kind") if isinstance(index_info, dict) else None
        built_from = index_manifest.get("model_embeddings")
        listed = model_manifest.get("files", {}).get("item_embeddings.npy")
        if (
            kind == "flat"
            and built_from == listed
            and fingerprint(model_dir / "item_embeddings.npy") == listed
        ):
            # a flat index is exhaustive inner products over these very embeddings: numpy
            # answers the same without importing FAISS (about 0.1 s of every process)
            index: Any = ExactIndex(item_embeddings)
        else:
            from gamerec.index import load_index_for_model

            index = load_index_for_model(root / "index", model_dir, verify=False)

        items = _read_table(
            processed_dir / "items.parquet", ["item_idx", "appid", "name", "genres", "n_users"]
        )
        appids = _to_numpy(items["appid"], fill=-1).astype(np.int64)
        names = [str(n) for n in items["name"].to_pylist()]
        catalog = _Catalog(
            appids=appids,
            names=names,
            genres=[list(g or []) for g in items["genres"].to_pylist()],
            players=_to_numpy(items["n_users"]).astype(np.float64),
        )
        catalog.by_appid = {int(a): i for i, a in enumerate(appids) if a >= 0}
        catalog.lower_names = [n.lower() for n in names]
        for position, name in enumerate(names):
            catalog.by_title.setdefault(normalise_title(name), []).append(position)

        def load_users() -> tuple[dict[str, int], UserItems]:
            users = _read_table(processed_dir / "users.parquet", ["user_idx", "user_id"])
            user_ids = [str(u) for u in users["user_id"].to_pylist()]
            rows = _read_table(
                processed_dir / "interactions.parquet", ["user_idx", "item_idx", "playtime_min"]
            )
            histories = UserItems.from_pairs(
                _to_numpy(rows["user_idx"]),
                _to_numpy(rows["item_idx"]),
                _to_numpy(rows["playtime_min"]),
                len(user_ids),
                len(names),
            )
            return {user_id: i for i, user_id in enumerate(user_ids)}, histories

        if item_embeddings.shape[0] != len(names):
            raise ArtifactError(
                f"the model has {item_embeddings.shape[0]} games, the catalog {len(names)}; "
                "run `gamerec train` and `gamerec index` again"
            )
        return cls(
            catalog,
            NumpyUserTower(arrays, manifest_playtime_weight(model_manifest)),
            item_embeddings,
            index,
            load_users,
            None,
            model_manifest,
            index_manifest,
            max_top_k=max_top_k,
            coplay=load_coplay(model_dir) if rerank else None,
        )

    @property
    def known_users(self) -> dict[str, int]:
        """User id -> row of :attr:`histories`, for the users of ``processed/``."""
        self._ensure_users()
        return self._known_users

    @property
    def histories(self) -> UserItems:
        """The known users' games and playtimes."""
        self._ensure_users()
        return self._histories

    def check(self) -> None:
        """Load what is otherwise loaded on first use and answer trial requests.

        ArtifactError when something is unreadable or of the wrong shape: a server calls this
        before it swaps a freshly loaded Recommender in, so a broken workspace never serves.
        """
        self._ensure_users()
        played = self.histories.indices
        if (
            self.histories.n_items != self.n_items
            or (len(played) and not 0 <= int(played.min()) <= int(played.max()) < self.n_items)
            or (self.coplay is not None and self.coplay.shape != (self.n_items, self.n_items))
        ):
            raise ArtifactError(
                "processed/ and model/ disagree on the number of games; "
                "run `gamerec train` and `gamerec index` again"
            )
        try:
            if self.known_users:
                self.recommend(user_id=next(iter(self.known_users)), k=1)
            if self.catalog.by_appid:
                appid = next(iter(self.catalog.by_appid))
                self.recommend(played={appid: 60.0}, k=1)
                self.similar(appid, 1)
        except ArtifactError:
            raise
        except Exception as exc:  # a wrong shape or type shows up as numpy's error here
            raise ArtifactError(
                f"the artifacts fail a trial request ({type(exc).__name__}: {str(exc)[:200]}); "
                "run `gamerec train` and `gamerec index` again"
            ) from exc

    def _ensure_users(self) -> None:
        if self._load_users is not None:
            with self._users_lock:
                if self._load_users is not None:
                    self._known_users, self._histories = self._load_users()
                    self._load_users = None

    # ------------------------------------------------------------------ lookups
    @property
    def n_items(self) -> int:
        return len(self.catalog.names)

    def info(self) -> dict[str, Any]:
        """Versions and sizes, for ``/health``."""
        return {
            "items": self.n_items,
            "users": len(self.known_users),
            "model": self.model_manifest.get("created"),
            "model_fingerprint": self.model_manifest.get("files", {}).get("item_embeddings.npy"),
            # the kind sits under "index" in the manifest; the top-level "stage" is just "index"
            "index": (self.index_manifest.get("index") or {}).get("kind"),
            "index_created": self.index_manifest.get("created"),
        }

    def resolve_game(self, game: int | str) -> int:
        """item_idx of an appid or a name (case-insensitive; an ambiguous name lists candidates)."""
        # ASCII digits only: "²".isdigit() is True, and int("²") fails
        if isinstance(game, int) or (isinstance(game, str) and is_appid_text(game.strip())):
            appid = int(game)
            if appid in self.catalog.by_appid:
                return self.catalog.by_appid[appid]
            if isinstance(game, int):
                raise NotFoundError(
                    f"appid {appid} is not in the catalog; try `gamerec similar`"
                    " with a name, or search with /items?q="
                )
        query = str(game).strip()
        if not query:
            raise InvalidRequestError("an empty game name; give a name or an appid")
        exact = self.catalog.by_title.get(normalise_title(query), [])
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise AmbiguousNameError(query, [self._label(i) for i in exact])
        lowered = query.lower()
        partial = [i for i, name in enumerate(self.catalog.lower_names) if lowered in name]
        if len(partial) == 1:
            return partial[0]
        if len(partial) > 1:
            partial.sort(key=lambda i: -self.catalog.players[i])
            raise AmbiguousNameError(query, [self._label(i) for i in partial])
        raise NotFoundError(
            f"no game named {query!r}; search with `gamerec items`-style queries "
            "such as part of the name, or give the appid"
        )

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Games whose name contains ``query`` (case-insensitive), most played first."""
        lowered = query.strip().lower()
        if not lowered:
            return []
        hits = [i for i, name in enumerate(self.catalog.lower_names) if lowered in name]
        hits.sort(key=lambda i: (-self.catalog.players[i], self.catalog.names[i]))
        return [self._item(i) for i in hits[: max(1, limit)]]

    def _label(self, item: int) -> str:
        appid = self.catalog.appids[item]
        return (
            f"{self.catalog.names[item]} (appid {appid})"
            if appid >= 0
            else self.catalog.names[item]
        )

    def _item(self, item: int) -> dict[str, Any]:
        appid = int(self.catalog.appids[item])
        return {
            "appid": appid if appid >= 0 else None,
            "name": self.catalog.names[item],
            "genres": self.catalog.genres[item],
            "item_idx": int(item),
        }

    def _check_k(self, k: int) -> int:
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidRequestError(f"top-k must be a positive integer, got {k!r}")
        if k > self.max_top_k:
            raise InvalidRequestError(f"top-k {k} is above the limit of {self.max_top_k}")
        return min(k, self.n_items)

    def _genre_set(self, genres: Sequence[str] | None) -> set[str]:
        chosen = set()
        for genre in genres or []:
            key = str(genre).strip().lower()
            if key not in self._genre_lookup:
                raise NotFoundError(
                    f"unknown genre {genre!r}; valid genres: {', '.join(self.genres)}"
                )
            chosen.add(key)
        return chosen

    # ------------------------------------------------------------------ recommending
    def _history_from(
        self,
        played: Mapping[Any, float] | None,
        achievements: Mapping[Any, int] | None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        minutes: dict[int, float] = {}
        unknown: list[str] = []
        for source, scale in ((played or {}, 1.0), (achievements or {}, MINUTES_PER_ACHIEVEMENT)):
            for key, value in source.items():
                appid = appid_or_none(key)
                try:
                    amount = float(value)
                except (TypeError, ValueError):
                    appid = None
                if appid is None:
                    raise InvalidRequestError(
                        f"expected appid: number pairs, got {key!r}: {value!r}"
                    )
                if not np.isfinite(amount) or amount < 0:
                    raise InvalidRequestError(f"appid {appid}: {value!r} must be >= 0")
                item = self.catalog.by_appid.get(appid)
                if item is None:
                    unknown.append(str(appid))
                    continue
                minutes[item] = max(minutes.get(item, 0.0), amount * scale)
        items = np.array(sorted(minutes), dtype=np.int32)
        values = np.array([minutes[i] for i in items], dtype=np.float32)
        return items, values, unknown

    def recommend(
        self,
        user_id: str | None = None,
        played: Mapping[Any, float] | None = None,
        genres: Sequence[str] | None = None,
        achievements: Mapping[Any, int] | None = None,
        k: int = 10,
        exclude_owned: bool = True,
    ) -> list[Recommendation]:
        """Top-``k`` games for a known user, or for a history given as ``{appid: minutes}``.

        ``genres`` keeps only games of those genres; ``achievements`` (``{appid: unlocked}``)
        count as play where no playtime is given. Owned games never come back unless
        ``exclude_owned`` is False.
        """
        k = self._check_k(k)
        wanted = self._genre_set(genres)
        items, values, _ = self._history_from(played, achievements)
        if user_id is not None:
            row = self.known_users.get(str(user_id))
            if row is None:
                raise NotFoundError(
                    f"unknown user {user_id!r}; pass their games instead (--played / --library)"
                )
            start, end = self.histories.indptr[row], self.histories.indptr[row + 1]
            known_items = self.histories.indices[start:end]
            known_values = self.histories.values[start:end]
            merged = dict(zip(known_items.tolist(), known_values.tolist(), strict=True))
            for item, value in zip(items.tolist(), values.tolist(), strict=True):
                merged[item] = max(merged.get(item, 0.0), value)
            items = np.array(sorted(merged), dtype=np.int32)
            values = np.array([merged[i] for i in items], dtype=np.float32)
        if len(items) == 0:
            return self._popular(wanted, k)
        history = UserItems(np.array([0, len(items)], np.int64), items, values, self.n_items)
        user = self.user_tower.embed(history, self._preferences(wanted))
        excluded = set(items.tolist()) if exclude_owned else set()
        if self.coplay is None:
            ranked = self._search(user, k, excluded, wanted)
            return [self._explain(item, score, items) for item, score in ranked]
        candidates = self._search(user, max(k, self.rerank_candidates), excluded, wanted)
        ids = np.array([item for item, _ in candidates], dtype=np.int64)
        first_stage = np.array([score for _, score in candidates], dtype=np.float32)
        contributions = np.asarray(self.coplay[np.ix_(items, ids)])  # (history, candidates)
        final = blend(first_stage[None], contributions.sum(0)[None], self.rerank_alpha)[0]
        order = np.argsort(-final, kind="stable")[:k]
        return [
            self._explain(
                int(ids[c]),
                float(final[c]),
                items,
                because=int(items[np.argmax(contributions[:, c])])
                if contributions[:, c].max() > 0
                else None,
            )
            for c in order
        ]

    def _preferences(self, wanted: set[str]) -> np.ndarray | None:
        if not wanted:
            return None
        prefs = np.zeros((1, self._n_tokens), dtype=np.float32)
        for key in wanted:
            position = self._token_position.get(f"genre:{self._genre_lookup[key]}")
            if position is not None:
                prefs[0, position] = 1.0 / len(wanted)
        return prefs

    def _allowed(self, item: int, excluded: set[int], wanted: set[str]) -> bool:
        if item in excluded:
            return False
        return not wanted or bool(wanted & self._item_genres_lower[item])

    def _search(
        self, user: np.ndarray, k: int, excluded: set[int], wanted: set[str]
    ) -> list[tuple[int, float]]:
        """FAISS candidates, widened until ``k`` survive the exclusions and genre filter."""
        fetch = min(self.n_items, k + len(excluded) + (10 * k if wanted else 0))
        blocked = np.zeros(self.n_items + 1, dtype=bool)  # the spare slot catches FAISS's -1
        blocked[-1] = True
        if excluded:
            blocked[np.fromiter(excluded, dtype=np.int64, count=len(excluded))] = True
        if wanted:
            blocked[:-1] |= ~self._genre_mask(wanted)
        while True:
            with self._lock:
                scores, ids = self.index.search(user.astype(np.float32), fetch)
            keep = ~blocked[ids[0]]
            kept_ids, kept_scores = ids[0][keep][:k], scores[0][keep][:k]
            if len(kept_ids) >= k or fetch >= self.n_items:
                return list(zip(kept_ids.tolist(), kept_scores.tolist(), strict=True))
            fetch = min(self.n_items, fetch * 4)

    def _genre_mask(self, wanted: set[str]) -> np.ndarray:
        """(n_items,) bool: games having at least one of the ``wanted`` genres (read only)."""
        if len(wanted) == 1:  # the usual request: the precomputed mask, no work per request
            return self._genre_items[next(iter(wanted))]
        mask = np.zeros(self.n_items, dtype=bool)
        for genre in wanted:
            mask |= self._genre_items[genre]
        return mask

    def _explain(
        self, item: int, score: float, history: np.ndarray, because: int | None = None
    ) -> Recommendation:
        """``because``: the played game that most supports ``item`` (default: the closest one)."""
        if because is None:
            similarity = self.item_embeddings[history] @ self.item_embeddings[item]
            because = int(history[int(np.argmax(similarity))])
        closest = because
        info = self._item(item)
        return Recommendation(
            appid=info["appid"],
            name=info["name"],
            score=round(float(score), 6),
            genres=info["genres"],
            reason=f"because you played {self.catalog.names[closest]}",
            item_idx=item,
        )

    def _popular(self, wanted: set[str], k: int) -> list[Recommendation]:
        chosen = [int(i) for i in self._popularity_order if self._allowed(int(i), set(), wanted)][
            :k
        ]
        if wanted:
            label = ", ".join(self._genre_lookup[g] for g in sorted(wanted))
            reason = f"popular with players of {label} (no play history given)"
        else:
            reason = "popular with gamerec's players (no play history given)"
        top = self.catalog.players.max() or 1.0
        return [
            Recommendation(
                appid=self._item(i)["appid"],
                name=self.catalog.names[i],
                score=round(float(self.catalog.players[i] / top), 6),
                genres=self.catalog.genres[i],
                reason=reason,
                item_idx=i,
            )
            for i in chosen
        ]

    def similar(self, game: int | str, k: int = 10) -> list[Recommendation]:
        """Games closest to ``game`` (an appid or a name) in the item embedding space."""
        k = self._check_k(k)
        item = self.resolve_game(game)
        query = self.item_embeddings[item : item + 1]
        ranked = self._search(query, k, {item}, set())
        name = self.catalog.names[item]
        return [
            Recommendation(
                appid=self._item(i)["appid"],
                name=self.catalog.names[i],
                score=round(s, 6),
                genres=self.catalog.genres[i],
                reason=f"similar to {name}",
                item_idx=i,
            )
            for i, s in ranked
        ]

    def recommend_all(
        self, k: int = 10, batch_size: int = 1024, max_entries: int = 65_536
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """For every known user, in batches: (user_ids, item_idx (b, k), scores (b, k)).

        Users come in batches of similar history length, not in user order. Owned games are
        never included; rows are padded with -1 when a user owns nearly all. A batch holds at
        most ``batch_size`` users and ``max_entries`` history entries (one user at least), so
        the memory of embedding a batch stays flat however long the longest histories are.
        """
        k = self._check_k(k)
        user_ids = list(self.known_users)
        # batches of similar history length: each batch over-fetches by its longest history
        lengths = self.histories.row_lengths()
        by_length = np.argsort(lengths, kind="stable")
        ends = np.cumsum(lengths[by_length])
        start = 0
        while start < len(user_ids):
            budget = (ends[start - 1] if start else 0) + max_entries
            stop = min(start + batch_size, int(np.searchsorted(ends, budget, side="right")))
            rows = by_length[start : max(stop, start + 1)]
            start += len(rows)
            batch = self.histories.take_rows(rows)
            users = self.user_tower.embed(batch)
            widest = int(batch.row_lengths().max(initial=0))
            wanted_k = max(k, self.rerank_candidates) if self.coplay is not None else k
            fetch = min(self.n_items, wanted_k + widest)
            with self._lock:
                scores, ids = self.index.search(users, fetch)
            # owned games, as sorted (row, item) keys: no (batch x catalog) matrix
            span = self.n_items + 1
            row_of = np.repeat(np.arange(batch.n_rows, dtype=np.int64), batch.row_lengths())
            owned = np.sort(row_of * span + batch.indices)
            keys = np.arange(batch.n_rows, dtype=np.int64)[:, None] * span + ids
            found = np.minimum(np.searchsorted(owned, keys), max(len(owned) - 1, 0))
            drop = owned[found] == keys if len(owned) else np.zeros(ids.shape, dtype=bool)
            drop |= ids < 0  # FAISS pads with -1
            order = np.argsort(drop, axis=1, kind="stable")[:, :wanted_k]
            top_ids = np.take_along_axis(ids, order, 1)
            top_scores = np.take_along_axis(scores, order, 1)
            top_ids = np.where(np.take_along_axis(drop, order, 1), -1, top_ids)
            if self.coplay is not None:
                top_ids, top_scores = self._rerank_batch(batch, top_ids, top_scores, k)
            yield [user_ids[r] for r in rows], top_ids[:, :k], top_scores[:, :k]

    def _rerank_batch(
        self, batch: UserItems, ids: np.ndarray, scores: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Second stage for a batch of FAISS candidate lists (``-1`` marks no candidate)."""
        assert self.coplay is not None
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        second = np.zeros(ids.shape, dtype=np.float32)
        for row in range(batch.n_rows):
            owned = batch.row(row)
            if len(owned):  # only the (owned x candidates) block, not whole rows of the matrix
                second[row] = np.asarray(self.coplay[owned[:, None], safe[row][None, :]]).sum(0)
        final = blend(np.where(valid, scores, 0.0), second, self.rerank_alpha)
        final = np.where(valid, final, -np.inf)
        order = np.argsort(-final, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(np.where(valid, ids, -1), order, 1),
            np.take_along_axis(final, order, 1),
        )


_PLAYED = re.compile(r"^\s*([0-9]+)\s*(?::\s*([0-9.]+)\s*)?$")  # ASCII digits only


def parse_played(text: str) -> dict[int, float]:
    """``"620:1200,400:300"`` (appid:minutes, minutes optional) -> ``{620: 1200.0, 400: 300.0}``."""
    played: dict[int, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _PLAYED.match(part)
        if not match:
            raise InvalidRequestError(
                f"--played expects appid:minutes pairs like 620:1200,400:300; got {part.strip()!r}"
            )
        played[int(match.group(1))] = float(match.group(2) or 0.0)
    return played
