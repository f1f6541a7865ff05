"""A player's history: the one place where the games someone gives are read and checked.

Whatever way a history arrives, it becomes a :class:`History` here and is checked by the same
rules: ``--played 620:1200,400:300`` and ``--achievements`` on the command line
(:meth:`History.parse_pairs`), a Steam Web API GetOwnedGames file (``--library``,
:meth:`History.from_library`), ``played=`` / ``achievements=`` in Python and ``time_played`` /
``achievements`` in ``POST /recommend`` (:meth:`History.from_mappings`). An appid is ASCII
digits naming a Steam appid (:mod:`gamerec.dataio.ids`); minutes are finite, from 0 (owned,
never played) to :data:`MAX_MINUTES`; achievements are whole numbers.

Which games the catalog and the model know is not decided here: that needs a catalog (see
:meth:`gamerec.runtime.recommender.Recommender.recommend`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gamerec.dataio.files import read_text
from gamerec.dataio.ids import MAX_APPID, appid_or_none, is_appid_text
from gamerec.dataio.owned import parse_owned_games
from gamerec.errors import DataError, InvalidRequestError, UsageError

__all__ = ["MAX_GAMES", "MAX_MINUTES", "MINUTES_PER_ACHIEVEMENT", "History"]

#: minutes of play one unlocked achievement stands for when no playtime is given
MINUTES_PER_ACHIEVEMENT = 30.0
#: the most minutes one game may have (about 1,900 years: anything above is a mistake)
MAX_MINUTES = 1e9
#: the most games one history may list (a large Steam library has a few thousand)
MAX_GAMES = 10_000

_PAIR = re.compile(r"^\s*([0-9]+)\s*(?::\s*([0-9]+(?:\.[0-9]*)?)\s*)?$")  # ASCII digits only


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class History:
    """The games someone gave: appid -> minutes played, appid -> achievements unlocked."""

    played: Mapping[int, float] = field(default_factory=dict)
    achievements: Mapping[int, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.played or self.achievements)

    @property
    def appids(self) -> list[int]:
        """Every appid given, each once, in the order given (played first)."""
        return list(dict.fromkeys([*self.played, *self.achievements]))

    def minutes(self) -> dict[int, float]:
        """Appid -> minutes, an achievement counting :data:`MINUTES_PER_ACHIEVEMENT` where it
        says more than the playtime given."""
        out = dict(self.played)
        for appid, unlocked in self.achievements.items():
            out[appid] = max(out.get(appid, 0.0), unlocked * MINUTES_PER_ACHIEVEMENT)
        return out

    def merged(self, other: History) -> History:
        """Both histories; where both name a game, the larger amount."""
        played = dict(self.played)
        for appid, minutes in other.played.items():
            played[appid] = max(played.get(appid, 0.0), minutes)
        achievements = dict(self.achievements)
        for appid, unlocked in other.achievements.items():
            achievements[appid] = max(achievements.get(appid, 0), unlocked)
        return History(played, achievements)

    def most_played(self, limit: int) -> tuple[History, int]:
        """At most ``limit`` games: the most played (an achievement counting as
        :meth:`minutes` counts it; of equals, those given first), and how many were left out.
        A request's cost grows with its history: a server bounds it with this."""
        minutes = self.minutes()
        if len(minutes) <= limit:
            return self, 0
        # the limit-th largest, by a sort in C (a heap in Python costs ten times more)
        threshold = sorted(minutes.values(), reverse=True)[limit - 1]
        kept = {appid for appid, value in minutes.items() if value > threshold}
        for appid, value in minutes.items():
            if len(kept) == limit:
                break
            if value == threshold:
                kept.add(appid)
        return History(
            {appid: value for appid, value in self.played.items() if appid in kept},
            {appid: count for appid, count in self.achievements.items() if appid in kept},
        ), len(minutes) - limit

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_mappings(
        cls,
        played: Any = None,
        achievements: Any = None,
        *,
        played_name: str = "played",
        achievements_name: str = "achievements",
    ) -> History:
        """From ``{appid: minutes}`` and ``{appid: unlocked}`` (None: none given).

        Keys may be ints or ASCII-digit strings (JSON's keys are strings); an
        :class:`InvalidRequestError` names the field (``played_name``: ``time_played`` over
        HTTP) and the entry at fault.
        """
        return cls(
            {k: float(v) for k, v in _entries(played_name, played, whole=False).items()},
            {k: int(v) for k, v in _entries(achievements_name, achievements, whole=True).items()},
        )

    @classmethod
    def parse_pairs(cls, text: str, option: str = "--played") -> dict[int, float]:
        """``"620:1200,400:300"`` (appid:amount, amount optional) -> ``{620: 1200.0, 400: 300.0}``.

        A malformed pair is a :class:`UsageError` naming ``option`` (exit code 2)."""
        pairs: dict[int, float] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            match = _PAIR.match(part)
            appid = appid_or_none(match.group(1)) if match else None
            if match is None or appid is None:
                raise UsageError(
                    f"{option} expects appid:amount pairs like 620:1200,400:300; "
                    f"got {part.strip()[:60]!r}"
                )
            amount = float(match.group(2) or 0.0)
            if amount > MAX_MINUTES:
                raise UsageError(f"{option}: {amount:g} for appid {appid} is above {MAX_MINUTES:g}")
            pairs[appid] = max(pairs.get(appid, 0.0), amount)
        if len(pairs) > MAX_GAMES:
            raise UsageError(f"{option} lists {len(pairs):,} games; the limit is {MAX_GAMES:,}")
        return pairs

    @classmethod
    def from_command_line(cls, played: str | None, achievements: str | None) -> History:
        """``--played`` and ``--achievements`` as given on the command line."""
        unlocked = cls.parse_pairs(achievements, "--achievements") if achievements else {}
        fractional = [appid for appid, count in unlocked.items() if not count.is_integer()]
        if fractional:
            raise UsageError(
                f"--achievements counts are whole numbers; appid {fractional[0]} has "
                f"{unlocked[fractional[0]]:g}"
            )
        return cls(
            cls.parse_pairs(played, "--played") if played else {},
            {appid: int(count) for appid, count in unlocked.items()},
        )

    @classmethod
    def from_library(cls, path: str | Path, option: str = "--library") -> History:
        """A Steam Web API GetOwnedGames answer saved as JSON: appid -> playtime_forever.

        A missing or unreadable file names ``option`` (where the path came from)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"no such file (given with {option}); pass the path of a saved "
                "GetOwnedGames JSON answer",
                path,
            )
        try:
            document = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg})", path, exc.lineno) from None
        except RecursionError:
            raise DataError("is nested too deeply to be a GetOwnedGames answer", path) from None
        games = parse_owned_games(document, path)
        if games is None:
            raise DataError(
                "is a private profile's answer (no games); make the profile's game details "
                "public and fetch it again",
                path,
            )
        if len(games) > MAX_GAMES:
            raise DataError(f"lists {len(games):,} games; the limit is {MAX_GAMES:,}", path)
        return cls({int(game["appid"]): float(game["playtime_min"]) for game in games})


def _entries(name: str, value: Any, *, whole: bool) -> dict[int, float | int]:
    """Check one ``{appid: amount}`` mapping; amounts are minutes, or counts when ``whole``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"{name} must be an object of appid: {'count' if whole else 'minutes'}, "
            f'like {{"620": 600}}; got {type(value).__name__}'
        )
    if len(value) > MAX_GAMES:
        raise InvalidRequestError(f"{name} has {len(value):,} games; the limit is {MAX_GAMES:,}")
    valid = _valid_entries(value, whole)
    if valid is not None:
        return valid
    # something is wrong (or unusual, such as int keys): entry by entry, to say which
    parsed: dict[int, float | int] = {}
    for key, amount in value.items():
        appid = key if isinstance(key, int) else None
        if isinstance(key, str) and is_appid_text(key.strip()):
            appid = int(key)
        appid = appid_or_none(appid)
        if appid is None:
            raise InvalidRequestError(
                f'{name}: keys must be appids (digits, like "620"); got {str(key)[:40]!r}'
            )
        if whole and not (isinstance(amount, int) and not isinstance(amount, bool)):
            raise InvalidRequestError(
                f"{name}[{appid}] must be a whole number of achievements; got {amount!r:.40}"
            )
        if not whole and not _is_number(amount):
            raise InvalidRequestError(
                f"{name}[{appid}] must be a number of minutes; got {amount!r:.40}"
            )
        if not 0 <= amount <= MAX_MINUTES:  # also refuses NaN and infinity (1e400)
            raise InvalidRequestError(
                f"{name}[{appid}] must be between 0 and {MAX_MINUTES:.0e}; got {amount!r:.40}"
            )
        parsed[appid] = max(parsed.get(appid, 0), amount)
    return parsed


def _valid_entries(value: Mapping[Any, Any], whole: bool) -> dict[int, float | int] | None:
    """``value`` parsed when every key is an appid's digits and every amount valid, else None:
    :func:`_entries`'s checks over whole columns (a history may hold 10,000 games, and a Python
    loop over them costs as much as recommending)."""
    if not value:
        return {}
    keys, amounts = list(value), list(value.values())
    if not set(map(type, keys)) <= {str}:  # decoded JSON has str keys; Python callers may not
        return None
    joined = "".join(keys)
    lengths = list(map(len, keys))
    if not (joined.isascii() and joined.isdigit()) or min(lengths) < 1 or max(lengths) > 10:
        return None
    appids = list(map(int, keys))
    if min(appids) < 1 or max(appids) > MAX_APPID:
        return None
    allowed = {int} if whole else {int, float}  # exact: True is no number of minutes
    if not set(map(type, amounts)) <= allowed:
        return None
    # a NaN hides from min and max but not from the sum; infinity is past MAX_MINUTES
    if min(amounts) < 0 or max(amounts) > MAX_MINUTES or not math.isfinite(sum(amounts)):
        return None
    if len(set(appids)) < len(appids):  # "620" and "0620": the larger amount, entry by entry
        return None
    return dict(zip(appids, amounts if whole else map(float, amounts), strict=True))
