"""The Recommender: load the artifacts once, then answer in about a millisecond.

Never imports torch (the user tower runs in numpy) nor pandas (tables are read with pyarrow).
Ranking is the one engine's (:class:`~gamerec.ranking.RankingEngine`); this module turns
requests into its inputs (a known user's games, a :class:`~gamerec.dataio.history.History`,
genre filters) and its rows into answers with names and reasons. A user with no known game
(an unknown user id, only genres, or nothing) gets a genre-aware popularity fallback, and the
answer's note says so. Only games may come back: never a title without an appid, a DLC (unless
asked for, and then only for a base game the player owns), a soundtrack, a beta, a server, a
tool, a demo or a video. Every answer says which of the given games shaped it and which were
not known.
"""

from __future__ import annotations

import functools
import itertools
import numbers
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gamerec.artifacts.index import (
    check_index_matches,
    open_index,
    read_catalog_columns,
    read_catalog_vectors,
    read_index_manifest,
)
from gamerec.artifacts.model import EMBEDDINGS_FILE, ModelDescription, read_model
from gamerec.artifacts.processed import column_to_numpy, read_columns, read_processed_manifest
from gamerec.artifacts.workspace import Workspace
from gamerec.dataio.content import TokenRows
from gamerec.dataio.files import normalise_title
from gamerec.dataio.history import MAX_GAMES, History
from gamerec.dataio.ids import MAX_APPID, appid_or_none, is_appid_text
from gamerec.dataio.kinds import Kind
from gamerec.dataio.matrix import UserItems
from gamerec.errors import (
    AmbiguousNameError,
    ArtifactError,
    InvalidRequestError,
    NotFoundError,
)
from gamerec.ranking import Ranked, RankingEngine
from gamerec.ranking.stages import Editions, release_years
from gamerec.runtime.catalog import Catalog

__all__ = [
    "COMMAND_LINE",
    "HTTP",
    "HistoryReport",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "Wording",
]

#: how many shared tags a reason names
_REASON_TAGS = 2
#: a reason names only tags among the top this many of both games (tags come most voted first)
_TOP_TAGS = 5
#: filter masks kept per Recommender (one per distinct genre filter)
_MAX_FILTERS = 64
_NEW_PREFIX = "new to gamerec's players; "
_KEPT_PLACE_PREFIX = "new to gamerec's players (a place kept for new games); "


@dataclass(frozen=True)
class Wording:
    """How a message says what to give next: the command line names its options
    (``--played``), HTTP the JSON fields and paths of its requests (``time_played``)."""

    #: how to give a player's games, after an unknown user id
    give_games: str
    #: what to try after an appid the catalog does not have
    unknown_appid: str
    #: what to try after a name no game has
    unknown_name: str


#: the command line's words (and the library's, by default)
COMMAND_LINE = Wording(
    give_games="pass the player's games (--game Hades, --played 620:1200 or --library owned.json)",
    unknown_appid="try `gamerec similar` with a name, or search with /items?q=",
    unknown_name="give part of the name (`gamerec similar portal`) or the appid; "
    "`gamerec serve` lists matching names at GET /items?q=portal",
)
#: ``gamerec serve``'s words: the fields of a /recommend body, the paths of the endpoints
HTTP = Wording(
    give_games='send the player\'s games as time_played ({"620": 1200}, minutes), '
    'games (["Hades", 620], owned) or achievements ({"620": 12}, unlocked)',
    unknown_appid="try /similar/ with part of the name, or look the game up with GET /items?q=",
    unknown_name="give part of the name (/similar/portal) or the appid; GET /items?q=portal "
    "lists matching names",
)


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
    used: int  # known to the catalog: they shape the answer
    not_in_model: list[int]  # known, but nobody in the play data owns them (content-mapped)
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


def _year(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1970 <= value <= 2100:
        raise InvalidRequestError(f"released since must be a year like 2022; got {value!r:.40}")
    return value


def _with_since(
    note: str | None, since: int | None, answers: Sequence[Recommendation], k: int
) -> str | None:
    """The note, and a word when a release-year filter left fewer than ``k`` answers."""
    if since is None or len(answers) >= k:
        return note
    short = (
        f"only {len(answers)} of the {k} asked for were released in or after {since} (of the "
        "games whose release year gamerec knows; `gamerec fetch store` fills in more years)"
    )
    return f"{note}; {short}" if note else short


class Recommender:
    """Recommendations from a workspace (``gamerec-data``) with processed/, model/ and index/."""

    def __init__(
        self,
        catalog: Catalog,
        engine: RankingEngine,
        description: ModelDescription,
        known_users: dict[str, int] | Callable[[], tuple[dict[str, int], UserItems]],
        histories: UserItems | None = None,
        *,
        manifests: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
        max_top_k: int = 1000,
        content_rows: TokenRows | None = None,
    ):
        """``known_users`` maps user ids to rows of ``histories``; it may instead be a function
        returning both, called on first use (a process answering one ``--played`` request
        never reads the users). ``manifests``: the model's and the index's, for ``/health``.
        ``content_rows``: each catalog game's content tokens (default: the engine's, when its
        policy weighs closeness), which say when two games share a studio."""
        self.catalog = catalog
        self.engine = engine
        self.description = description
        self.model_manifest, self.index_manifest = manifests
        self.max_top_k = max_top_k
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
        self.genres = list(description.genres)
        self._token_position = {t: i for i, t in enumerate(description.tokens)}
        if content_rows is None and engine.content is not None:
            content_rows = engine.content.rows
        self._content_rows = content_rows
        self._studios_of: dict[int, frozenset[int]] = {}
        n = catalog.n_model
        #: what a filter word may name: a genre, else a tag of the catalog ("shooter", "fps",
        #: "roguelike" are tags), looked up by letters and digits alone ("rogue-like")
        self._filter_words: dict[str, str] = {}
        for tag in catalog.tags.vocabulary:
            self._filter_words.setdefault(normalise_title(tag), f"tag:{tag}")
        for genre in catalog.genres.vocabulary:
            self._filter_words[normalise_title(genre)] = f"genre:{genre}"
        for genre in self.genres:
            self._filter_words[normalise_title(genre)] = f"genre:{genre}"
        self._filter_items: dict[str, np.ndarray] = {}
        #: what may be recommended to anyone: games with an appid
        self._games = catalog.recommendable[:n].copy()
        self._games.setflags(write=False)
        self._dlc = np.asarray(catalog.kinds[:n], dtype=object) == str(Kind.DLC)
        # a player with no known game gets what is most owned on Steam today (the catalog's
        # SteamSpy owners, then its reviews), not what the play data's players of 2017 owned:
        # for "RPG" that is ELDEN RING, Cyberpunk 2077 and Baldur's Gate 3, where the play data
        # says Warframe, Skyrim and Robocraft. A catalog without owners falls back on players.
        owners = np.where(
            catalog.owners_low[:n] >= 0,
            (catalog.owners_low[:n] + catalog.owners_high[:n]) / 2,
            -1.0,
        )
        self._popularity_order = np.lexsort(
            (np.arange(n), -catalog.players[:n], -catalog.reviews[:n], -owners)
        )
        #: the score such an answer shows: owners over the most owned game's (players over
        #: the most played one's where the catalog has no owners)
        measure = np.maximum(owners, 0.0) if owners.max() > 0 else catalog.players[:n]
        self._popularity = measure / (float(measure.max()) or 1.0)
        #: item -> (appid, name, genres, top tags, release year, owners) as answers show them
        self._item_fields: dict[int, tuple[Any, ...]] = {}
        self._filter_masks: dict[frozenset[str], np.ndarray] = {}

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
        model = read_model(workspace.model, coplay=coplay, tower_item_arrays=False)
        description = model.description
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
        columns = read_catalog_columns(workspace.index, index_manifest)
        catalog = (
            Catalog.read(workspace.processed, vectors.n_items)
            if columns is None
            else Catalog.from_arrays(columns, vectors.n_items)
        )
        engine = RankingEngine.over_catalog(
            model,
            vectors,
            index,
            rerank=rerank,
            new_games_share=new_games_share,
            editions=Editions(catalog.family, np.asarray(vectors.model_rows) >= 0, catalog.players),
            release_years=release_years(catalog.appids, catalog.release_years),
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
            engine,
            description,
            load_users,
            manifests=(model.manifest, index_manifest),
            max_top_k=max_top_k,
            content_rows=None if vectors.content is None else TokenRows(*vectors.content),
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

    @property
    def item_embeddings(self) -> np.ndarray:
        return self.engine.item_vectors

    @property
    def new_games_share(self) -> float:
        """The share of each answer's places that go to games nobody in the play data owns."""
        return self.engine.policy.new_games_share

    @new_games_share.setter
    def new_games_share(self, share: float) -> None:
        self.engine.policy = replace(self.engine.policy, new_games_share=share)

    def check(self) -> None:
        """Load what is otherwise loaded on first use and answer trial requests.

        ArtifactError when something is unreadable or of the wrong shape: a server calls this
        before it swaps a freshly loaded Recommender in, so a broken workspace never serves.
        """
        self._ensure_users()
        played = self.histories.indices
        coplay = self.engine.coplay
        if (
            self.histories.n_items != self.n_items
            or (len(played) and not 0 <= int(played.min()) <= int(played.max()) < self.n_items)
            or (
                coplay is not None
                and (
                    len(coplay.rows) != self.n_items
                    or coplay.weights.shape[0] != coplay.weights.shape[1]
                    or int(coplay.rows.max(initial=-1)) >= coplay.weights.shape[0]
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
    def users(self, limit: int = 20) -> list[tuple[str, int]]:
        """Known user ids with how many games each owns, those with the most games first (a
        few examples to try ``recommend --user`` with)."""
        lengths = self.histories.row_lengths()
        order = np.argsort(-lengths, kind="stable")[: max(0, limit)]
        ids = list(self.known_users)
        return [(ids[row], int(lengths[row])) for row in order.tolist()]

    @property
    def n_items(self) -> int:
        """Games the engine ranks: every game of the catalog."""
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

    def resolve_game(self, game: int | str, wording: Wording = COMMAND_LINE) -> int:
        """item_idx of an appid or a name (case-insensitive; an ambiguous name lists candidates).

        ``wording``: whose words an unknown game's message uses (the command line's, HTTP's)."""
        # ASCII digits only: "²".isdigit() is True, and int("²") fails
        if isinstance(game, int) or (isinstance(game, str) and is_appid_text(game.strip())):
            appid = int(game)
            if appid in self.catalog.by_appid:
                return self.catalog.by_appid[appid]
            if isinstance(game, int):
                raise NotFoundError(f"appid {appid} is not in the catalog; {wording.unknown_appid}")
        query = str(game).strip()
        if not query:
            raise InvalidRequestError("an empty game name; give a name or an appid")
        lowered = query.lower()
        same = self.catalog.by_lower_name.get(lowered, [])
        if len(same) == 1:
            return same[0]
        # the title key keeps ASCII letters and digits alone: a name written in other letters
        # (封灵档案, История бомжа 2) would meet every name of its script, or the digits alone
        key = normalise_title(query)
        lost = any(char.isalnum() and not char.isascii() for char in query)
        exact = self.catalog.by_title.get(key, []) if key and not lost else same
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise AmbiguousNameError(query, [self._label(i) for i in exact])
        partial = [i for i, name in enumerate(self.catalog.lower_names) if lowered in name]
        if len(partial) == 1:
            return partial[0]
        if len(partial) > 1:
            partial.sort(key=lambda i: -self.catalog.players[i])
            raise AmbiguousNameError(query, [self._label(i) for i in partial[:20]])
        raise NotFoundError(
            f"no game named {query!r}{self._near_names(lowered)}; {wording.unknown_name}"
        )

    def _near_names(self, lowered: str, limit: int = 5, tries: int = 12) -> str:
        """`` (names with 'counter-strike': ...)``: the most owned games whose names hold the
        longest start of ``lowered`` that any name holds, or "" (a game renamed since the
        catalog's crawl, Counter-Strike 2 for Global Offensive, or a misspelt word: "the
        witcherr 3" meets "the witcher", "hollowknigt" "hollowkn"... "hollow"). A start is cut
        at a word's end or a letter at a time from its last word, down to 4 characters; each
        is a scan of every name, so at most ``tries`` are scanned (an HTTP request may send
        256 characters of nonsense)."""
        catalog = self.catalog
        for start in itertools.islice(_starts(lowered.split()), tries):
            near = [i for i, name in enumerate(catalog.lower_names) if start in name]
            if near:
                rank = np.empty(len(self._popularity_order), dtype=np.int64)
                rank[self._popularity_order] = np.arange(len(rank))
                near.sort(key=lambda i: rank[i])  # the most owned first, as `_popular` orders
                return f" (names with {start!r}: {', '.join(self._label(i) for i in near[:limit])})"
        return ""

    def games_owned(self, games: Sequence[int | str], wording: Wording = COMMAND_LINE) -> History:
        """``games`` (appids or names, found as :meth:`resolve_game` finds them: an ambiguous
        name lists its candidates) as a history of owned games, with no playtime: at the
        default settings owning a game is what counts (``train.playtime_weight`` 0). An appid
        no catalog has is kept, and the answer reports it as unknown, as for ``played``."""
        if isinstance(games, str | bytes):
            raise InvalidRequestError("games must be a list of names or appids, not one string")
        if len(games) > MAX_GAMES:
            raise InvalidRequestError(f"{len(games):,} games given; the limit is {MAX_GAMES:,}")
        played: dict[int, float] = {}
        for game in games:
            if isinstance(game, numbers.Integral) and not isinstance(game, bool):
                game = int(game)  # numpy's integers too
            elif not isinstance(game, str):
                raise InvalidRequestError(f"a game is a name or an appid; got {game!r:.40}")
            appid = appid_or_none(game.strip() if isinstance(game, str) else game)
            if isinstance(game, int) and appid is None:
                raise InvalidRequestError(
                    f"{str(game)[:40]} is not an appid (a whole number from 1 to {MAX_APPID:,})"
                )
            if appid is not None and appid not in self.catalog.by_appid:
                # digits may be a name too ("1942"); else an appid no catalog has, reported
                found = None if isinstance(game, int) else self._named(game, wording)
                if found is None:
                    played[appid] = 0.0
                    continue
                item = found
            else:
                item = self.resolve_game(game, wording)
            appid = int(self.catalog.appids[item])
            if appid < 0:
                raise NotFoundError(
                    f"{self.catalog.names[item]!r} is known by its name alone (no Steam appid), "
                    "so it cannot be given as a game owned; leave it out"
                )
            played[appid] = 0.0
        return History(played)

    def _named(self, name: str, wording: Wording) -> int | None:
        """The game ``name`` names, or None where none does (an ambiguous name still raises)."""
        try:
            return self.resolve_game(name, wording)
        except AmbiguousNameError:
            raise
        except NotFoundError:
            return None

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Catalog rows whose name contains ``query`` (case-insensitive), best matches first.

        An exact name comes first, then games before what is not a game (a DLC, a
        soundtrack, a demo, a title-only row); within each, names that start with the query,
        then names with a word that does ("Bridge Constructor Portal"), then the rest
        ("Teleportals"); within those, the most owned first (SteamSpy's owners, then the play
        data's players). Each row says its ``kind`` and ``release_year``.
        """
        lowered = " ".join(query.lower().split())
        if not lowered:
            return []
        names = self.catalog.lower_names
        hits = [i for i, name in enumerate(names) if lowered in name]
        key = normalise_title(lowered)
        word = re.compile(r"(?<![^\W_])" + re.escape(lowered))
        catalog = self.catalog

        def order(item: int) -> tuple[Any, ...]:
            name = names[item]
            exact = name == lowered or (key != "" and normalise_title(name) == key)
            if name.startswith(lowered):
                match = 0
            elif word.search(name):
                match = 1
            else:
                match = 2
            owners = max(int(catalog.owners_low[item]), int(catalog.owners_high[item]))
            return (
                not exact,
                catalog.kinds[item] != Kind.GAME,
                match,
                -owners,
                -catalog.players[item],
                name,
            )

        hits.sort(key=order)
        return [self.item_summary(i) for i in hits[: max(1, limit)]]

    def _label(self, item: int) -> str:
        appid = self.catalog.appids[item]
        return (
            f"{self.catalog.names[item]} (appid {appid})"
            if appid >= 0
            else self.catalog.names[item]
        )

    def item_summary(self, item: int) -> dict[str, Any]:
        """Catalog row ``item`` as a search shows it: appid (None for a title-only row), name,
        genres, kind (``game``, ``dlc``, ``soundtrack``, ...) and release year (None: unknown)."""
        catalog = self.catalog
        appid = int(catalog.appids[item])
        year = int(catalog.release_years[item])
        return {
            "appid": appid if appid >= 0 else None,
            "name": catalog.names[item],
            "genres": catalog.genres[item],
            "kind": catalog.kinds[item],
            "release_year": year if year >= 0 else None,
            "item_idx": int(item),
        }

    def _check_k(self, k: int) -> int:
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidRequestError(f"top-k must be a positive integer, got {k!r}")
        if k > self.max_top_k:
            raise InvalidRequestError(f"top-k {k} is above the limit of {self.max_top_k}")
        return min(k, self.n_items)

    def _genre_set(self, genres: Sequence[str] | None) -> set[str]:
        """The filter words as catalog tokens (``genre:RPG``, ``tag:Shooter``): a genre where
        one is meant, else a tag the catalog knows; anything else is refused, naming both."""
        chosen = set()
        for genre in genres or []:
            token = self._filter_words.get(normalise_title(str(genre)))
            if token is None:
                raise NotFoundError(
                    f"unknown genre or tag {genre!r}; genres: {', '.join(self.genres)}; or any "
                    "tag of the catalog, such as shooter, fps, roguelike, open world, co-op"
                )
            chosen.add(token)
        return chosen

    # ------------------------------------------------------------------ recommending
    def _resolve_history(self, history: History) -> tuple[np.ndarray, np.ndarray, HistoryReport]:
        """The catalog rows and minutes of the given games, and what became of each."""
        minutes: dict[int, float] = {}
        not_in_model: list[int] = []
        unknown: list[int] = []
        trained = self.engine.trained
        for appid, amount in history.minutes().items():
            item = self.catalog.by_appid.get(appid)
            if item is None:
                unknown.append(appid)
                continue
            minutes[item] = amount
            if not trained[item]:
                not_in_model.append(appid)
        items = np.array(sorted(minutes), dtype=np.int32)
        values = np.array([minutes[i] for i in items], dtype=np.float32)
        given = len(history.appids)
        report = HistoryReport(given, len(items), sorted(not_in_model), sorted(unknown))
        return items, values, report

    def _allowed(
        self,
        wanted: set[str],
        owned: np.ndarray,
        include_dlc: bool,
        released_since: int | None = None,
    ) -> np.ndarray:
        """(n_items,) bool: games that may be recommended, of the ``wanted`` genres or tags,
        released in or after ``released_since`` (a year). Kept read-only per filter (the
        engine keeps its sub-indexes by identity); DLC depends on the player and is not kept."""
        key = frozenset(wanted | ({f"since:{released_since}"} if released_since else set()))
        kept = None if include_dlc else self._filter_masks.get(key)
        if kept is not None:
            return kept
        allowed = self._games
        if include_dlc and len(owned):
            owned_appids = self.catalog.appids[owned]
            bases = self.catalog.base_appids[: self.n_items]
            allowed = allowed | (self._dlc & np.isin(bases, owned_appids[owned_appids >= 0]))
        if wanted:
            allowed = allowed & self._genre_mask(wanted)
        if released_since is not None:
            allowed = allowed & (self.catalog.release_years[: self.n_items] >= released_since)
        if not include_dlc and len(self._filter_masks) < _MAX_FILTERS:
            allowed.setflags(write=False)
            self._filter_masks[key] = allowed
        return allowed

    def recommend(
        self,
        user_id: str | None = None,
        played: Mapping[Any, float] | None = None,
        genres: Sequence[str] | None = None,
        achievements: Mapping[Any, int] | None = None,
        k: int = 10,
        exclude_owned: bool = True,
        include_dlc: bool = False,
        history: History | None = None,
        released_since: int | None = None,
        wording: Wording = COMMAND_LINE,
        games: Sequence[int | str] | None = None,
    ) -> Recommendations:
        """Top-``k`` games for a known user, or for a history given as ``{appid: minutes}``.

        ``genres`` keeps only games of those genres (or tags: "shooter", "roguelike");
        ``released_since`` only games released in or after that year (a game whose year no
        source knows is left out, and the note says so when fewer than ``k`` are left);
        ``achievements`` (``{appid: unlocked}``) count as play where no playtime is given;
        ``history`` is the same given as a :class:`~gamerec.dataio.history.History`;
        ``games`` are owned games by name or appid (:meth:`games_owned`). Owned
        games never come back unless ``exclude_owned`` is False; DLC only with
        ``include_dlc``, and only for base games in the history. The answer's ``history`` says
        which given games were used and which are unknown. A user id gamerec does not know is
        answered like a new user, and the note says so, in ``wording``'s words (the command
        line's by default; :data:`HTTP` names the fields of a /recommend body).
        """
        k = self._check_k(k)
        released_since = _year(released_since)
        wanted = self._genre_set(genres)
        given = History.from_mappings(played, achievements)
        if history is not None:
            given = given.merged(history)
        if games:
            given = given.merged(self.games_owned(games, wording))
        items, values, report = self._resolve_history(given)
        unknown_user = None
        if user_id is not None:
            row = self.known_users.get(str(user_id))
            if row is None:
                unknown_user = str(user_id)
            else:
                items, values = self._with_known_games(row, items, values)
        allowed = self._allowed(wanted, items, include_dlc, released_since)
        if len(items) == 0:
            popular = self._popular(allowed, wanted, k)
            fallback = self._fallback_note(unknown_user, wanted, wording)
            return Recommendations(
                popular, report, _with_since(fallback, released_since, popular, k)
            )
        one = UserItems(np.array([0, len(items)], np.int64), items, values, self.n_items)
        ranked = self.engine.rank(
            one,
            k,
            allowed,
            exclude=[items] if exclude_owned else [np.empty(0, dtype=np.int64)],
            preferences=self._preferences(wanted),
            explain=True,
        )
        note: str | None = None
        if unknown_user is not None:
            note = (
                f"unknown user {unknown_user!r}: answered from the games given; "
                "`gamerec users` lists the known ids"
            )
        answers = self._answers(ranked, 0, items, wanted)
        return Recommendations(answers, report, _with_since(note, released_since, answers, k))

    def _with_known_games(
        self, row: int, items: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A known user's games from ``processed/``, with any games given on top."""
        start, end = self.histories.indptr[row], self.histories.indptr[row + 1]
        merged = dict(
            zip(
                self.histories.indices[start:end].tolist(),
                self.histories.values[start:end].tolist(),
                strict=True,
            )
        )
        for item, value in zip(items.tolist(), values.tolist(), strict=True):
            merged[item] = max(merged.get(item, 0.0), value)
        items = np.array(sorted(merged), dtype=np.int32)
        return items, np.array([merged[i] for i in items], dtype=np.float32)

    def _fallback_note(self, unknown_user: str | None, wanted: set[str], wording: Wording) -> str:
        what = "the most owned " + (f"{self._genre_label(wanted)} " if wanted else "")
        what += "games on Steam"
        if unknown_user is None:
            return f"no played game known to the model: {what}"
        return (
            f"unknown user {unknown_user!r}: {what}; `gamerec users` lists the known ids, or "
            f"{wording.give_games}"
        )

    def _answers(
        self, ranked: Ranked, row: int, history: np.ndarray, wanted: set[str]
    ) -> list[Recommendation]:
        """Row ``row`` of the engine's answer as recommendations with their reasons."""
        answers = []
        because = ranked.because
        scores = ranked.scores[row]
        # a new game above a higher score holds one of the places kept for new games
        # (recommend.new_games_share): the reason says so, or the column would read as a mistake
        best_below = np.r_[np.maximum.accumulate(scores[::-1])[::-1][1:], -np.inf]
        kept = ranked.new[row] & (scores < best_below)
        for place in np.flatnonzero(ranked.items[row] >= 0).tolist():
            item = int(ranked.items[row, place])
            supporter = int(because[row, place]) if because is not None else -1
            prefix = ""
            if ranked.new[row, place]:
                prefix = _KEPT_PLACE_PREFIX if kept[place] else _NEW_PREFIX
            answers.append(
                self._recommendation(
                    item,
                    float(ranked.scores[row, place]),
                    self._reason(item, supporter, prefix),
                    wanted,
                )
            )
        return answers

    def _reason(self, item: int, because: int, prefix: str = "") -> str:
        if because < 0:
            return prefix.rstrip("; ") or "popular with gamerec's players"
        reason = f"{prefix}because you played {self.catalog.names[because]}"
        if self._same_studio(item, because):
            reason += "; same studio"
        shared = self._shared_tags(item, because)
        if shared:
            reason += f"; same tags: {', '.join(shared)}"
        return reason

    @functools.cached_property
    def _studio_tokens(self) -> np.ndarray:
        """(T,) the model's content tokens that name a developer (made on the first reason,
        not at load: a process that answers nothing never pays for it)."""
        return np.array([t.startswith("dev:") for t in self.description.content_tokens], dtype=bool)

    def _same_studio(self, item: int, other: int) -> bool:
        """Whether two games share a developer (by the content tokens the index keeps)."""
        if self._content_rows is None:
            return False
        return not self._studios(item).isdisjoint(self._studios(other))

    def _studios(self, item: int) -> frozenset[int]:
        """A game's developer tokens (read once: an answer asks of the same games again)."""
        studios = self._studios_of.get(item)
        if studios is None:
            assert self._content_rows is not None
            rows, is_studio = self._content_rows, self._studio_tokens
            tokens = (
                rows.indices[rows.indptr[item] : rows.indptr[item + 1]]
                if item < rows.n_rows
                else np.empty(0, dtype=np.int64)
            )
            tokens = tokens[tokens < len(is_studio)]  # a token the model does not name: none
            studios = self._studios_of[item] = frozenset(tokens[is_studio[tokens]].tolist())
        return studios

    def _shared_tags(self, item: int, other: int) -> list[str]:
        """The tags that matter most to both games: among the top tags of each (a game's tags
        are listed by players' votes), those they share, best placed in both first."""
        mine = self.catalog.tags[item][:_TOP_TAGS]
        theirs = {tag: place for place, tag in enumerate(self.catalog.tags[other][:_TOP_TAGS])}
        shared = [
            (place + theirs[tag], place, tag) for place, tag in enumerate(mine) if tag in theirs
        ]
        return [tag for _, _, tag in sorted(shared)[:_REASON_TAGS]]

    def _preferences(self, wanted: set[str]) -> np.ndarray | None:
        if not wanted:
            return None
        prefs = np.zeros((1, len(self._token_position)), dtype=np.float32)
        for token in wanted:
            position = self._token_position.get(token)
            if position is not None:
                prefs[0, position] = 1.0 / len(wanted)
        return prefs

    def _genre_mask(self, wanted: set[str]) -> np.ndarray:
        """(n_items,) bool: games having at least one of the ``wanted`` genres or tags (read
        only; each is computed on first use and kept)."""
        masks = []
        for token in sorted(wanted):
            mask = self._filter_items.get(token)
            if mask is None:
                kind, name = token.split(":", 1)
                column = self.catalog.genres if kind == "genre" else self.catalog.tags
                mask = column.mask(name, self.n_items)
                mask.setflags(write=False)
                self._filter_items[token] = mask
            masks.append(mask)
        return masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)

    def _genre_label(self, wanted: set[str]) -> str:
        return ", ".join(token.split(":", 1)[1] for token in sorted(wanted))

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
            matched_genres=self._matched(item, wanted) if wanted else [],
        )

    def _matched(self, item: int, wanted: set[str]) -> list[str]:
        """The genres and tags asked for that ``item`` has."""
        has = {f"genre:{g}" for g in self.catalog.genres[item]}
        has |= {f"tag:{t}" for t in self.catalog.tags[item]}
        return [token.split(":", 1)[1] for token in sorted(wanted & has)]

    def _popular(self, allowed: np.ndarray, wanted: set[str], k: int) -> list[Recommendation]:
        """The most owned games on Steam among ``allowed``, scored by ``_popularity``."""
        order = self._popularity_order
        chosen = order[allowed[order]][:k]
        reason = (
            f"among the most owned {self._genre_label(wanted)} games on Steam"
            if wanted
            else "among the most owned games on Steam"
        )
        return [
            self._recommendation(int(i), float(self._popularity[i]), reason, wanted) for i in chosen
        ]

    def similar(
        self, game: int | str, k: int = 10, wording: Wording = COMMAND_LINE
    ) -> list[Recommendation]:
        """Games like ``game`` (an appid or a name), through the one engine: the game's own
        vector is the query, the co-play model ranks what its players also own, and games
        nobody in the play data owns compete on merit. A game nobody in the play data owns is
        asked about by what the catalog says of it. Each answer says why in one line.
        ``wording``: whose words an unknown game's message uses (see :meth:`resolve_game`)."""
        k = self._check_k(k)
        item = self.resolve_game(game, wording)
        one = UserItems(
            np.array([0, 1], np.int64),
            np.array([item], np.int32),
            np.zeros(1, np.float32),
            self.n_items,
        )
        query = self.item_embeddings[item : item + 1]
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        engine, policy = self.engine, self.engine.policy
        if policy.new_games is not None and (
            policy.new_games.history_weight or policy.new_games.older
        ):
            # one game asked about is not a player: how many of a player's games are new says
            # how far new games should rise for them, not what is like this game (with the
            # weight, every popular new game rose above Transistor and Bastion for Hades), and
            # what came before the game is as like it as what came after (Dead Cells for Hades)
            alone = replace(policy.new_games, history_weight=0.0, older=0.0)
            engine = engine.with_policy(replace(policy, new_games=alone), share_stages=False)
        ranked = engine.rank(
            one, k, self._allowed(set(), one.indices, False), queries=query.astype(np.float32)
        )
        name = self.catalog.names[item]
        shown = ranked.items[0][ranked.items[0] >= 0]
        coplay = engine.coplay
        played_by_some = bool(engine.trained[item])
        co_owned = (
            coplay.block(np.array([item]), shown)[0] > 0
            if coplay is not None and played_by_some and len(shown)
            else np.zeros(len(shown), dtype=bool)
        )
        answers = []
        for place, other in enumerate(shown.tolist()):
            if ranked.new[0, place]:
                why = "new to gamerec's players"
            elif co_owned[place]:
                why = f"players of {name} own it too"
            elif played_by_some:
                why = f"liked by the players who like {name}"
            else:  # nobody in the play data owns the game asked about: its vector is a guess
                why = f"liked by the players of games like {name}"
            if self._same_studio(other, item):
                why += "; same studio"
            shared = self._shared_tags(other, item)
            if shared:
                why += f"; same tags: {', '.join(shared)}"
            answers.append(self._recommendation(other, float(ranked.scores[0, place]), why, set()))
        return answers

    def recommend_all(
        self, k: int = 10, batch_size: int = 1024, max_entries: int = 65_536
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """For every known user, in batches: (user_ids, item_idx (b, k), scores (b, k)).

        Each row is what ``recommend(user_id=...)`` answers for that user (the same engine
        on the same history). Users come in batches of similar history length, not in user
        order. Owned games and what may not be recommended are never included; rows end in
        -1 when too few games are left. A batch holds at most ``batch_size`` users and
        ``max_entries`` history entries (one user at least), so the memory of embedding a
        batch stays flat however long the longest histories are.
        """
        k = self._check_k(k)
        user_ids = list(self.known_users)
        # batches of similar history length: each batch over-fetches by its longest history
        lengths = self.histories.row_lengths()
        by_length = np.argsort(lengths, kind="stable")
        ends = np.cumsum(lengths[by_length])
        allowed = self._allowed(set(), np.empty(0, dtype=np.int32), False)
        start = 0
        while start < len(user_ids):
            budget = (ends[start - 1] if start else 0) + max_entries
            stop = min(start + batch_size, int(np.searchsorted(ends, budget, side="right")))
            rows = by_length[start : max(stop, start + 1)]
            start += len(rows)
            ranked = self.engine.rank(self.histories.take_rows(rows), k, allowed)
            yield [user_ids[r] for r in rows], ranked.items, ranked.scores


def _starts(words: list[str]) -> Iterator[str]:
    """The starts of a name to look for, longest first (see ``Recommender._near_names``)."""
    for n in range(len(words), 0, -1):
        head, last = words[: n - 1], words[n - 1]
        # the whole query failed: its last word is cut by a letter at least
        longest = len(last) - 1 if n == len(words) else len(last)
        for cut in range(longest, 0, -1):
            start = " ".join([*head, last[:cut]])
            if len(start) < 4:
                break
            yield start
