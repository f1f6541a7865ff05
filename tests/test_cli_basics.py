"""The installed `gamerec` command: help, light imports, and clean errors in a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gamerec.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
HEAVY = ("torch", "faiss", "pandas", "pyarrow")


def gamerec_script() -> str:
    beside = Path(sys.executable).with_name("gamerec")
    found = str(beside) if beside.exists() else shutil.which("gamerec")
    assert found, "the gamerec console script is not installed (pip install -e .)"
    return found


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    env["COLUMNS"] = "200"
    return env


def run(args: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env={**clean_env(), **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands_with_their_help() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "preprocess" in result.stdout
    assert "Turn play histories and the catalog into processed/" in result.stdout
    assert "config" in result.stdout
    assert "Inspect the effective settings." in result.stdout
    assert "--config" in result.stdout and "--data-dir" in result.stdout
    shown = CliRunner().invoke(app, ["config", "--help"], env={"COLUMNS": "200"})
    assert "Print the effective settings and where each value came from." in shown.stdout


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of the app below ``command``, with the words that reach it."""
    found = [(path, command)]
    for name, child in getattr(command, "commands", {}).items():
        found += command_paths(child, (*path, name))
    return found


def test_every_command_has_help_with_an_example() -> None:
    commands = command_paths(typer.main.get_command(app))
    names = {" ".join(path) for path, _ in commands}
    assert {"", "recommend", "config", "config show", "fetch", "fetch owned", "eval"} <= names
    for path, command in commands:
        shown = " ".join(("gamerec", *path))
        assert command.help, f"`{shown}` has no help text"
        assert re.search(rf"Example: .*\b{re.escape(shown)}(\s|$)", command.help), (
            f"`{shown} --help` needs a line `Example: {shown} ...`"
        )


def test_help_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    child = (
        "import sys\n"
        "from gamerec.cli import app\n"
        "for args in (['--help'], ['preprocess', '--help'], ['config', 'show', '--help']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, (args, done.code)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = run([sys.executable, "-c", child], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_cli_works_without_click_installed(tmp_path: Path) -> None:
    # Typer >= 0.23 vendors click and does not depend on it: a fresh install has no `click`
    child = (
        "import sys\n"
        "sys.modules['click'] = None  # any `import click` now fails\n"
        "from gamerec.cli import main\n"
        "sys.argv = ['gamerec', 'preprocess', '--min-user-items', '0']\n"
        "main()\n"
    )
    result = run([sys.executable, "-c", child], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: invalid settings")
    assert "Traceback" not in result.stderr


def test_help_imports_no_heavy_library_per_importtime(tmp_path: Path) -> None:
    result = run([sys.executable, "-X", "importtime", "-m", "gamerec", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "gamerec.cli" in imported
    assert not {name for name in imported if name.split(".")[0] in HEAVY}


def test_console_script_help(tmp_path: Path) -> None:
    result = run([gamerec_script(), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "preprocess" in result.stdout and "config" in result.stdout


def test_console_script_bad_input_prints_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("player,game\nu1,570\n")
    (tmp_path / "gamerec.toml").write_text(
        "[[preprocess.inputs]]\nkind = 'csv'\npath = 'plays.csv'\n"
    )
    result = run([gamerec_script(), "preprocess"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: plays.csv, line 1: has no column(s) ['user', 'item']")
    assert not (tmp_path / "gamerec-data" / "processed").exists()


def test_console_script_config_error_exits_1(tmp_path: Path) -> None:
    (tmp_path / "gamerec.toml").write_text("[train]\nepochz = 3\n")
    result = run([gamerec_script(), "config", "show"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: invalid settings")
    assert "gamerec.toml: unknown setting 'train.epochz'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_console_script_preprocess_then_config_show(tmp_path: Path) -> None:
    inputs = [
        {"kind": "steam-200k", "path": str(FIXTURES / "steam-200k-slice.csv")},
        {"kind": "steam-csv", "path": str(FIXTURES / "steam.csv")},
    ]
    toml = "[preprocess]\nmin_user_items = 2\n" + "".join(
        f"[[preprocess.inputs]]\nkind = '{i['kind']}'\npath = '{i['path']}'\n" for i in inputs
    )
    (tmp_path / "gamerec.toml").write_text(toml)
    done = run([gamerec_script(), "preprocess", "--json", "--seed", "3"], tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["before_filtering"]["users"] == 58
    assert summary["output"] == "gamerec-data/processed"
    assert (tmp_path / "gamerec-data" / "processed" / "manifest.json").is_file()
    manifest = json.loads((tmp_path / "gamerec-data/processed/manifest.json").read_text())
    assert manifest["settings"]["seed"] == 3
    shown = run(
        [gamerec_script(), "config", "show", "--json"],
        tmp_path,
        GAMEREC_STEAM_API_KEY="K3Y-s3cr3t",
        GAMEREC_PREPROCESS__SEED="4",
    )
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["preprocess.min_user_items"] == {"value": 2, "source": "gamerec.toml"}
    assert settings["preprocess.seed"] == {"value": 4, "source": "env"}
    assert settings["fetch.steam_api_key"]["value"] == "********"
    assert "K3Y-s3cr3t" not in shown.stdout + shown.stderr


@pytest.mark.slow
def test_python_m_gamerec_preprocess_prints_the_summary(tmp_path: Path) -> None:
    plays = FIXTURES / "steam-200k-slice.csv"
    (tmp_path / "gamerec.toml").write_text(
        f"[[preprocess.inputs]]\nkind = 'steam-200k'\npath = '{plays}'\n"
        f"[[preprocess.inputs]]\nkind = 'steam-csv'\npath = '{FIXTURES / 'steam.csv'}'\n"
    )
    done = run(
        [sys.executable, "-m", "gamerec", "-d", "ws", "preprocess", "--min-user-items", "2"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "58 users, 371 games" in done.stdout  # before filtering
    assert "duplicate purchase rows removed" in done.stdout
    assert "titles matched to an appid" in done.stdout
    assert "games per user" in done.stdout
    assert "preprocess: reading 2 input(s)" in done.stderr  # progress goes to stderr
    assert (tmp_path / "ws" / "processed" / "items.parquet").is_file()


def run_main(tmp_path: Path, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``gamerec.cli.main`` with ``args`` in a fresh Python, after the lines of ``prelude``."""
    child = f"{prelude}\nimport sys\nfrom gamerec.cli import main\n"
    child += f"sys.argv = ['gamerec', *{list(args)!r}]\nmain()\nprint('never reached')\n"
    return run([sys.executable, "-c", child], tmp_path)


def test_the_command_exits_at_once_yet_flushes_its_output_and_runs_atexit(
    tmp_path: Path,
) -> None:
    """`main` skips Python's teardown, but what a normal exit does for the user still happens:
    everything printed arrives, `atexit` functions run, and the status is the command's."""
    prelude = "import atexit\natexit.register(lambda: print('atexit ran', flush=True))"
    result = run_main(tmp_path, prelude, "config", "show", "--json")
    assert result.returncode == 0, result.stderr
    shown, _, tail = result.stdout.rpartition("}")
    assert json.loads(shown + "}")["train.epochs"]["value"] == 40  # the whole JSON, flushed
    assert tail.strip() == "atexit ran"
    failed = run_main(tmp_path, prelude, "config", "show", "--no-such-flag")
    assert failed.returncode == 2 and "No such option" in failed.stderr
    assert failed.stdout.strip() == "atexit ran"


def test_the_command_leaves_the_normal_exit_to_a_thread_still_running(tmp_path: Path) -> None:
    prelude = (
        "import threading, time\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        "    print('the thread finished', flush=True)\n"
        "threading.Thread(target=late).start()"
    )
    result = run_main(tmp_path, prelude, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("the thread finished")
