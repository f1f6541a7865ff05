"""The error hierarchy, and how the CLI shows errors: `Error: <message>`, exit 1, no traceback."""

from __future__ import annotations

import errno
import gzip
import os
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


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("kind", ["owned", "steamspy"])
def test_deeply_nested_json_inputs_are_one_line_errors_naming_the_file(
    workdir: Path, kind: str
) -> None:
    if kind == "owned":
        path = workdir / "76561198000000001.json"
    else:
        (workdir / "steamspy" / "all").mkdir(parents=True)
        path = workdir / "steamspy" / "all" / "page_0.json"
    path.write_bytes(DEEP_JSON)
    where = path.name if kind == "owned" else "steamspy"
    code, out, err = run_preprocess(
        workdir, f"[[preprocess.inputs]]\nkind = '{kind}'\npath = '{where}'\n"
    )
    assert code == 1
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith(f"Error: {where}")
    assert "nested too deeply" in err


def test_a_deeply_nested_library_file_is_a_one_line_error(workdir: Path) -> None:
    (workdir / "library.json").write_bytes(DEEP_JSON)
    result = CliRunner().invoke(app, ["recommend", "--library", "library.json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "nested too deeply" in line


def test_a_file_size_limit_while_writing_is_one_line_and_keeps_the_stage(tmp_path: Path) -> None:
    import resource
    import subprocess
    import sys

    def limited(limit: int | None) -> subprocess.CompletedProcess[str]:
        def preexec() -> None:
            if limit is not None:  # ulimit -f: a write past it fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run(
            [sys.executable, "-m", "gamerec", "--data-dir", "ws", "preprocess"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")},
            preexec_fn=preexec,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert limited(None).returncode == 0
    before = (tmp_path / "ws" / "processed" / "manifest.json").read_bytes()
    result = limited(200_000)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: ") and "File too large" in line and "ulimit -f" in line
    assert "processed" in line  # where it happened
    assert (tmp_path / "ws" / "processed" / "manifest.json").read_bytes() == before


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EFBIG, "ulimit -f"),
    ],
)
def test_os_errors_read_as_path_reason_and_what_to_do(code: int, advice: str) -> None:
    named = errors.StorageError.from_os_error(OSError(code, os.strerror(code), "ws/model"))
    assert named.message.startswith(f"ws/model: {os.strerror(code)}; ")
    assert advice in named.message
    unnamed = errors.StorageError.from_os_error(OSError(code, "detail"), "ws/index")
    assert unnamed.message.startswith(f"ws/index: {os.strerror(code)}; ")
    assert advice in unnamed.message
