"""What an app is: a game, or something a player owns that is not a game to recommend.

**The Steam store's word comes first.** Where the store's ``appdetails`` was fetched (``gamerec
fetch store``, input kind ``store``), :func:`kind_from_store` decides from its ``type``:
``dlc`` -> ``dlc``, ``demo`` -> ``demo``, ``music`` -> ``soundtrack``, ``video``/``series``/
``episode`` -> ``video``, ``game``/``mod`` -> ``game``; the base game of a DLC, demo or soundtrack
is the store's ``fullgame``. Two refinements keep what the rules below say more precisely than
the store's types can: a ``dlc`` whose name says soundtrack ("Tricky Fox - Soundtrack", 7 of the
205 DLC of the store fixtures) is a soundtrack (the store types newer ones ``music``), and a
``game`` that the name rules call a beta, server, benchmark or tool, or whose genres make it a
tool (rule 3 below: 9 of the 318 games of the store fixtures, "Game Character Hub", "KARA
Accounting", "GameGuru MAX"), keeps that kind: the store lists betas, dedicated servers,
benchmarks and software as games. A type gamerec does not map (``hardware``, ``advertising``)
leaves the app to the rules below. In the bundled catalog the store decides 116 rows (the apps
of the three store shards it holds, ``build_catalog.py --store``; 1 DLC, 2 tools). Without
store data,

:func:`classify` decides one :class:`Kind` per catalog row, in this order (the first rule that
fires wins). Counts are measured on the bundled catalog (``catalog-2025-01-01.parquet``: the
24,012 SteamSpy apps with 20,000+ owners plus 774 apps steam-200k's titles link to, less one
app no source names: 24,785 rows, 24,282 of them games) by ``scripts/build_catalog.py``, which
prints them.

1. **No appid** -> ``title-only``: a player cannot find or buy it (steam-200k titles that link
   to no store app, e.g. "Arma 2 Operation Arrowhead Beta (Obsolete)"). Never in the catalog
   itself, which is keyed by appid.
2. **Name rules** (:func:`kind_from_name`), on the name with ``™®©`` removed and only the part
   before a ``" + "`` (``"Sinless + OST"``, ``"KINGDOM HEARTS III + Re Mind (DLC)"`` and
   ``"Fasaria World: Ancients of Moons + Server"`` are the game *with* an extra: games). A name
   says most precisely what is in the box, so it beats the source types (UCSD types
   "Nusakana OST" as DLC, the name makes it a soundtrack).

   - ``beta`` (33 rows; "Secret Neighbor Beta", "Tribes of Midgard - Open Beta", "Just Survive
     Test Server", "Serious Sam Fusion 2017 (beta)", "Everland (Stress Test)"): ``(Obsolete)``
     anywhere; "Public Test", "Test Server", "Test Realm", "Open/Closed/Public Beta" anywhere;
     "Beta", "PTS" or "Playtest" as the last word; ``" - Test"`` as the last part ("PlanetSide 2
     - Test"); "(…Beta)", "(…Test)" in brackets. "Beta Runner", "The Test", "The Turing Test",
     "Test Drive Unlimited 2" stay games: "Beta" or "Test" must end the name or be bracketed.
     "Bigscreen Beta" (an app that kept the word) is counted a beta too.
   - ``server`` (4 rows; "Left 4 Dead 2 Dedicated Server", "Unturned - Dedicated Server",
     "ASTA : ASTA Server"): "Dedicated Server" anywhere, or "Server" as the last word ("Test
     Server" is caught above). ">observer_" and "Observers" stay games (whole words only).
   - ``benchmark`` (11 rows; "3DMark", "3DMark 11", "Resident Evil 6 Benchmark Tool", "Bright
     Memory: Infinite Ray Tracing Benchmark"): the word "Benchmark(s)", a name starting with
     "3DMark", "Performance Test", "Stress Test" not in brackets ("Star Swarm Stress Test").
   - ``soundtrack`` (44 rows; "Always Sometimes Monsters - Soundtrack", "Dreaming Sarah OST",
     "Cognition - Original Soundtrack Vol 1"): "Soundtrack"/"Sound Track"/"OST" as the last
     word, optionally followed by a volume number, "DLC" or a bracketed note; or "Soundtrack
     by …" / "Soundtrack and|& …" (soundtrack bundles: "Soundtrack and Artbook"). SteamSpy's
     ``all`` list holds no soundtrack at all; every one comes from the steam-200k links.
   - ``demo`` (18 rows; "Resident Evil 3: Raccoon City Demo", "HOMEFRONT Demo", "Alice |
     愛莉澄【Demo】", "Seance: The Unquiet (Demo 1)"): "Demo" as the last word (with an optional
     number) or inside brackets. "Demon", "Democracy 3", "Demolition Inc." stay games.
   - ``tool`` by name (9 rows; "Arma 3 Tools", "DayZ Tools", "Skyrim Script Extender (SKSE)",
     "Leadwerks Game Launcher", "VTuber Editor"; "tModLoader" in a 2025 library): "SDK", "Mod
     Tools", "Modding Tool(s)", "Workshop Tool(s)", "Authoring Tool(s)", "Script Extender",
     "ModLoader"/"Mod Loader", "Character Creator", "Editor" or "Launcher" as the last word,
     "Tools" right after the product's name as the last word. "Hidden Object - Tools" (a
     subtitle after a dash), "Tools Up!", "Unreal Tournament 2004: Editor's Choice Edition"
     stay games.
   - ``video`` (8 rows; "DeoVR Video Player", "Whirligig VR Media Player"): "Video Player",
     "Media Player", "Movie Player".
   - ``dlc`` by name (29 rows; "Hamilton's Great Adventure - Retro Fever DLC", "BioShock
     Infinite - Season Pass", "Outlast: Whistleblower DLC"): "DLC" as the last
     word or "(DLC)", "Season Pass", "Expansion Pass". "DLC Quest" stays a game.

3. **Source types** (:func:`kind_from_types`), what a store listing says:

   - UCSD ``specs`` "Game demo" -> ``demo`` (4 rows: "Saints Row: The Third Initiation
     Station"); "Downloadable Content" -> ``soundtrack`` when the tags hold "Soundtrack", else
     ``dlc`` (213 rows: "Fallout 3 - Point Lookout", "DOOM 3 Resurrection of Evil"). UCSD types
     12,691 apps as DLC and none of them is in SteamSpy's 2025 ``all`` list (SteamSpy lists no
     DLC), nor in steam.csv.
   - genres (SteamSpy appdetails ``genre``, steam.csv ``genres``, UCSD ``genres``) holding a
     software genre (Utilities, Design & Illustration, Animation & Modeling, Video Production,
     Audio Production, Photo Editing, Web Publishing, Game Development, Software Training,
     Accounting), or "Education" without a game genre -> ``tool`` (117 rows: "Wallpaper
     Engine", "Blender", "RPG Maker MV"). Software genres on games are rare: 23 of the 214
     steam.csv apps with one also have a game genre, nearly all VR or music apps.
   - tags "Movie", "Documentary", "Feature Film" or "360 Video" with no game genre -> ``video``
     (10 rows: "Indie Game: The Movie", "Free to Play"). "Showing Tonight: Mindhunters
     Incident" (Adventure, tag Movie) stays a game; "Short" is a game tag ("Pony Island").
   - steam.csv ``categories`` carry no type (Nik Davis's table holds no DLC and no demos), and
     SteamSpy's ``all`` pages carry neither genres nor tags.

4. Everything else is a ``game``.

A DLC may be recommended only to a player who owns its base game: :func:`find_base_appid`
finds it as the longest catalog game whose name's words begin the DLC's name ("Fallout 3 -
Point Lookout" -> "Fallout 3"), not followed by a sequel number: 211 of the 243 DLC rows get
one ("Defense Grid: Resurgence Map Pack 1" does not: its base is "Defense Grid: The
Awakening").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

__all__ = [
    "GAME_GENRES",
    "KINDS",
    "KINDS_WITH_BASE",
    "RECOMMENDABLE_KINDS",
    "RULE_DEFAULT",
    "RULE_NAME",
    "RULE_NO_APPID",
    "RULE_TYPES",
    "SOFTWARE_GENRES",
    "Kind",
    "base_key",
    "classify",
    "classify_why",
    "find_base_appid",
    "kind_from_name",
    "kind_from_store",
    "kind_from_types",
]


class Kind(StrEnum):
    GAME = "game"
    DLC = "dlc"
    SOUNDTRACK = "soundtrack"
    BETA = "beta"
    SERVER = "server"
    TOOL = "tool"
    BENCHMARK = "benchmark"
    DEMO = "demo"
    VIDEO = "video"
    TITLE_ONLY = "title-only"


KINDS: tuple[str, ...] = tuple(kind.value for kind in Kind)
RECOMMENDABLE_KINDS: frozenset[Kind] = frozenset({Kind.GAME})
#: the kinds that belong to a base game (the store's ``fullgame``); only a DLC's decides what
#: may be recommended
KINDS_WITH_BASE: frozenset[Kind] = frozenset({Kind.DLC, Kind.DEMO, Kind.SOUNDTRACK})

GAME_GENRES = frozenset(
    {
        "Action",
        "Adventure",
        "Casual",
        "Massively Multiplayer",
        "RPG",
        "Racing",
        "Simulation",
        "Sports",
        "Strategy",
    }
)
SOFTWARE_GENRES = frozenset(
    {
        "Accounting",
        "Animation & Modeling",
        "Audio Production",
        "Design & Illustration",
        "Game Development",
        "Photo Editing",
        "Software Training",
        "Utilities",
        "Video Production",
        "Web Publishing",
    }
)
_VIDEO_TAGS = frozenset({"Movie", "Documentary", "Feature Film", "360 Video"})
_DLC_SPEC = "Downloadable Content"
_DEMO_SPEC = "Game demo"

_MARKS = re.compile(r"[™®©]")
_SPACES = re.compile(r"\s+")
_END = r"[\W_]*$"  # trailing punctuation, quotes and closing brackets
_OPEN, _CLOSE = r"[(\[【（]", r"[)\]】）]"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_NAME_RULES: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (Kind.BETA, _rx(r"\(obsolete\)")),
    (Kind.BETA, _rx(r"\bpublic test\b|\btest (?:server|realm)\b|\b(?:open|closed|public) beta\b")),
    (Kind.BETA, _rx(r"\b(?:beta|pts|playtest)" + _END)),
    (Kind.BETA, _rx(r"\s[-–]\s*test" + _END)),
    (Kind.BETA, _rx(_OPEN + r"[^()\[\]]*\b(?:beta|test)" + _CLOSE)),
    (Kind.SERVER, _rx(r"\bdedicated server\b|\bserver" + _END)),
    (Kind.BENCHMARK, _rx(r"\bbenchmarks?\b|^3dmark\b|\bperformance test\b|\bstress test\b")),
    (
        Kind.SOUNDTRACK,
        _rx(
            r"\b(?:sound ?track|ost)(?:\s*(?:vol(?:ume)?\.?\s*\d+|\d+|dlc|"
            + _OPEN
            + r"[^()\[\]]*"
            + _CLOSE
            + r"))*"
            + _END
        ),
    ),
    (Kind.SOUNDTRACK, _rx(r"\bsound ?track (?:by|and|&)\s")),
    (Kind.DEMO, _rx(r"\bdemo(?:\s*\d+)?" + _END)),
    (Kind.DEMO, _rx(_OPEN + r"[^()\[\]]*\bdemo(?:\s*\d+)?\s*" + _CLOSE)),
    (
        Kind.TOOL,
        _rx(
            r"\bsdk\b|\bmod(?:ding)? tools?\b|\b(?:workshop|authoring) tools?\b|"
            r"\bscript extender\b|mod ?loader\b|\bcharacter creator\b|"
            # "Arma 3 Tools" but not "Hidden Object - Tools" (a subtitle after a dash)
            r"\b(?:editor|launcher)" + _END + r"|\w tools" + _END
        ),
    ),
    (Kind.VIDEO, _rx(r"\b(?:video|media|movie) player\b")),
    (Kind.DLC, _rx(r"\bdlc" + _END + r"|\(dlc\)|\b(?:season|expansion) pass\b")),
)


def _clean(name: str) -> str:
    return _SPACES.sub(" ", _MARKS.sub("", name)).strip()


def kind_from_name(name: str | None) -> Kind | None:
    """The kind a name states ("… Dedicated Server", "… Demo"), or None when it states none."""
    if not isinstance(name, str):
        return None
    head = _clean(name).split(" + ")[0]
    for kind, rule in _NAME_RULES:
        if rule.search(head):
            return kind
    return None


def kind_from_types(
    genres: Iterable[str] = (), tags: Iterable[str] = (), specs: Iterable[str] = ()
) -> Kind | None:
    """The kind a store listing's genres, tags and UCSD specs state, or None."""
    genre_set, tag_set, spec_set = set(genres), set(tags), set(specs)
    if _DEMO_SPEC in spec_set:
        return Kind.DEMO
    if _DLC_SPEC in spec_set:
        return Kind.SOUNDTRACK if "Soundtrack" in tag_set else Kind.DLC
    if genre_set & SOFTWARE_GENRES:
        return Kind.TOOL
    has_game_genre = bool(genre_set & GAME_GENRES)
    if "Education" in genre_set and not has_game_genre:
        return Kind.TOOL
    if tag_set & _VIDEO_TAGS and not has_game_genre and not tag_set & GAME_GENRES:
        return Kind.VIDEO
    return None


def classify(
    name: str | None,
    *,
    appid: int | None,
    genres: Iterable[str] = (),
    tags: Iterable[str] = (),
    specs: Iterable[str] = (),
) -> Kind:
    """One app's kind: title-only without an appid, else the name's, else the types', else game."""
    return classify_why(name, appid=appid, genres=genres, tags=tags, specs=specs)[0]


#: what decided a kind, as :func:`classify_why` says it (the preprocess summary counts them)
RULE_NO_APPID, RULE_NAME, RULE_TYPES, RULE_DEFAULT = (
    "no appid",
    "name rules",
    "genres and types",
    "default",
)


def classify_why(
    name: str | None,
    *,
    appid: int | None,
    genres: Iterable[str] = (),
    tags: Iterable[str] = (),
    specs: Iterable[str] = (),
) -> tuple[Kind, str]:
    """:func:`classify`'s kind and which rule decided it (``RULE_NAME``, ``RULE_TYPES``, ...)."""
    if appid is None:
        return Kind.TITLE_ONLY, RULE_NO_APPID
    by_name = kind_from_name(name)
    if by_name is not None:
        return by_name, RULE_NAME
    by_types = kind_from_types(genres, tags, specs)
    if by_types is not None:
        return by_types, RULE_TYPES
    return Kind.GAME, RULE_DEFAULT


_STORE_TYPES: dict[str, Kind] = {
    "game": Kind.GAME,
    "mod": Kind.GAME,  # a standalone game built on another game's engine, listed free
    "dlc": Kind.DLC,
    "demo": Kind.DEMO,
    "music": Kind.SOUNDTRACK,
    "video": Kind.VIDEO,
    "series": Kind.VIDEO,
    "episode": Kind.VIDEO,
}
#: what the store lists as a game but the name rules or the genres tell apart
_GAME_REFINEMENTS = frozenset({Kind.BETA, Kind.SERVER, Kind.BENCHMARK, Kind.TOOL})


def kind_from_store(store_type: str, name: str | None, genres: Iterable[str] = ()) -> Kind | None:
    """The kind the Steam store's ``type`` states, with the two refinements of the module
    docstring; None for a type gamerec does not map."""
    kind = _STORE_TYPES.get(store_type.strip().lower())
    if kind is Kind.DLC and kind_from_name(name) is Kind.SOUNDTRACK:
        return Kind.SOUNDTRACK
    if kind is Kind.GAME:
        by_name = kind_from_name(name)
        if by_name in _GAME_REFINEMENTS:
            return by_name
        if kind_from_types(genres=genres) is Kind.TOOL:
            return Kind.TOOL
    return kind


_WORDS = re.compile(r"[0-9a-z]+")
_SEQUEL = re.compile(r"^(?:\d+|ii|iii|iv|v|vi|vii|viii|ix|x)$")


def base_key(name: str | None) -> tuple[str, ...]:
    """A name's words, lower-case ASCII letters and digits: how base-game prefixes are compared."""
    if not isinstance(name, str):
        return ()
    return tuple(_WORDS.findall(_MARKS.sub("", name).lower()))


def find_base_appid(
    name: str | None, bases: Mapping[tuple[str, ...], int], *, appid: int | None = None
) -> int | None:
    """The base game of a DLC: the longest key of ``bases`` (:func:`base_key` of each catalog
    game's name -> its appid) that is a proper word prefix of ``name``, other than ``appid``,
    and not followed by a sequel number ("2", "III")."""
    words = base_key(name)
    for length in range(len(words) - 1, 0, -1):
        if _SEQUEL.match(words[length]):
            continue  # "Modern Warfare" does not begin "Modern Warfare 2 Stimulus Package"
        base = bases.get(words[:length])
        if base is not None and base != appid:
            return base
    return None
