"""Editions of one game: Skyrim and its Special Edition, Dark Souls and its Remastered.

A catalog row is an app; a player thinks in games. Two apps are editions of one game (one
*family*) when their names are the same once edition words are set aside and they share a
developer or a publisher. Measured on the bundled 2025 catalog (24,082 recommendable games):

- **The name, edition words aside.** Lower-cased, trade marks and punctuation dropped (letters
  and digits of every script kept: "Seek Girl Ⅲ" is not "Seek Girl"), a year in parentheses
  dropped ("Age of Empires III (2007)"), then trailing edition words removed one after the
  other ("Game of the Year Edition", "Special Edition", "Definitive Edition", "Remastered",
  "Enhanced", "Director's Cut", "VR", "Rebirth", "Remake", "Classic", ...; never down to
  fewer than three characters, so "X Rebirth" stays itself): "The Elder Scrolls
  V: Skyrim Special Edition" and "The Elder Scrolls V: Skyrim VR" both become "the elder
  scrolls v skyrim". An article before the edition words goes with them ("Grand Theft Auto
  III – The Definitive Edition" is "grand theft auto iii"; 11 names of the catalog end so,
  the three Grand Theft Auto remasters among them). 189 names are shared by 645 games.
- **A shared studio.** The same name alone also joins strangers: "Bounce" (three studios),
  "Chaos", "Home", "Escape", "Lost". Developers and publishers are compared by name with
  corporate words set aside ("CAPCOM Co., Ltd." is "Capcom", "FromSoftware, Inc" is
  "FromSoftware"): Resident Evil 4 (2005) and its remake share Capcom; Dark Souls and
  Dark Souls: Remastered share Bandai Namco as publisher; Age of Empires III and its
  Definitive Edition share Xbox Game Studios. A game that names no studio at all (a title-only
  row of the play data) joins a family of its name found through the others.
- **The edition to answer with** is the most owned in the 2025 crawl (SteamSpy's owners range;
  ties: more reviews, then the lower row): what a player can buy today. Skyrim's is Special
  Edition.

Sequels are not editions: "Borderlands 2" is not "Borderlands", "BioShock 2" not "BioShock".
Remakes sharing the name are one family (Resident Evil 4, Dead Space, Battlefront II): a player
who owns one does not need the other recommended.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EDITION_WORDS", "Families", "base_title", "find_families", "studio_names"]

#: trailing words that name an edition rather than a game, longest first where they overlap
EDITION_WORDS = (
    "game of the year edition",
    "game of the year enhanced",
    "game of the year",
    "goty edition",
    "goty",
    "prepare to die edition",
    "digital deluxe edition",
    "deluxe edition",
    "deluxe",
    "special edition",
    "definitive edition",
    "enhanced edition",
    "complete edition",
    "anniversary edition",
    "legendary edition",
    "gold edition",
    "ultimate edition",
    "premium edition",
    "standard edition",
    "collector s edition",
    "vr edition",
    "directors cut",
    "director s cut",
    "the final cut",
    "final cut",
    "hd remaster",
    "remastered",
    "remaster",
    "remake",
    "rebirth",
    "redux",
    "reloaded",
    "enhanced",
    "definitive",
    "classic",
    "complete",
    "hd",
    "vr",
)
_LAST_EDITION_WORDS = {words.rsplit(" ", 1)[-1] for words in EDITION_WORDS}
#: the shortest name left once edition words are removed
_SHORTEST = 3
_TRADE_MARKS = re.compile(r"[™®©]")
_YEAR_IN_PARENTHESES = re.compile(r"\(\s*(?:19|20)\d\d\s*\)")
_NOT_WORD = re.compile(r"[\W_]+")
#: corporate words that do not tell two studios apart
_CORPORATE = {
    "co",
    "corp",
    "corporation",
    "entertainment",
    "gmbh",
    "inc",
    "interactive",
    "limited",
    "llc",
    "ltd",
    "s",
    "sa",
    "srl",
    "the",
}


def base_title(name: object) -> str:
    """A game's name without its edition: lower case, letters and digits of any script,
    a year in parentheses and trailing edition words removed ('' when nothing is left)."""
    if not isinstance(name, str):
        return ""
    text = unicodedata.normalize("NFKC", _TRADE_MARKS.sub("", name)).lower()
    text = _NOT_WORD.sub(" ", _YEAR_IN_PARENTHESES.sub(" ", text)).strip()
    stripped = True
    while stripped and text.rsplit(" ", 1)[-1] in _LAST_EDITION_WORDS:
        stripped = False
        for words in EDITION_WORDS:
            # "X Rebirth" stays itself: a name of one or two letters says too little
            if text.endswith(" " + words) and len(text) - len(words) - 1 >= _SHORTEST:
                text = text[: -len(words) - 1].rstrip()
                stripped = True
                # "Grand Theft Auto III - The Definitive Edition": the article goes with it
                if text.endswith(" the") and len(text) - 4 >= _SHORTEST:
                    text = text[:-4]
    return text


def studio_names(*cells: object) -> set[str]:
    """Developer and publisher cells ("A, B" names two studios) as comparable names."""
    names = set()
    for cell in cells:
        if isinstance(cell, str):
            parts: Sequence[Any] = cell.split(",")
        elif isinstance(cell, list | tuple | np.ndarray):
            parts = list(cell)
        else:
            continue
        for part in parts:
            plain = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", str(part)).lower())
            words = [w for w in plain.split() if w not in _CORPORATE]
            if words:
                names.add(" ".join(words))
    return names


@dataclass(frozen=True)
class Families:
    """Which catalog rows are editions of one game.

    ``representative[i]`` is the row answers name for row ``i``'s game (itself for a game
    with one edition). The summary counts families and their members, with examples."""

    representative: np.ndarray  # (n,) int64
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_families(self) -> int:
        return int(self.summary.get("families", 0))


def find_families(
    names: Sequence[object],
    developers: Sequence[object],
    publishers: Sequence[object],
    owners: np.ndarray,
    reviews: np.ndarray,
    eligible: np.ndarray | None = None,
) -> Families:
    """The families of a catalog (one entry per row of each argument).

    ``owners`` (SteamSpy's owners, NaN when unknown) and ``reviews`` choose the edition to
    answer with; ``eligible`` (default: all) marks the rows that may be a family's
    representative (games that may be recommended)."""
    n = len(names)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, bool)
    representative = np.arange(n, dtype=np.int64)
    by_title: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        title = base_title(name)
        if title:
            by_title.setdefault(title, []).append(row)
    shared = [rows for rows in by_title.values() if len(rows) > 1]
    studios: dict[int, set[str]] = {
        row: studio_names(developers[row], publishers[row]) for rows in shared for row in rows
    }
    order_key = np.lexsort(
        (np.arange(n), -np.nan_to_num(reviews, nan=-1.0), -np.nan_to_num(owners, nan=-1.0))
    )
    rank = np.empty(n, dtype=np.int64)
    rank[order_key] = np.arange(n)
    examples: list[str] = []
    n_families = n_members = 0
    for rows in shared:
        for members in _studio_groups(rows, studios):
            candidates = [row for row in members if eligible[row]] or members
            chosen = min(candidates, key=lambda row: rank[row])
            representative[members] = chosen
            n_families += 1
            n_members += len(members)
            if len(examples) < 12:
                shown = sorted(members, key=lambda row: rank[row])
                examples.append(" / ".join(str(names[row]) for row in shown))
    return Families(
        representative,
        {"families": n_families, "members": n_members, "examples": examples},
    )


def _studio_groups(rows: list[int], studios: dict[int, set[str]]) -> list[list[int]]:
    """Rows of one name joined when they share a studio (transitively); a row naming no
    studio joins the largest such group."""
    named = [row for row in rows if studios[row]]
    parent = {row: row for row in named}

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for position, first in enumerate(named):
        for second in named[position + 1 :]:
            if studios[first] & studios[second]:
                parent[root(second)] = root(first)
    groups: dict[int, list[int]] = {}
    for row in named:
        groups.setdefault(root(row), []).append(row)
    found = list(groups.values())
    unnamed = [row for row in rows if not studios[row]]
    if unnamed and found:
        max(found, key=len).extend(unnamed)
    elif unnamed:
        found.append(unnamed)
    return [group for group in found if len(group) > 1]
