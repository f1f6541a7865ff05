"""The demo's showcase: the test user shown is the median one, said honestly, and what to try."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gamerec import showcase
from gamerec.render import _showcase_note
from gamerec.results import ShowcaseUser
from gamerec.runtime.recommender import Recommender


@pytest.mark.slow  # ranks every user of the bundled data
def test_the_user_shown_is_the_median_test_user_beside_all_of_them(
    trained_workspace: Path,
) -> None:
    recommender = Recommender.from_dir(trained_workspace)
    processed = trained_workspace / "processed"
    sample = showcase.sample_user(recommender, processed, eval_hit_rate=0.5)
    answered = showcase._answered(recommender, processed)
    assert sample.test_users == len(answered) > 600
    assert sample.test_users_with_a_find == sum(user.found > 0 for user in answered)
    shares = sorted(user.share for user in answered)
    assert sample.held_out_found / min(10, sample.held_out) == shares[len(shares) // 2]
    # the answer shown is what `recommend --played` gives for the games the user kept
    chosen = next(u for u in answered if u.user_idx == recommender.known_users[sample.user_id])
    assert (len(chosen.played), len(chosen.targets)) == (sample.played, sample.held_out)
    again = recommender.recommend(played=chosen.played, k=10)
    assert [a.appid for a in sample.recommendations] == [a.appid for a in again]
    assert sum(a.item_idx in chosen.targets for a in again) == sample.held_out_found
    assert sample.new_game_places == sum(
        not recommender.engine.trained[a.item_idx] for a in sample.recommendations
    )
    assert sample.to_dict()["eval_hit_rate"] == 0.5


def test_a_miss_is_said_to_be_one() -> None:
    sample = ShowcaseUser("42", 12, 4, 0, [], test_users=700, test_users_with_a_find=300)
    note = _showcase_note(type("Demo", (), {"sample_user": sample})())  # type: ignore[arg-type]
    assert "Of 700 test users answered this way, 300 (43%) find at least one" in note
    assert "this user is one of the 400 who find none" in note
    found = ShowcaseUser("42", 12, 4, 2, [], 700, 300, eval_hit_rate=0.8, new_game_places=2)
    note = _showcase_note(type("Demo", (), {"sample_user": found})())  # type: ignore[arg-type]
    assert "who find none" not in note
    assert "hit rate@10 is 0.800 (it ranks the games with players alone" in note
    assert "gives 2 of its places to games new to gamerec's players" in note


def test_next_steps_run_on_this_workspace(trained_workspace: Path) -> None:
    recommender = Recommender.from_dir(trained_workspace)
    steps = showcase.next_steps(recommender, Path("my games"))
    commands = [step.command for step in steps]
    assert all(c.startswith("gamerec --data-dir 'my games' ") for c in commands)
    assert [shlex.split(c)[3] for c in commands] == [
        "recommend",
        "recommend",
        "recommend",
        "recommend",
        "similar",
        "serve",
    ]
    user = next(c for c in commands if "--user" in c).split()[-1]
    assert user in recommender.known_users
    assert showcase.next_steps(recommender)[0].command.startswith("gamerec recommend --game")
    named = shlex.split(commands[0])[4:]  # the games it names are this catalog's
    assert named == ["--game", "Hades", "--game", "Celeste"]
    assert recommender.games_owned(named[1::2]).appids == [1145360, 504230]
