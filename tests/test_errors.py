"""The error hierarchy, and how the CLI shows errors: `Error: <message>`, exit 1, no traceback."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gamerec.errors as errors
from gamerec.cli import app
from gamerec.errors import AmbiguousNameError, DataError, GamerecError


def test_every_public_error_is_a_gamerec_error_with_an_http_status() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    assert GamerecError in classes
    for cls in classes:
        assert issubclass(cls, GamerecError), cls
        assert 400 <= cls.http_status < 600, cls
    assert errors.NotFoundError.http_status == 404
    assert issubclass(errors.RateLimitError, errors.FetchError)
    assert issubclass(errors.AmbiguousNameError, errors.NotFoundError)


def test_message_is_the_string_and_is_kept() -> None:
    error = errors.ConfigError("fix gamerec.toml")
    assert str(error) == "fix gamerec.toml"
    assert error.message == "fix gamerec.toml"


def test_data_error_names_file_and_line() -> None:
    error = DataError("is not a number", Path("plays.csv"), 7)
    assert str(error) == "plays.csv, line 7: is not a number"
    assert error.path == Path("plays.csv")
    assert error.line == 7
    assert str(DataError("is empty", "a.csv")) == "a.csv: is empty"
    assert str(DataError("no inputs")) == "no inputs"


def test_ambiguous_name_lists_at_most_ten_candidates() -> None:
    few = AmbiguousNameError("doom", ["DOOM", "DOOM II"])
    assert str(few) == "'doom' matches 2 games: DOOM; DOOM II. Use the full name or the appid."
    many = AmbiguousNameError("x", [f"X {n}" for n in range(13)])
    assert "X 9" in str(many)
    assert "X 10" not in str(many)
    assert "(and 3 more)" in str(many)
    assert many.candidates[-1] == "X 12"


# --- the CLI's rendering ----------------------------------------------------------------------


def run_preprocess(workdir: Path, toml: str) -> tuple[int, str, str]:
    (workdir / "gamerec.toml").write_text(toml)
    result = CliRunner().invoke(app, ["preprocess"])
    return result.exit_code, result.stdout, result.stderr


def test_missing_input_is_error_exit_1_without_traceback(workdir: Path) -> None:
    code, out, err = run_preprocess(
        workdir, "[[preprocess.inputs]]\nkind = 'steam-200k'\npath = 'nowhere.csv'\n"
    )
    assert code == 1
    error_line = err.splitlines()[-1]
    assert error_line.startswith("Error: nowhere.csv: file not found")
    assert "Traceback" not in out + err


def test_user_text_in_messages_is_not_taken_for_markup(workdir: Path) -> None:
    # a CSV header is quoted in the message; "[/b]" must print as is, not crash the renderer
    (workdir / "plays.csv").write_text("who,[/b],[bold]\nu1,10,1\n")
    code, _, err = run_preprocess(
        workdir, "[[preprocess.inputs]]\nkind = 'csv'\npath = 'plays.csv'\n"
    )
    assert code == 1
    assert "its header is ['who', '[/b]', '[bold]']" in err
    assert "Traceback" not in err


def test_truncated_gzip_through_the_cli(workdir: Path) -> None:
    whole = gzip.compress(b"1,Dota 2,purchase,1.0,0\n" * 50)
    (workdir / "plays.csv.gz").write_bytes(whole[: len(whole) // 2])
    code, _, err = run_preprocess(
        workdir, "[[preprocess.inputs]]\nkind = 'steam-200k'\npath = 'plays.csv.gz'\n"
    )
    assert code == 1
    assert "Error: plays.csv.gz: is a damaged or truncated gzip file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["preprocess", "--min-user-items", "many"], ["preprocess", "--nope"]],
)
def test_usage_errors_exit_2(workdir: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.stdout + result.stderr


def test_out_of_range_flag_is_a_config_error_exit_1(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["preprocess", "--min-user-items", "0"])
    assert result.exit_code == 1
    assert "command-line flag: invalid value for 'preprocess.min_user_items'" in result.stderr
