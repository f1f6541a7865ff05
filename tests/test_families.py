"""Editions of one game: the family rules, on real catalog names (known answers)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamerec.dataio.families import base_title, find_families, studio_names

#: (name, developer, publisher, owners) rows of the bundled 2025 catalog
CATALOG = [
    ("The Elder Scrolls V: Skyrim", "Bethesda Game Studios", "Bethesda Softworks", 7.5e6),
    (
        "The Elder Scrolls V: Skyrim Special Edition",
        "Bethesda Game Studios",
        "Bethesda Softworks",
        15e6,
    ),
    ("The Elder Scrolls V: Skyrim VR", "Bethesda Game Studios", "Bethesda Softworks", 1.5e6),
    ("DARK SOULS: Prepare To Die Edition", "FromSoftware", "Bandai Namco Entertainment", 3.5e6),
    ("DARK SOULS: REMASTERED", "QLOC", "FromSoftware, Inc, Bandai Namco Entertainment", 3.5e6),
    ("Age of Empires III (2007)", "Ensemble Studios", "Xbox Game Studios", 3.5e6),
    (
        "Age of Empires III: Definitive Edition",
        "World's Edge, Tantalus Media",
        "Xbox Game Studios",
        1.5e6,
    ),
    ("The Binding of Isaac", "Edmund McMillen, Florian Himsl", "Edmund McMillen", 7.5e6),
    ("The Binding of Isaac: Rebirth", "Nicalis, Inc., Edmund McMillen", "Nicalis, Inc.", 7.5e6),
    ("Resident Evil 4 (2005)", "Capcom", "Capcom", 3.5e6),
    ("Resident Evil 4", "CAPCOM Co., Ltd.", "CAPCOM Co., Ltd.", 7.5e6),
    ("Bounce", "Mikhail Melnikov", "Mikhail Melnikov", 35e3),
    ("Bounce", "Xian'Yu", "Xian'Yu", 35e3),
    ("BioShock", "2K Boston, 2K Australia", "2K", 3.5e6),
    ("BioShock 2", "2K Marin", "2K", 3.5e6),
    ("Seek Girl", "DSGame", "DSGame", 350e3),
    ("Seek Girl Ⅲ", "DSGame", "DSGame", 350e3),
    ("X Rebirth", "Egosoft", "Egosoft", 75e3),
    ("X Rebirth VR Edition", "Egosoft", "Egosoft", 35e3),
    ("The Elder Scrolls V Skyrim Legendary Edition", None, None, np.nan),  # a title-only row
]


def families() -> dict[str, str]:
    names = [row[0] for row in CATALOG]
    found = find_families(
        names,
        [row[1] for row in CATALOG],
        [row[2] for row in CATALOG],
        np.array([row[3] for row in CATALOG], dtype=float),
        np.zeros(len(CATALOG)),
        eligible=np.array([row[1] is not None for row in CATALOG]),
    )
    return {f"{name}#{row}": names[found.representative[row]] for row, name in enumerate(names)}


def test_editions_of_one_game_answer_with_the_most_owned_edition() -> None:
    answer = families()
    skyrim = [k for k in answer if "Skyrim" in k]
    assert len(skyrim) == 4  # the title-only Legendary Edition row joins too
    assert {answer[k] for k in skyrim} == {"The Elder Scrolls V: Skyrim Special Edition"}
    assert answer["DARK SOULS: Prepare To Die Edition#3"] == answer["DARK SOULS: REMASTERED#4"]
    assert answer["Age of Empires III (2007)#5"] == "Age of Empires III (2007)"  # more owners
    assert answer["Age of Empires III: Definitive Edition#6"] == "Age of Empires III (2007)"
    assert answer["The Binding of Isaac: Rebirth#8"] == answer["The Binding of Isaac#7"]
    assert answer["Resident Evil 4 (2005)#9"] == "Resident Evil 4"  # the remake sells more
    assert answer["X Rebirth VR Edition#18"] == "X Rebirth"


def test_strangers_and_sequels_stay_apart() -> None:
    answer = families()
    assert answer["Bounce#11"] == "Bounce" and answer["Bounce#12"] == "Bounce"
    assert [k for k, v in answer.items() if k.startswith("Bounce")] == ["Bounce#11", "Bounce#12"]
    found = find_families(
        ["Bounce", "Bounce"], ["Mikhail Melnikov", "Xian'Yu"], [None, None], np.ones(2), np.ones(2)
    )
    assert found.representative.tolist() == [0, 1] and found.n_families == 0
    assert answer["BioShock 2#14"] == "BioShock 2"
    assert answer["Seek Girl Ⅲ#16"] == "Seek Girl Ⅲ"


def test_the_summary_counts_families_with_examples() -> None:
    names = [row[0] for row in CATALOG]
    found = find_families(
        names,
        [row[1] for row in CATALOG],
        [row[2] for row in CATALOG],
        np.array([row[3] for row in CATALOG], dtype=float),
        np.zeros(len(CATALOG)),
    )
    assert found.summary["families"] == 6  # Skyrim, Dark Souls, AoE III, Isaac, RE4, X Rebirth
    assert found.summary["members"] == 4 + 2 + 2 + 2 + 2 + 2
    assert any("Skyrim" in example for example in found.summary["examples"])


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("The Elder Scrolls V: Skyrim Special Edition", "the elder scrolls v skyrim"),
        ("Batman: Arkham City - Game of the Year Edition", "batman arkham city"),
        ("Borderlands Game of the Year Enhanced", "borderlands"),
        ("Deus Ex: Human Revolution - Director's Cut", "deus ex human revolution"),
        # the article before the edition words goes with them, and only then
        ("Grand Theft Auto III – The Definitive Edition", "grand theft auto iii"),
        ("Grand Theft Auto IV: The Complete Edition", "grand theft auto iv"),
        ("Beyond the", "beyond the"),
        ("DOOM (1993)", "doom"),
        ("STAR WARS™ Battlefront™ II", "star wars battlefront ii"),
        ("Seek Girl Ⅲ", "seek girl iii"),
        ("X Rebirth", "x rebirth"),
        ("封灵档案", "封灵档案"),
        ("", ""),
    ],
)
def test_base_titles(name: str, base: str) -> None:
    assert base_title(name) == base


def test_studio_names_set_corporate_words_aside() -> None:
    assert studio_names("CAPCOM Co., Ltd.") == studio_names("Capcom") == {"capcom"}
    assert studio_names("FromSoftware, Inc", None) == {"fromsoftware"}
    assert studio_names(["Valve"], "Valve Corporation") == {"valve"}


@given(st.text(max_size=60))
def test_base_title_is_total_and_idempotent(name: str) -> None:
    once = base_title(name)
    assert base_title(once) == once


def test_a_reason_names_the_edition_the_player_holds() -> None:
    """The model knows Skyrim (row 0, trained) and not its Special Edition (row 1): an owner of
    the Special Edition is ranked as an owner of Skyrim, and told "because you played" the
    Special Edition, the most played of the editions held, or the supporter itself if held."""
    from gamerec.dataio.matrix import UserItems
    from gamerec.ranking.stages import Editions

    family = np.array([1, 1, 2, 3, 3, 3])  # rows 0-1 one game, 3-5 another
    trained = np.array([True, False, True, True, False, False])
    editions = Editions(family, trained, players=np.array([9.0, 1, 5, 9, 1, 1]))
    histories = UserItems.from_pairs(
        np.array([0, 1, 1, 2, 2]),
        np.array([1, 4, 5, 3, 4]),
        np.array([600.0, 10.0, 900.0, 5.0, 50.0]),
        n_rows=3,
        n_items=6,
    )
    folded = editions.fold(histories)
    assert folded.row(0).tolist() == [0] and folded.row(1).tolist() == [3]
    supporters = np.array([[0, -1], [3, 2], [3, 0]])
    assert editions.as_owned(supporters, histories).tolist() == [
        [1, -1],  # the Special Edition, not the Skyrim the model knows
        [5, 2],  # of two editions held, the most played; a game with no other edition as is
        [3, 0],  # an edition held as it is stays; one not held at all stays too
    ]


def test_a_new_edition_of_a_trained_game_is_ranked_as_that_game() -> None:
    """Rows 0-3 were trained, 4 and 5 are new to the play data; row 4 is the edition to buy of
    row 1's game (Grand Theft Auto IV: Complete Edition beside The Complete Edition). Its
    guessed vector scores far above everything: as a new game of its own it would lead the
    answer. It is row 1's game, placed where row 1's trained score puts it, named as row 4."""
    from gamerec.artifacts.model import NewGamePolicy
    from gamerec.dataio.matrix import UserItems
    from gamerec.index import ExactIndex
    from gamerec.ranking import RankingEngine, RankingPolicy
    from gamerec.ranking.stages import Editions
    from gamerec.ranking.user_tower import USER_TOWER_ARRAYS, NumpyUserTower

    trained = np.array([True, True, True, True, False, False])
    first_stage = np.array([0.0, 0.2, 0.9, 0.5, 5.0, 0.3], dtype=np.float32)
    vectors = np.stack([first_stage, np.ones(6, np.float32)], axis=1)  # query (1, 0)
    tower = NumpyUserTower({name: np.zeros((6, 2)) for name in USER_TOWER_ARRAYS})
    editions = Editions(np.array([0, 4, 2, 3, 4, 5]), trained, players=np.ones(6))
    engine = RankingEngine(
        tower,
        vectors,
        ExactIndex(vectors),
        trained,
        RankingPolicy(None, NewGamePolicy(scale=1.0, offset=0.0), new_games_share=0.0),
        editions=editions,
    )
    owns_row_0 = UserItems.from_pairs(
        np.array([0]), np.array([0]), np.array([60.0]), n_rows=1, n_items=6
    )
    ranked = engine.rank(
        owns_row_0, 4, np.ones(6, dtype=bool), queries=np.array([[1.0, 0.0]], np.float32)
    )
    items = ranked.items[0].tolist()
    assert items.count(4) == 1 and 1 not in items  # one place, named by the edition to buy
    assert items.index(4) > items.index(2) and items.index(4) > items.index(3)
    assert not ranked.new[0][items.index(4)]  # a game the model knows
