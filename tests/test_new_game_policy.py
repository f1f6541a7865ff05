"""How `gamerec train` chooses the new-game policy from its held-out sets (known answers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from gamerec.artifacts.model import NewGamePolicy
from gamerec.towers.fit import RANDOM_TENTH, NewGameSearch, choose_new_game_policy

NEWEST = "the newest tenth"
SEARCH = NewGameSearch(
    scales=(1.0,),
    offsets=(-0.5, 0.0, 0.5),
    contents=(1.0, 0.0),
    history_weights=(0.0, 2.0, 4.0),
    older_weights=(0.0,),
    history_tie=0.002,
)


def by_parts(
    offset: dict[float, float],
    content: dict[float, tuple[float, float]],
    history: dict[float, float],
) -> Callable[[NewGamePolicy], list[float]]:
    """A policy's NDCG on (the random tenth, the newest tenth): the offset's and the history
    weight's terms on both sets, the closeness weight's term per set."""

    def measure(policy: NewGamePolicy) -> list[float]:
        base = 0.5 + offset[policy.offset] + history[policy.history_weight]
        random_term, newest_term = content[policy.content]
        return [base + random_term, base + newest_term]

    return measure


def test_the_offset_is_judged_on_both_sets_and_closeness_on_the_random_tenth_alone() -> None:
    measure = by_parts(
        offset={-0.5: 0.0, 0.0: 0.01, 0.5: -0.02},
        # the newest tenth prefers no closeness by far more than the random tenth prefers it
        content={1.0: (0.004, 0.0), 0.0: (0.0, 0.02)},
        history={0.0: 0.0, 2.0: -0.01, 4.0: -0.02},
    )
    choice, measured = choose_new_game_policy(SEARCH, [RANDOM_TENTH, NEWEST], measure)
    assert choice == NewGamePolicy(scale=1.0, offset=0.0, history_weight=0.0, content=1.0)
    # every offset, the other closeness weight and every history weight were measured once
    assert len(measured) == 3 + 1 + 2
    assert measured[NewGamePolicy(1.0, 0.0, 0.0, 0.0)] == measure(NewGamePolicy(1.0, 0.0, 0.0, 0.0))


def test_without_a_random_tenth_closeness_is_judged_on_the_mean() -> None:
    measure = by_parts(
        offset={-0.5: 0.0, 0.0: 0.01, 0.5: -0.02},
        content={1.0: (0.004, 0.0), 0.0: (0.0, 0.02)},
        history={0.0: 0.0, 2.0: -0.01, 4.0: -0.02},
    )
    choice, _ = choose_new_game_policy(SEARCH, ["one set", "another set"], measure)
    assert choice.content == 0.0


def test_history_weights_within_the_tie_take_the_largest() -> None:
    near = by_parts(
        offset={-0.5: 0.01, 0.0: 0.0, 0.5: 0.0},
        content={1.0: (0.0, 0.0), 0.0: (-0.01, -0.01)},
        history={0.0: 0.003, 2.0: 0.0015, 4.0: 0.0},  # 4.0 is 0.003 below the best: too far
    )
    choice, _ = choose_new_game_policy(SEARCH, [RANDOM_TENTH, NEWEST], near)
    assert (choice.offset, choice.content, choice.history_weight) == (-0.5, 1.0, 2.0)
    clear = by_parts(
        offset={-0.5: 0.01, 0.0: 0.0, 0.5: 0.0},
        content={1.0: (0.0, 0.0), 0.0: (-0.01, -0.01)},
        history={0.0: 0.01, 2.0: 0.0, 4.0: 0.0},
    )
    assert choose_new_game_policy(SEARCH, [RANDOM_TENTH, NEWEST], clear)[0].history_weight == 0.0


def test_a_model_without_a_token_table_tries_no_closeness() -> None:
    measure = by_parts(
        offset={-0.5: 0.0, 0.0: 0.01, 0.5: -0.02},
        content={0.0: (0.0, 0.0)},  # any other weight would raise a KeyError
        history={0.0: 0.0, 2.0: -0.01, 4.0: -0.02},
    )
    choice, measured = choose_new_game_policy(
        SEARCH, [RANDOM_TENTH, NEWEST], measure, with_content=False
    )
    assert choice == NewGamePolicy(1.0, 0.0, 0.0, 0.0)
    assert {policy.content for policy in measured} == {0.0}


def test_the_weight_of_an_older_game_is_chosen_last_and_within_the_tie_takes_the_largest() -> None:
    search = replace(SEARCH, older_weights=(0.0, 0.1, 0.2))

    def measure_with(older: dict[float, float]) -> Callable[[NewGamePolicy], list[float]]:
        parts = by_parts(
            offset={-0.5: 0.01, 0.0: 0.0, 0.5: 0.0},
            content={1.0: (0.0, 0.0), 0.0: (-0.01, -0.01)},
            history={0.0: 0.0, 2.0: 0.01, 4.0: 0.0},
        )
        return lambda policy: [v + older[policy.older] for v in parts(policy)]

    # 0.2 is 0.003 below the best: too far; 0.1 is within the tie
    choice, measured = choose_new_game_policy(
        search, [RANDOM_TENTH, NEWEST], measure_with({0.0: 0.003, 0.1: 0.0015, 0.2: 0.0})
    )
    assert choice == NewGamePolicy(1.0, -0.5, 2.0, 1.0, older=0.1)
    # the earlier coordinates were searched without it
    assert {p.older for p in measured if p.history_weight != 2.0} == {0.0}
    clear = measure_with({0.0: 0.01, 0.1: 0.0, 0.2: 0.0})
    assert choose_new_game_policy(search, [RANDOM_TENTH, NEWEST], clear)[0].older == 0.0
