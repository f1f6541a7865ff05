"""What ``gamerec demo`` shows after the pipeline ran: two answers and commands to try next.

The test user shown is not picked for a good answer. Every P-SG test user is answered from the
games they kept (as ``recommend --played`` would answer them), the share of their held-out
games found in the top 10 is counted, and the user at the median share is shown (among those,
the one whose history is nearest 20 games, the easiest to read), beside how many test users
got at least one held-out game and the evaluation's hit rate: a miss is shown as a miss.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gamerec.results import NewUserShowcase, NextStep, ShowcaseUser

if TYPE_CHECKING:
    from gamerec.runtime.recommender import Recommender

__all__ = ["new_user", "next_steps", "sample_user"]

#: answers this long, as the demo prints them
TOP_K = 10
#: the history length easiest to read in a table, among users with the median share
READABLE_GAMES = 20


@dataclass(frozen=True)
class _Answered:
    row: int
    user_idx: int
    played: dict[int, float]
    targets: frozenset[int]
    found: int

    @property
    def share(self) -> float:
        """Held-out games found over those that fit in the top 10 (recall@10)."""
        return self.found / min(TOP_K, len(self.targets))


def _answered(recommender: Recommender, processed_dir: Path) -> list[_Answered]:
    from gamerec.evaluation.protocol import load_protocol

    test = load_protocol(processed_dir, "sg").test
    appids = recommender.catalog.appids
    answered = []
    for row in range(test.n_users):
        start, end = test.histories.indptr[row], test.histories.indptr[row + 1]
        played = {  # keyed by appid: games known only by title cannot be given
            int(appids[item]): float(minutes)
            for item, minutes in zip(
                test.histories.indices[start:end], test.histories.values[start:end], strict=True
            )
            if appids[item] >= 0
        }
        targets = frozenset(int(item) for item in test.targets.row(row))
        if not played or not targets:
            continue
        answers = recommender.recommend(played=played, k=TOP_K)
        found = sum(answer.item_idx in targets for answer in answers)
        answered.append(_Answered(row, int(test.user_idx[row]), played, targets, found))
    return answered


def sample_user(
    recommender: Recommender, processed_dir: Path, eval_hit_rate: float | None
) -> ShowcaseUser:
    """The median P-SG test user's answer, and how every test user fared (see the module)."""
    answered = _answered(recommender, processed_dir)
    if not answered:
        raise ValueError("no test user to show: the split has no test users with games")
    shares = sorted(user.share for user in answered)
    median = shares[len(shares) // 2]
    chosen = min(
        (user for user in answered if user.share == median),
        key=lambda user: (abs(len(user.played) - READABLE_GAMES), user.row),
    )
    user_id = next(u for u, row in recommender.known_users.items() if row == chosen.user_idx)
    answers = list(recommender.recommend(played=chosen.played, k=TOP_K))
    return ShowcaseUser(
        user_id=user_id,
        played=len(chosen.played),
        held_out=len(chosen.targets),
        held_out_found=chosen.found,
        recommendations=answers,
        test_users=len(answered),
        test_users_with_a_find=sum(user.found > 0 for user in answered),
        eval_hit_rate=eval_hit_rate,
        new_game_places=sum(not recommender.engine.trained[a.item_idx] for a in answers),
    )


def new_user(recommender: Recommender, genres: list[str]) -> NewUserShowcase:
    """The answer for someone who gave nothing but ``genres``."""
    return NewUserShowcase(
        genres=list(genres), recommendations=list(recommender.recommend(genres=genres, k=TOP_K))
    )


def next_steps(recommender: Recommender, data_dir: Path | None = None) -> list[NextStep]:
    """Commands to try next on this workspace (``data_dir``: a ``--data-dir`` to repeat)."""
    gamerec = "gamerec" if data_dir is None else f"gamerec --data-dir {shlex.quote(str(data_dir))}"
    steps = [
        NextStep(
            f"{gamerec} recommend --game Hades --game Celeste",
            "your own games, by name or appid",
        ),
        NextStep(
            f"{gamerec} recommend --played 620:1200,400:300",
            "with minutes played (appids are in store URLs)",
        ),
        NextStep(
            f"{gamerec} recommend --library owned.json",
            "a Steam library (`gamerec fetch owned --steamid ID` saves one)",
        ),
    ]
    known = recommender.users(1)
    if known:
        steps.append(
            NextStep(
                f"{gamerec} recommend --user {shlex.quote(known[0][0])}",
                "a user of the data (`gamerec users` lists them)",
            )
        )
    steps += [
        NextStep(f'{gamerec} similar "Portal 2"', "the games closest to one game"),
        NextStep(f"{gamerec} serve", "a small web page to explore them"),
    ]
    return steps
