"""Appids parse from ASCII digits only."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gamerec.dataio.ids import MAX_APPID, appid_or_none, is_appid_text


def test_known_answers() -> None:
    assert appid_or_none("620") == 620
    assert appid_or_none(" 620 ") == 620
    assert appid_or_none(620) == 620
    assert appid_or_none(620.0) == 620
    for bad in ["²", "٣٣", "1.5", "-3", "0", "", "1e30", "Infinity", "12a", str(MAX_APPID + 1)]:
        assert appid_or_none(bad) is None, bad
    for bad in [1.5, float("inf"), float("nan"), 1e30, -3, 0, True, None, 2**70, [620]]:
        assert appid_or_none(bad) is None, bad


@given(st.integers(min_value=1, max_value=MAX_APPID))
def test_every_valid_appid_round_trips(appid: int) -> None:
    assert is_appid_text(str(appid))
    assert appid_or_none(str(appid)) == appid


@given(st.text())
def test_text_is_an_appid_only_if_it_is_ascii_digits(text: str) -> None:
    parsed = appid_or_none(text)
    if parsed is not None:
        assert text.strip().isascii() and text.strip().isdigit()
        assert str(parsed) == text.strip().lstrip("0")
