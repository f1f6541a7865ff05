"""The Recommender: load the artifacts once, then answer in about a millisecond.

Never imports torch (the user tower runs in numpy) nor pandas (tables are read with pyarrow).
A known user is looked up in ``processed/``; an unknown user with a history is embedded from
it; a user with only genres (or nothing) gets a genre-aware popularity fallback, and the
answer's note says so. Only games may come back: never a title without an appid, a DLC (unless
asked for, and then only for a base game the player owns), a soundtrack, a beta, a server, a
tool, a demo or a video. Every answer says which of the given games shaped it and which were
not known.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gamerec.artifacts.index import (
    check_index_matches,
    open_index,
    read_catalog_vectors,
    read_index_manifest,
)
from gamerec.artifacts.model import EMBEDDINGS_FILE, read_model
from gamerec.artifacts.processed import (
    column_to_numpy,
    read_columns,
    read_processed_manifest,
)
from gamerec.artifacts.workspace import Workspace
from gamerec.dataio.files import normalise_title
from gamerec.dataio.ids import appid_or_none, is_appid_text
from gamerec.dataio.kinds import Kind
from gamerec.dataio.matrix import UserItems
from gamerec.errors import (
    AmbiguousNameError,
    ArtifactError,
    InvalidRequestError,
    NotFoundError,
)
from gamerec.index.reference import ExactIndex, VectorIndex
from gamerec.towers.cold import interleave, new_game_slots
from gamerec.towers.inference import NumpyUserTower, manifest_playtime_weight
from gamerec.towers.rerank import blend, coplay_candidates

__all__ = ["HistoryReport", "Recommendation", "Recommendations", "Recommender"]

#: minutes of play one unlocked achievement stands for when no playtime is given
MINUTES_PER_ACHIEVEMENT = 30.0
#: how many shared tags a reason names
_REASON_TAGS = 2
#: exact sub-indexes kept per Recommender (one per distinct filter: trained or new x genres)
_MAX_SUBSETS = 64


@dataclass(frozen=True)
class Recommendation:
    appid: int | None
    name: str
    score: float
    genres: list[str]
    reason: str
    item_idx: int
    tags: list[str] = field(default_factory=list)
    release_year: int | None = None
    owners: str | None = None  # SteamSpy's owners range, e.g. "2,000,000 .. 5,000,000"
    matched_genres: list[str] = field(default_factory=list)  # of the genres asked for

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives, without its recursive deep copy (a third of the time
        # of an HTTP answer): the fields are scalars and strings but for the lists
        return {
            **self.__dict__,
            "genres": list(self.genres),
            "tags": list(self.tags),
            "matched_genres": list(self.matched_genres),
        }


@dataclass(frozen=True)
class HistoryReport:
    """What became of the games a request gave (``played``, ``achievements``, a library)."""

    given: int  # distinct appids given
    used: int  # in the model: they shape the answer
    not_in_model: list[int]  # in the catalog, but not in the trained model (yet)
    unknown: list[int]  # in no catalog gamerec has

    @property
    def known(self) -> int:
        return self.given - len(self.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "known": self.known,
            "used": self.used,
            "not_in_model_appids": list(self.not_in_model),
            "unknown_appids": list(self.unknown),
        }


_NO_HISTORY = HistoryReport(0, 0, [], [])


class Recommendations(list[Recommendation]):
    """A ranked list of :class:`Recommendation`, with what became of the given games."""

    def __init__(
        self,
        answers: Sequence[Recommendation] = (),
        history: HistoryReport = _NO_HISTORY,
        note: str | None = None,
    ):
        super().__init__(answers)
        self.history = history
        self.note = note

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [answer.to_dict() for answer in self],
            "history": self.history.to_dict(),
            "note": self.note,
        }


class _ListColumn(Sequence[list[str]]):
    """A ``list<string>`` column, one list per game, built on access.

    Converting 25,000 lists of tags to Python up front costs a tenth of a second of every
    ``gamerec recommend``; a request reads a few dozen. The distinct strings are few, so each
    list is a slice of codes into them.
    """

    def __init__(self, column: Any):
        array = column.combine_chunks()
        self._offsets = column_to_numpy(array.offsets)
        encoded = array.values.dictionary_encode()
        self.vocabulary: list[str] = [str(v) for v in encoded.dictionary.to_pylist()]
        self.codes = column_to_numpy(encoded.indices)
        self._cache: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        found = self._cache.get(item)
        if found is None:
            codes = self.codes[self._offsets[item] : self._offsets[item + 1]]
            found = self._cache[item] = [self.vocabulary[c] for c in codes.tolist()]
        return found

    def masks(self, n_rows: int) -> dict[str, np.ndarray]:
        """For each distinct lower-cased string, which of the first ``n_rows`` lists hold it."""
        lengths = np.diff(self._offsets[: n_rows + 1])
        rows = np.repeat(np.arange(n_rows), lengths)
        codes = self.codes[: len(rows)]
        out: dict[str, np.ndarray] = {}
        for code, value in enumerate(self.vocabulary):
            key = value.lower()
            mask = out.setdefault(key, np.zeros(n_rows, dtype=bool))
            mask[rows[codes == code]] = True
        return out


@dataclass
class _Catalog:
    """Every game of ``processed/items.parquet``; ``n_model``: how many the index holds (all)."""

    appids: np.ndarray  # (n,) int64, -1 where unknown
    names: list[str]
    genres: _ListColumn
    tags: _ListColumn
    players: np.ndarray  # (n,) training users owning it: the popularity fallback
    kinds: list[str]
    recommendable: np.ndarray  # (n,) bool: a game with an appid
    base_appids: np.ndarray  # (n,) int64: a DLC's base game, -1 where none
    release_years: np.ndarray  # (n,) int64, -1 where unknown
    owners_low: np.ndarray  # (n,) int64, -1 where unknown
    owners_high: np.ndarray
    n_model: int
    by_appid: dict[int, int] = field(default_factory=dict)
    _by_title: dict[str, list[int]] | None = None
    _lower_names: list[str] | None = None

    def owners(self, item: int) -> str | None:
        low, high = int(self.owners_low[item]), int(self.owners_high[item])
        return f"{low:,} .. {high:,}" if low >= 0 and high >= 0 else None

    @property
    def lower_names(self) -> list[str]:
        if self._lower_names is None:
            self._lower_names = [n.lower() for n in self.names]
        return self._lower_names

    @property
    def by_title(self) -> dict[str, list[int]]:
        """Normalised title -> positions (built on first use: only name lookups need it)."""
        if self._by_title is None:
            by_title: dict[str, list[int]] = {}
            for position, name in enumerate(self.names):
                by_title.setdefault(normalise_title(name), []).append(position)
            self._by_title = by_title
        return self._by_title

    @classmethod
    def read(cls, processed_dir: Path, n_model: int) -> _Catalog:
        columns = read_columns(
            processed_dir,
            "items",
            [
                "appid",
                "name",
                "genres",
                "tags",
                "n_users",
                "kind",
                "recommendable",
                "base_appid",
                "release_year",
                "owners_low",
                "owners_high",
            ],
        )
        if n_model != len(columns["appid"]):
            raise ArtifactError(
                f"the index holds {n_model:,} games, the catalog {len(columns['appid']):,}; "
                "run `gamerec index` again"
            )
        appids = column_to_numpy(columns["appid"], fill=-1).astype(np.int64)
        catalog = cls(
            appids=appids,
            names=[str(n) for n in columns["name"].to_pylist()],
            genres=_ListColumn(columns["genres"]),
            tags=_ListColumn(columns["tags"]),
            players=column_to_numpy(columns["n_users"]).astype(np.float64),
            kinds=[str(k) for k in columns["kind"].to_pylist()],
            recommendable=column_to_numpy(columns["recommendable"], fill=False),
            base_appids=column_to_numpy(columns["base_appid"], fill=-1).astype(np.int64),
            release_years=column_to_numpy(columns["release_year"], fill=-1).astype(np.int64),
            owners_low=column_to_numpy(columns["owners_low"], fill=-1).astype(np.int64),
            owners_high=column_to_numpy(columns["owners_high"], fill=-1).astype(np.int64),
            n_model=n_model,
        )
        catalog.by_appid = dict(
            zip(appids[appids >= 0].tolist(), np.flatnonzero(appids >= 0).tolist(), strict=True)
        )
        return catalog


class Recommender:
    """Recommendations from a workspace (``gamerec-data``) with processed/, model/ and index/."""

    def __init__(
        self,
        catalog: _Catalog,
        user_tower: NumpyUserTower,
        item_embeddings: np.ndarray,
        index: VectorIndex,
        known_users: dict[str, int] | Callable[[], tuple[dict[str, int], UserItems]],
        histories: UserItems | None,
        model_manifest: dict[str, Any],
        index_manifest: dict[str, Any],
        max_top_k: int = 1000,
        coplay: np.ndarray | None = None,
        coplay_rows: np.ndarray | None = None,
        trained: np.ndarray | None = None,
        new_games_share: float = 0.2,
    ):
        """``known_users`` maps user ids to rows of ``histories``; it may instead be a function
        returning both, called on first use (a process answering one ``--played`` request
        never reads the users). ``coplay_rows`` (one per game, -1 where none) is each game's
        row in ``coplay``, which covers only the games the model was trained on; without it
        game ``i`` is row ``i``. ``trained`` flags the games the model was trained on (default:
        all); the others are embedded from what the catalog says and take ``new_games_share``
        of each answer's places."""
        self.catalog = catalog
        self.user_tower = user_tower
        self.item_embeddings = item_embeddings
        self.index = index
        self._users_lock = threading.Lock()
        if callable(known_users):
            self._load_users: Callable[[], tuple[dict[str, int], UserItems]] | None = known_users
            self._known_users: dict[str, int] = {}
            self._histories = UserItems.from_pairs(
                np.empty(0), np.empty(0), None, 0, catalog.n_model
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
        if coplay_rows is None and coplay is not None:
            coplay_rows = np.arange(len(coplay), dtype=np.int32)
        self._coplay_rows = coplay_rows
        #: the catalog game of each co-play row (the co-play model covers trained games only)
        self._item_of_coplay_row = np.full(len(coplay) if coplay is not None else 0, -1, np.int64)
        if coplay_rows is not None and coplay is not None:
            known = coplay_rows >= 0
            self._item_of_coplay_row[coplay_rows[known]] = np.flatnonzero(known)
        self._rows_with_item = np.flatnonzero(self._item_of_coplay_row >= 0)
        self.rerank_alpha = float(rerank.get("alpha", 1.0))
        self.rerank_candidates = int(rerank.get("candidates", 200))
        self.coplay_candidates = int(rerank.get("coplay_candidates", 0))
        self.genres = list(model_manifest.get("genres", []))
        self._genre_lookup = {g.lower(): g for g in self.genres}
        tokens = list(model_manifest.get("tokens", []))
        self._token_position = {t: i for i, t in enumerate(tokens)}
        self._n_tokens = len(tokens)
        n = catalog.n_model
        genre_masks = catalog.genres.masks(n)
        self._genre_items = {
            key: genre_masks.get(key, np.zeros(n, dtype=bool)) for key in self._genre_lookup
        }
        #: what may be recommended to anyone: games with an appid
        self._games = catalog.recommendable[:n].copy()
        self._dlc = np.array([kind == Kind.DLC for kind in catalog.kinds[:n]], dtype=bool)
        self._popularity_order = np.argsort(-catalog.players[:n], kind="stable")
        #: games the model was trained on; the others' vectors come from the content mapping
        self._trained = np.ones(n, dtype=bool) if trained is None else np.asarray(trained, bool)
        self.new_games_share = new_games_share
        self._subsets: dict[bytes, tuple[np.ndarray, ExactIndex]] = {}
        #: item -> (appid, name, genres, top tags, release year, owners) as answers show them
        self._item_fields: dict[int, tuple[Any, ...]] = {}
        self._filter_masks: dict[frozenset[str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: id of a kept mask -> (the mask, its sub-index): no hashing for the kept filters
        self._subset_of_mask: dict[int, tuple[np.ndarray, tuple[np.ndarray, ExactIndex]]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dir(
        cls,
        data_dir: str | Path = "gamerec-data",
        max_top_k: int = 1000,
        rerank: bool = True,
        in_memory: bool = False,
        new_games_share: float = 0.2,
    ) -> Recommender:
        """Load ``processed/``, ``model/`` and ``index/`` of a workspace once.

        With ``rerank`` (and a model trained with its co-play re-ranker) the two-tower's
        candidates are re-ordered by the second stage. ``in_memory`` reads the co-play weights
        into memory instead of mapping them (a long-running server: a file truncated under a
        mapping would kill the process).
        """
        workspace = Workspace.at(data_dir)
        coplay: Literal["skip", "map", "copy"] = "skip"
        if rerank:
            coplay = "copy" if in_memory else "map"
        model = read_model(workspace.model, coplay=coplay)
        # a server loads once and checks every byte; a one-shot command checks the arrays'
        # shapes and types against the manifest but does not hash ~100 MB on every call
        index_manifest = read_index_manifest(workspace.index, verify=in_memory)
        check_index_matches(
            index_manifest,
            read_processed_manifest(workspace.processed),
            model.embeddings_fingerprint,
            workspace.index,
        )
        # every catalog game: trained vectors where the model knows it, mapped ones otherwise
        vectors = read_catalog_vectors(workspace.index, index_manifest, mmap=not in_memory)
        index = open_index(workspace.index, index_manifest, vectors)
        catalog = _Catalog.read(workspace.processed, vectors.n_items)
        user_tower = NumpyUserTower(
            {
                **model.user_tower,
                "history": vectors.history,
                "token_matrix": vectors.token_matrix,
            },
            manifest_playtime_weight(model.manifest),
        )

        def load_users() -> tuple[dict[str, int], UserItems]:
            users = read_columns(workspace.processed, "users", ["user_idx", "user_id"])
            user_ids = [str(u) for u in users["user_id"].to_pylist()]
            rows = read_columns(
                workspace.processed, "interactions", ["user_idx", "item_idx", "playtime_min"]
            )
            histories = UserItems.from_pairs(
                column_to_numpy(rows["user_idx"]),
                column_to_numpy(rows["item_idx"]),
                column_to_numpy(rows["playtime_min"]),
                len(user_ids),
                catalog.n_model,
            )
            return {user_id: i for i, user_id in enumerate(user_ids)}, histories

        return cls(
            catalog,
            user_tower,
            vectors.item_vectors,
            index,
            load_users,
            None,
            model.manifest,
            index_manifest,
            max_top_k=max_top_k,
            coplay=model.coplay,
            coplay_rows=vectors.model_rows,
            trained=np.asarray(vectors.model_rows) >= 0,
            new_games_share=new_games_share,
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
            or (
                self.coplay is not None
                and (
                    self._coplay_rows is None
                    or len(self._coplay_rows) != self.n_items
                    or self.coplay.shape[0] != self.coplay.shape[1]
                    or int(self._coplay_rows.max(initial=-1)) >= self.coplay.shape[0]
                )
            )
        ):
            raise ArtifactError(
                "processed/ and model/ disagree on the number of games; "
                "run `gamerec train` and `gamerec index` again"
            )
        try:
            if self.known_users:
                self.recommend(user_id=next(iter(self.known_users)), k=1)
            appid = next((int(a) for a in self.catalog.appids[: self.n_items] if a >= 0), None)
            if appid is not None:
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
        """Games in the model: what histories hold and the index searches."""
        return self.catalog.n_model

    def info(self) -> dict[str, Any]:
        """Versions and sizes, for ``/health``."""
        return {
            "items": self.n_items,
            "catalog_games": len(self.catalog.names),
            "users": len(self.known_users),
            "model": self.model_manifest.get("created"),
            "model_fingerprint": self.model_manifest.get("files", {}).get(EMBEDDINGS_FILE),
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
            raise AmbiguousNameError(query, [self._label(i) for i in partial[:20]])
        raise NotFoundError(
            f"no game named {query!r}; give part of the name (`gamerec similar portal`) or "
            "the appid; `gamerec serve` lists matching names at GET /items?q=portal"
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
    ) -> tuple[np.ndarray, np.ndarray, HistoryReport]:
        minutes: dict[int, float] = {}
        given: set[int] = set()
        not_in_model: list[int] = []
        unknown: list[int] = []
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
                if appid in given:
                    item = self.catalog.by_appid.get(appid)
                    if item is not None and item < self.n_items:
                        minutes[item] = max(minutes[item], amount * scale)
                    continue
                given.add(appid)
                item = self.catalog.by_appid.get(appid)
                if item is None:
                    unknown.append(appid)
                elif item >= self.n_items:
                    not_in_model.append(appid)
                else:
                    minutes[item] = amount * scale
        items = np.array(sorted(minutes), dtype=np.int32)
        values = np.array([minutes[i] for i in items], dtype=np.float32)
        report = HistoryReport(len(given), len(items), sorted(not_in_model), sorted(unknown))
        return items, values, report

    def _allowed(self, wanted: set[str], owned: np.ndarray, include_dlc: bool) -> np.ndarray:
        """(n_items,) bool: games that may be recommended, of the ``wanted`` genres."""
        allowed = self._games
        if include_dlc and len(owned):
            owned_appids = self.catalog.appids[owned]
            bases = self.catalog.base_appids[: self.n_items]
            allowed = allowed | (self._dlc & np.isin(bases, owned_appids[owned_appids >= 0]))
        if wanted:
            allowed = allowed & self._genre_mask(wanted)
        return allowed

    def _filters(
        self, wanted: set[str], owned: np.ndarray, include_dlc: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(allowed, allowed and trained, allowed and new) masks, kept per genre filter: the
        same few filters come back on every request (DLC depends on the player: not kept)."""
        key = frozenset(wanted)
        masks = None if include_dlc else self._filter_masks.get(key)
        if masks is None:
            allowed = self._allowed(wanted, owned, include_dlc)
            masks = (allowed, allowed & self._trained, allowed & ~self._trained)
            if not include_dlc and len(self._filter_masks) < _MAX_SUBSETS:
                for mask in masks:
                    mask.setflags(write=False)
                self._filter_masks[key] = masks
        return masks

    def recommend(
        self,
        user_id: str | None = None,
        played: Mapping[Any, float] | None = None,
        genres: Sequence[str] | None = None,
        achievements: Mapping[Any, int] | None = None,
        k: int = 10,
        exclude_owned: bool = True,
        include_dlc: bool = False,
    ) -> Recommendations:
        """Top-``k`` games for a known user, or for a history given as ``{appid: minutes}``.

        ``genres`` keeps only games of those genres; ``achievements`` (``{appid: unlocked}``)
        count as play where no playtime is given. Owned games never come back unless
        ``exclude_owned`` is False; DLC only with ``include_dlc``, and only for base games in
        the history. The answer's ``history`` says which given games were used and which are
        unknown or not in the model.
        """
        k = self._check_k(k)
        wanted = self._genre_set(genres)
        items, values, report = self._history_from(played, achievements)
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
        allowed, trained, new_games = self._filters(wanted, items, include_dlc)
        if len(items) == 0:
            note = "no played game known to the model: the most played games" + (
                f" of {self._genre_label(wanted)}" if wanted else ""
            )
            return Recommendations(self._popular(allowed, wanted, k), report, note)
        history = UserItems(np.array([0, len(items)], np.int64), items, values, self.n_items)
        user = self.user_tower.embed(history, self._preferences(wanted))
        excluded = items if exclude_owned else np.empty(0, dtype=np.int32)
        # games nobody in the play data owns rank among themselves: their mapped vectors sit
        # nearer the centre than trained ones, so in one list they would crowd everything out
        n_new = len(new_game_slots(k, self.new_games_share)) if new_games.any() else 0
        fresh = (
            [
                self._explain(item, score, items, wanted, prefix="new to gamerec's players; ")
                for item, score in self._search(user, n_new, excluded, new_games)
            ]
            if n_new
            else []
        )
        ranked = self._ranked_played(user, items, excluded, trained, wanted, k - len(fresh))
        return Recommendations(interleave(ranked, fresh, k, self.new_games_share), report)

    def _ranked_played(
        self,
        user: np.ndarray,
        items: np.ndarray,
        excluded: np.ndarray,
        allowed: np.ndarray,
        wanted: set[str],
        k: int,
    ) -> list[Recommendation]:
        """The top ``k`` games the model was trained on: two-tower, then the co-play stage."""
        if self.coplay is None:
            ranked = self._search(user, k, excluded, allowed)
            return [self._explain(item, score, items, wanted) for item, score in ranked]
        candidates = self._search(user, max(k, self.rerank_candidates), excluded, allowed)
        ids = self._with_coplay_candidates(
            np.array([item for item, _ in candidates], dtype=np.int64), items, excluded, allowed
        )
        first_stage = self.item_embeddings[ids] @ user[0]
        contributions = self._coplay_block(items, ids)  # (history, candidates)
        final = blend(first_stage[None], contributions.sum(0)[None], self.rerank_alpha)[0]
        order = np.argsort(-final, kind="stable")[:k]
        return [
            self._explain(
                int(ids[c]),
                float(final[c]),
                items,
                wanted,
                because=int(items[np.argmax(contributions[:, c])])
                if contributions[:, c].max() > 0
                else None,
            )
            for c in order
        ]

    def _with_coplay_candidates(
        self, ids: np.ndarray, owned: np.ndarray, excluded: np.ndarray, allowed: np.ndarray
    ) -> np.ndarray:
        """``ids`` and the co-play model's own top games among ``allowed`` not yet in them."""
        assert self.coplay is not None and self._coplay_rows is not None
        # in the co-play model's rows (the trained games), not the whole catalog's
        rows = self._coplay_rows
        eligible = np.zeros(self.coplay.shape[0], dtype=bool)
        with_item = self._rows_with_item
        eligible[with_item] = allowed[self._item_of_coplay_row[with_item]]
        for blocked in (ids, excluded):
            blocked_rows = rows[blocked]
            eligible[blocked_rows[blocked_rows >= 0]] = False
        owned_rows = rows[owned]
        extra_rows = coplay_candidates(
            self.coplay, owned_rows[owned_rows >= 0], self.coplay_candidates, eligible
        )
        if not len(extra_rows):
            return ids
        return np.concatenate([ids, self._item_of_coplay_row[extra_rows]])

    def _coplay_block(self, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(history, candidates) co-play weights. Co-play covers only the games the model was
        trained on: a candidate outside it gets its history's mean contribution over the
        other candidates, so its blended score rests on the first stage alone."""
        assert self.coplay is not None and self._coplay_rows is not None
        history_rows = self._coplay_rows[history]
        candidate_rows = self._coplay_rows[candidates]
        owned, known = history_rows >= 0, candidate_rows >= 0
        block = np.zeros((len(history), len(candidates)), dtype=np.float32)
        if owned.any() and known.any():
            block[np.ix_(owned, known)] = self.coplay[
                np.ix_(history_rows[owned], candidate_rows[known])
            ]
            if not known.all():
                block[:, ~known] = block[:, known].mean(1, keepdims=True)
        return block

    def _preferences(self, wanted: set[str]) -> np.ndarray | None:
        if not wanted:
            return None
        prefs = np.zeros((1, self._n_tokens), dtype=np.float32)
        for key in wanted:
            position = self._token_position.get(f"genre:{self._genre_lookup[key]}")
            if position is not None:
                prefs[0, position] = 1.0 / len(wanted)
        return prefs

    def _search(
        self, user: np.ndarray, k: int, excluded: np.ndarray, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        """The index's top ``k`` for one query, among ``allowed``, without ``excluded``."""
        query = user.astype(np.float32)
        subset = self._exact_subset(allowed)
        if subset is None:
            scores, ids = self.index.search(query, k, [excluded], allowed)
        else:
            # the same exact search over only the allowed rows: a request's filters (trained
            # or new games, a genre) repeat, and scanning 25,000 rows to keep 1,000 is the
            # larger part of a request
            members, index = subset
            position = np.searchsorted(members, excluded)
            inside = position < len(members)
            inside[inside] = members[position[inside]] == excluded[inside]
            scores, local = index.search(query, k, [position[inside]])
            ids = np.where(local >= 0, members[np.maximum(local, 0)], -1)
        keep = ids[0] >= 0
        return list(zip(ids[0][keep].tolist(), scores[0][keep].tolist(), strict=True))

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
            subset = self._subsets[key] = (members, ExactIndex(self.item_embeddings[members]))
        if not allowed.flags.writeable:  # a kept filter mask: found by identity next time
            self._subset_of_mask[id(allowed)] = (allowed, subset)
        return subset

    def _genre_mask(self, wanted: set[str]) -> np.ndarray:
        """(n_items,) bool: games having at least one of the ``wanted`` genres (read only)."""
        if len(wanted) == 1:  # the usual request: the precomputed mask, no work per request
            return self._genre_items[next(iter(wanted))]
        mask = np.zeros(self.n_items, dtype=bool)
        for genre in wanted:
            mask |= self._genre_items[genre]
        return mask

    def _genre_label(self, wanted: set[str]) -> str:
        return ", ".join(self._genre_lookup[g] for g in sorted(wanted))

    def _recommendation(
        self, item: int, score: float, reason: str, wanted: set[str]
    ) -> Recommendation:
        fields = self._item_fields.get(item)
        if fields is None:  # what a game shows never changes: read from the catalog once
            catalog = self.catalog
            appid = int(catalog.appids[item])
            year = int(catalog.release_years[item])
            fields = self._item_fields[item] = (
                appid if appid >= 0 else None,
                catalog.names[item],
                catalog.genres[item],
                catalog.tags[item][:5],
                year if year >= 0 else None,
                catalog.owners(item),
            )
        appid, name, genres, tags, release_year, owners = fields
        return Recommendation(
            appid=appid,
            name=name,
            score=round(float(score), 6),
            genres=genres,
            reason=reason,
            item_idx=int(item),
            tags=list(tags),
            release_year=release_year,
            owners=owners,
            matched_genres=[g for g in genres if g.lower() in wanted] if wanted else [],
        )

    def _explain(
        self,
        item: int,
        score: float,
        history: np.ndarray,
        wanted: set[str],
        because: int | None = None,
        prefix: str = "",
    ) -> Recommendation:
        """``because``: the played game that most supports ``item`` (default: the closest one)."""
        if because is None:
            similarity = self.item_embeddings[history] @ self.item_embeddings[item]
            because = int(history[int(np.argmax(similarity))])
        reason = f"{prefix}because you played {self.catalog.names[because]}"
        played_tags = set(self.catalog.tags[because])
        shared = [t for t in self.catalog.tags[item] if t in played_tags][:_REASON_TAGS]
        if shared:
            reason += f"; same tags: {', '.join(shared)}"
        return self._recommendation(item, score, reason, wanted)

    def _popular(self, allowed: np.ndarray, wanted: set[str], k: int) -> list[Recommendation]:
        order = self._popularity_order
        chosen = order[allowed[order]][:k]
        reason = (
            f"popular with players of {self._genre_label(wanted)}"
            if wanted
            else "popular with gamerec's players"
        )
        top = self.catalog.players[: self.n_items].max() or 1.0
        return [
            self._recommendation(int(i), self.catalog.players[i] / top, reason, wanted)
            for i in chosen
        ]

    def similar(self, game: int | str, k: int = 10) -> list[Recommendation]:
        """Games closest to ``game`` (an appid or a name) in the item embedding space."""
        k = self._check_k(k)
        item = self.resolve_game(game)
        name = self.catalog.names[item]
        if item >= self.n_items:
            raise NotFoundError(
                f"{name} is in the catalog but not in the model yet (nobody in the play data "
                "owns it); run `gamerec train` with data that includes it"
            )
        query = self.item_embeddings[item : item + 1]
        ranked = self._search(query, k, np.array([item]), self._games & self._trained)
        return [self._recommendation(i, s, f"similar to {name}", set()) for i, s in ranked]

    def recommend_all(
        self, k: int = 10, batch_size: int = 1024, max_entries: int = 65_536
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """For every known user, in batches: (user_ids, item_idx (b, k), scores (b, k)).

        Users come in batches of similar history length, not in user order. Owned games and
        what may not be recommended are never included; rows end in -1 when too few games
        are left. A batch holds at most ``batch_size`` users and ``max_entries`` history
        entries (one user at least), so the memory of embedding a batch stays flat however
        long the longest histories are.
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
            wanted_k = max(k, self.rerank_candidates) if self.coplay is not None else k
            owned = [batch.row(row) for row in range(batch.n_rows)]
            top_scores, top_ids = self.index.search(
                users, wanted_k, owned, self._games & self._trained
            )
            if self.coplay is not None:
                top_ids, top_scores = self._rerank_batch(batch, users, top_ids, k)
            yield [user_ids[r] for r in rows], top_ids[:, :k], top_scores[:, :k]

    def _rerank_batch(
        self, batch: UserItems, users: np.ndarray, ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Second stage for a batch of candidate lists (``-1`` marks no candidate), each
        widened by the co-play model's own top games."""
        assert self.coplay is not None
        top_ids = np.full((batch.n_rows, k), -1, dtype=np.int64)
        top_scores = np.full((batch.n_rows, k), -np.inf, dtype=np.float32)
        for row in range(batch.n_rows):
            owned = batch.row(row)
            found = ids[row][ids[row] >= 0]
            if len(owned):
                found = self._with_coplay_candidates(found, owned, owned, self._games)
            first = (self.item_embeddings[found] @ users[row])[None]
            # only the (owned x candidates) block, not whole rows of the matrix
            second = self._coplay_block(owned, found).sum(0)[None]
            final = blend(first, second, self.rerank_alpha)[0]
            order = np.argsort(-final, kind="stable")[:k]
            top_ids[row, : len(order)] = found[order]
            top_scores[row, : len(order)] = final[order]
        return top_ids, top_scores


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
