"""What an app is, on real names from the shared data (steam-200k, SteamSpy 2025, UCSD,
steam.csv and a real GetOwnedGames library)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamerec.dataio.kinds import (
    KINDS,
    KINDS_WITH_BASE,
    RECOMMENDABLE_KINDS,
    RULE_DEFAULT,
    RULE_NAME,
    RULE_NO_APPID,
    RULE_TYPES,
    Kind,
    base_key,
    classify,
    classify_why,
    find_base_appid,
    kind_from_name,
    kind_from_store,
    kind_from_types,
)

BY_NAME = {
    Kind.BETA: [
        "Arma 2 Operation Arrowhead Beta (Obsolete)",  # steam-200k
        "Battlerite Public Test",  # GetOwnedGames
        "Paladins - Public Test",  # GetOwnedGames
        "PlanetSide 2 - Test",  # GetOwnedGames
        "Hunt: Showdown 1896 (Test Server)",  # GetOwnedGames
        "H1Z1 Test Server",  # steam-200k
        "Just Survive Test Server",  # SteamSpy
        "Secret Neighbor Beta",  # SteamSpy
        "Tribes of Midgard - Open Beta",  # SteamSpy
        "Serious Sam Fusion 2017 (beta)",  # SteamSpy
        "Ship Ahoy Open BETA",  # steam.csv
        "Everland (Stress Test)",  # SteamSpy
        "Don't Starve Together Beta",  # steam-200k
    ],
    Kind.SERVER: [
        "Left 4 Dead 2 Dedicated Server",  # SteamSpy
        "Unturned - Dedicated Server",  # SteamSpy
        "7 Days to Die Dedicated Server",  # SteamSpy
        "ASTA : ASTA Server",  # SteamSpy
        "DNL Dedicated Server Tool",  # UCSD
    ],
    Kind.SOUNDTRACK: [
        "Always Sometimes Monsters - Soundtrack",  # steam-200k
        "Axiom Verge Original Soundtrack",  # steam-200k
        "Cognition - Original Soundtrack Vol 1",  # steam-200k
        "Dreaming Sarah OST",  # steam-200k
        "Ori and the Blind Forest (Original Soundtrack)",  # steam-200k
        "Grow Home Soundtrack DLC",  # steam-200k
        "NEON STRUCT Soundtrack & Artbook",  # steam-200k
        "Monaco Soundtrack by Austin Wintory",  # UCSD
        "INK - Soundtrack + Art",  # steam-200k: the soundtrack is the product
    ],
    Kind.DEMO: [
        "HOMEFRONT Demo",  # steam-200k
        "Psychonauts Demo",  # steam-200k
        "Dawn of Discovery - Demo",  # steam-200k
        "Resident Evil 3: Raccoon City Demo",  # SteamSpy
        'Resident Evil 2 "R.P.D. Demo"',  # SteamSpy
        "Alice | 愛莉澄【Demo】",  # SteamSpy
        "MetaWare High School (Demo)",  # SteamSpy
        "Seance: The Unquiet (Demo 1)",  # steam.csv
        "Canek: Quest for Corn [Demo]",  # steam.csv
    ],
    Kind.BENCHMARK: [
        "3DMark",  # SteamSpy
        "3DMark API Overhead feature test",  # steam-200k
        "3DMark Fire Strike benchmark",  # steam-200k
        "Resident Evil 6 Benchmark Tool",  # SteamSpy
        "Bright Memory: Infinite Ray Tracing Benchmark",  # SteamSpy
        "SteamVR Performance Test",  # SteamSpy
        "Star Swarm Stress Test",  # SteamSpy
    ],
    Kind.TOOL: [
        "Arma 3 Tools",  # SteamSpy
        "DayZ Tools",  # SteamSpy
        "Skyrim Script Extender (SKSE)",  # steam-200k, GetOwnedGames
        "tModLoader",  # GetOwnedGames
        "Dragon's Dogma 2 Character Creator & Storage",  # GetOwnedGames
        "BrainBread 2 Mod Tools",  # UCSD
        "FlatOut 4: Total Insanity Workshop Tool",  # steam.csv
        "GLBasic SDK - A Multiplatform BASIC Compiler",  # SteamSpy
        "Depth - SDK",  # UCSD
        "VTuber Editor",  # SteamSpy
        "Football Manager 2017 In-Game Editor",  # UCSD
        "Leadwerks Game Launcher",  # steam-200k
    ],
    Kind.VIDEO: [
        "DeoVR Video Player",  # SteamSpy
        "Whirligig VR Media Player",  # SteamSpy
    ],
    Kind.DLC: [
        "Agarest - Additional-PP Pack 1 DLC",  # steam-200k
        "BioShock Infinite - Season Pass",  # steam-200k
        "The Witcher 3 Wild Hunt - Expansion Pass",  # steam-200k
        "Hamilton's Great Adventure - Retro Fever DLC",  # SteamSpy
    ],
}

GAMES = [
    # "Demo" inside a word
    "Demonologist",
    "Book of Demons",
    "Democracy 3",
    "Demolition Inc.",
    "Akaneiro Demon Hunters",
    "HYPER DEMON",
    # "Beta" not as the last word, not in brackets
    "Beta Runner",
    # "Test" as a title word
    "Test Drive Unlimited 2",
    "Test Drive Ferrari Racing Legends",
    "The Test",
    "The Turing Test",
    "Rekt: Crash Test",
    "Terrain Test",
    # "Server" inside a word
    ">observer_",
    "Observer: System Redux",
    "Observers",
    # "Tools", "Editor", "DLC", "Pack", "Soundtrack" that name the game
    "Hidden Object - Tools",
    "Tools Up!",
    "Unreal Tournament 2004: Editor's Choice Edition",
    "Copy Editor: A RegEx Puzzle",
    "DLC Quest",
    "The Jackbox Party Pack",
    "STAR WARS Empire at War - Gold Pack",
    # the game bundled with an extra
    "Sinless + OST",
    "KINGDOM HEARTS III + Re Mind (DLC)",
    "Fasaria World: Ancients of Moons + Server",
    # plain games, some with dashes and colons
    "SpellForce 2 - Demons of the Past",
    "Warhammer 40,000: Dawn of War II - Retribution",
    "The Elder Scrolls V Skyrim",
    "Dota 2",
    "ELDEN RING",
]


@pytest.mark.parametrize(
    ("name", "kind"), [(name, kind) for kind, names in BY_NAME.items() for name in names]
)
def test_kind_from_name_recognises_real_names(name: str, kind: Kind) -> None:
    assert kind_from_name(name) is kind
    assert classify(name, appid=1) is kind
    assert kind not in RECOMMENDABLE_KINDS


@pytest.mark.parametrize("name", GAMES)
def test_real_games_stay_games(name: str) -> None:
    assert kind_from_name(name) is None
    assert classify(name, appid=1, genres=["Action"]) is Kind.GAME
    assert Kind.GAME in RECOMMENDABLE_KINDS


def test_a_name_without_an_appid_is_title_only_whatever_it_says() -> None:
    # steam-200k's top answer once: a title with no store app
    assert classify("Arma 2 Operation Arrowhead Beta (Obsolete)", appid=None) is Kind.TITLE_ONLY
    assert classify("The Elder Scrolls V Skyrim", appid=None) is Kind.TITLE_ONLY
    assert classify("The Elder Scrolls V Skyrim", appid=72850) is Kind.GAME


def test_marks_and_spacing_do_not_hide_a_rule() -> None:
    assert kind_from_name("Call of Duty®: Black Ops III - Season Pass") is Kind.DLC
    assert kind_from_name("Left 4 Dead 2   Dedicated   Server") is Kind.SERVER
    assert kind_from_name("Half-Life 2: Episode One Soundtrack™") is Kind.SOUNDTRACK


def test_source_types() -> None:
    # UCSD: "Downloadable Content" spec, with the "Soundtrack" tag for soundtracks
    assert kind_from_types(["RPG"], ["RPG"], ["Single-player", "Downloadable Content"]) is Kind.DLC
    assert (
        kind_from_types(["Strategy", "Indie"], ["Strategy", "Soundtrack"], ["Downloadable Content"])
        is Kind.SOUNDTRACK
    )
    assert kind_from_types(["Racing"], ["Racing"], ["Game demo"]) is Kind.DEMO
    # Wallpaper Engine (SteamSpy appdetails genre) and Blender (UCSD)
    wallpaper = ["Casual", "Indie", "Animation & Modeling", "Design & Illustration", "Utilities"]
    assert kind_from_types(wallpaper) is Kind.TOOL
    assert kind_from_types(["Animation & Modeling", "Video Production"]) is Kind.TOOL
    assert kind_from_types(["Education"]) is Kind.TOOL  # "Buzz Aldrin: Cycling Pathways to Mars"
    assert kind_from_types(["Casual", "Education", "Indie"]) is None  # "GlobalMap Astro"
    # UCSD films: "Indie Game: The Movie"; "Showing Tonight: Mindhunters Incident" is a game
    assert kind_from_types(["Indie"], ["Movie", "Documentary", "Indie"]) is Kind.VIDEO
    assert kind_from_types(["Adventure", "Casual"], ["Casual", "Movie"]) is None
    # "Great Soundtrack" and "Short" are game tags; a game genre types nothing
    assert kind_from_types(["Indie"], ["Great Soundtrack", "Short", "Puzzle"]) is None
    assert kind_from_types(["Action", "Free to Play"], ["MOBA"], ["Multi-player"]) is None


def test_the_name_beats_the_source_type() -> None:
    # UCSD types both as DLC; the names say what they are
    ost = classify("Nusakana OST", appid=441760, specs=["Downloadable Content"])
    assert ost is Kind.SOUNDTRACK
    benchmark = classify("3DMark Cloud Gate benchmark", appid=406960, genres=["Utilities"])
    assert benchmark is Kind.BENCHMARK


def test_classify_why_names_the_rule_that_decided() -> None:
    assert classify_why("Left 4 Dead 2 Dedicated Server", appid=222860) == (Kind.SERVER, RULE_NAME)
    assert classify_why("Blender", appid=365670, genres=["Animation & Modeling"]) == (
        Kind.TOOL,
        RULE_TYPES,
    )
    assert classify_why("Dota 2", appid=570, genres=["Action"]) == (Kind.GAME, RULE_DEFAULT)
    assert classify_why("Dota 2", appid=None) == (Kind.TITLE_ONLY, RULE_NO_APPID)


@pytest.mark.parametrize(
    ("store_type", "name", "genres", "kind"),
    [  # real records of the store fixtures (tests/fixtures/steam-store)
        ("game", "Baldur's Gate 3", ["Adventure", "RPG", "Strategy"], Kind.GAME),
        ("dlc", "Mutant Year Zero: Seed of Evil", ["Strategy", "RPG"], Kind.DLC),
        ("demo", "SYNCED Demo", [], Kind.DEMO),
        ("demo", "Christmas Tina Trial version", [], Kind.DEMO),  # no name rule says so
        ("music", "Divinity: Original Sin 2 - Official Soundtrack", [], Kind.SOUNDTRACK),
        # the store's word beats the name rules ...
        ("game", "Operation Empty Quiver Demo", ["Action"], Kind.GAME),
        ("dlc", "DLC Quest", ["Casual"], Kind.DLC),
        # ... where its type says less than they do: a soundtrack published as a DLC,
        ("dlc", "Tricky Fox - Soundtrack", ["Casual"], Kind.SOUNDTRACK),
        # software and servers the store lists as games
        ("game", "Game Character Hub", ["Design & Illustration", "Utilities"], Kind.TOOL),
        ("game", "KARA Accounting", ["Accounting", "Utilities"], Kind.TOOL),
        ("game", "Left 4 Dead 2 Dedicated Server", [], Kind.SERVER),
        ("game", "Secret Neighbor Beta", ["Action"], Kind.BETA),
        ("GAME ", "Brawlhalla", ["Action", "Free to Play"], Kind.GAME),
        ("video", "Indie Game: The Movie", [], Kind.VIDEO),
        ("episode", "Some Show - Episode 1", [], Kind.VIDEO),
        ("mod", "Some Standalone Mod", ["Action"], Kind.GAME),
        ("hardware", "Valve Index Headset", [], None),
        ("advertising", "A Franchise Page", [], None),
    ],
)
def test_kind_from_store(store_type: str, name: str, genres: list[str], kind: Kind | None) -> None:
    assert kind_from_store(store_type, name, genres) is kind


def test_kinds_with_a_base_game_are_those_the_store_names_one_for() -> None:
    assert frozenset({Kind.DLC, Kind.DEMO, Kind.SOUNDTRACK}) == KINDS_WITH_BASE
    assert not KINDS_WITH_BASE & RECOMMENDABLE_KINDS


BASES = {
    base_key("Fallout 3"): 22300,
    base_key("Fallout"): 38400,
    base_key("Agarest Generations of War"): 263020,
    base_key("Defense Grid: The Awakening"): 18500,
    base_key("Defense Grid 2"): 221540,
    base_key("Call of Duty: Modern Warfare"): 2000950,
}


def test_find_base_appid_takes_the_longest_game_name_that_begins_the_dlc() -> None:
    assert find_base_appid("Fallout 3 - Point Lookout", BASES) == 22300
    assert find_base_appid("Fallout - Some Pack", BASES) == 38400
    assert find_base_appid("Defense Grid 2: A Matter of Endurance", BASES) == 221540
    # a sequel number after the words: not that game's DLC
    assert find_base_appid("Call of Duty®: Modern Warfare® 2 Stimulus Package", BASES) is None
    assert find_base_appid("Call of Duty: Modern Warfare - Season Pass", BASES) == 2000950
    # no game's words begin it: no base rather than a guess
    assert find_base_appid("Defense Grid: Resurgence Map Pack 1", BASES) is None
    assert find_base_appid("Agarest - Additional-PP Pack 1 DLC", BASES) is None
    # a whole-name match is not a prefix, a sequel is not its forerunner's DLC,
    # and an app is never its own base
    assert find_base_appid("Fallout 3", BASES) is None
    assert find_base_appid("Fallout 3 - The Pitt", BASES, appid=22300) is None
    assert find_base_appid("Fallout - Some Pack", BASES, appid=38400) is None
    assert find_base_appid(None, BASES) is None


def test_base_key_compares_words_not_characters() -> None:
    assert base_key("Rocksmith® 2014 – Megadeth") == ("rocksmith", "2014", "megadeth")
    assert find_base_appid("Falloutish - X", BASES) is None


def test_kinds_are_strings_that_round_trip() -> None:
    assert tuple(k.value for k in Kind) == KINDS
    assert "title-only" in KINDS
    assert frozenset({Kind.GAME}) == RECOMMENDABLE_KINDS
    for value in KINDS:
        assert Kind(value).value == value


@given(st.text(max_size=80))
def test_kind_from_name_is_total(name: str) -> None:
    kind = kind_from_name(name)
    assert kind is None or kind in Kind
    assert classify(name, appid=None) is Kind.TITLE_ONLY
