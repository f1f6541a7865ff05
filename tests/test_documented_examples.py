"""Every example the documentation gives runs: each `Example:` of every command's `--help`, every
command of the console blocks of the README and of docs/*.md, and the README's Python snippet.

Each runs as written, in a folder holding a copy of the trained bundled workspace
(`./gamerec-data`), with these stand-ins, all through settings and never by changing the command:
the fetch commands reach a local server replaying recorded Steam answers (``fetch.*_url``), the
server examples listen on a free port instead of 8000 (which a machine running tests may be
using), and training uses a small model. What cannot run here is listed in :data:`NOT_RUN`,
with where it is tested instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from conftest import QUICK_SEARCH_ENV, free_port
from gamerec.cli import app
from replay_server import ReplayServer, fetch_env, synthetic_libraries

pytestmark = pytest.mark.slow

README = Path(__file__).parents[1] / "README.md"
#: the README and the reference pages it links, whose console blocks are run too
DOCUMENTS = [README, *sorted((README.parent / "docs").glob("*.md"))]

#: commands the documentation gives that this test does not run, by how they start, and why
NOT_RUN = {
    "pip install": "installs the package (CI does, .ci/run)",
    "pytest": "the test suite itself",
    "bash .ci/run": "what CI runs",
    "python benchmarks/": "a benchmark, minutes long (results in benchmarks/README.md)",
    "torchrun": "several training processes (tests/test_distributed.py runs them)",
    "gamerec demo": "the whole pipeline (test_pipeline.py::test_demo_in_a_terminal_... runs it)",
}
#: settings for the examples that train: a small model, soon stopped
SMALL_MODEL = {
    "GAMEREC_TRAIN__EMBEDDING_DIM": "16",
    "GAMEREC_TRAIN__HIDDEN_DIM": "32",
    "GAMEREC_TRAIN__PATIENCE": "1",
    "GAMEREC_EVAL__EASE_LAMBDAS": "[30]",
    "GAMEREC_EVAL__BOOTSTRAP": "100",
    **QUICK_SEARCH_ENV,
}


def help_examples() -> list[str]:
    """The `Example: ...` line of every command's help, as a user would copy it."""
    found = []

    def walk(command: typer.core.TyperGroup | typer.core.TyperCommand) -> None:
        found.extend(re.findall(r"Example: (.+)", command.help or ""))
        for child in getattr(command, "commands", {}).values():
            walk(child)

    walk(typer.main.get_command(app))
    return found


def documented_commands() -> list[str]:
    """Each command of the ```console blocks of the README and docs/*.md (a `$ ` prompt and `\\`
    continuations joined; comments stay, the shell drops them)."""
    commands = []
    for document in DOCUMENTS:
        for block in re.findall(r"```console\n(.*?)```", document.read_text(), re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            commands += [line.removeprefix("$ ").strip() for line in joined.splitlines() if line]
    return commands


def readme_python() -> str:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]


def skipped(command: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if command.startswith(start)), None)


def test_the_examples_are_found() -> None:
    """The parsing above sees what the documentation shows (so nothing is silently skipped)."""
    examples = help_examples()
    assert len(examples) >= 15  # one a command
    assert "gamerec recommend --user 76767 --genres rpg --top-k 5" in examples
    assert {"settings.md", "serving.md", "fetching.md", "scaling.md"} <= {d.name for d in DOCUMENTS}
    documented = documented_commands()
    assert "gamerec recommend --played 620:1200,400:300" in documented  # the README
    assert any(c.startswith("curl -s -X POST localhost:8000/recommend -H") for c in documented)
    assert "gamerec fetch store --appids 1086940,1245620" in documented  # docs/fetching.md
    assert "logging.basicConfig" in readme_python()
    assert all(skipped(c) for c in documented if c.startswith(("pip", "torchrun", "bash")))


# --- running them ------------------------------------------------------------------------


class Shell:
    """Runs documented commands in ``folder``, with ``env`` beside any the command sets."""

    def __init__(self, folder: Path, env: dict[str, str], port: int) -> None:
        self.folder, self.env, self.port = folder, env, port

    def words(self, command: str) -> tuple[list[str], dict[str, str]]:
        command = command.replace("localhost:8000", f"localhost:{self.port}")
        command = command.replace("--port 8000", f"--port {self.port}")
        words = shlex.split(command, comments=True)
        env = dict(self.env)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words[0] == "gamerec":
            words = [sys.executable, "-m", "gamerec", *words[1:]]
        return words, env

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        words, env = self.words(command)
        return subprocess.run(
            words, cwd=self.folder, env=env, capture_output=True, text=True, timeout=600
        )

    def start(self, command: str) -> subprocess.Popen[str]:
        words, env = self.words(command)
        env.setdefault("GAMEREC_SERVE__PORT", str(self.port))
        server = subprocess.Popen(
            words, cwd=self.folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return server
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.3)
        server.kill()
        _, err = server.communicate()
        raise AssertionError(f"{command} did not start: {err.decode()[-2000:]}")


def clean_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}, **SMALL_MODEL}


@pytest.fixture
def shell(trained_workspace: Path, tmp_path: Path) -> Iterator[Shell]:
    """A folder with a fresh copy of the trained workspace, and a local Steam to fetch from."""
    shutil.copytree(trained_workspace, tmp_path / "gamerec-data")
    (tmp_path / "players.txt").write_text("76561197960287930\n76561197960287931\n")
    with ReplayServer(libraries=synthetic_libraries(), api_key="...") as server:
        yield Shell(tmp_path, {**clean_env(), **fetch_env(server)}, free_port())


def runnable(commands: list[str]) -> list[str]:
    return [c for c in commands if not skipped(c) and not c.startswith(("curl", "gamerec serve"))]


@pytest.mark.parametrize("command", runnable(help_examples()))
def test_a_help_example_runs(shell: Shell, command: str) -> None:
    if command.startswith(("gamerec serve", "GAMEREC_SERVE")):
        pytest.skip("a server: test_the_serving_examples_answer runs it")
    done = shell.run(command)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", runnable(documented_commands()))
def test_a_documented_command_runs(shell: Shell, command: str) -> None:
    if "gamerec serve" in command:
        pytest.skip("a server: test_the_serving_examples_answer runs it")
    done = shell.run(command)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


def test_the_serving_examples_answer(shell: Shell) -> None:
    """Each documented way to start the server, then the curl lines of docs/serving.md against
    it."""
    starts = [c for c in [*help_examples(), *documented_commands()] if "gamerec serve" in c]
    assert len(starts) >= 3
    curls = [c for c in documented_commands() if c.startswith("curl")]
    assert len(curls) == 5
    for start in starts:
        server = shell.start(start)
        try:
            for curl in curls:
                done = shell.run(curl)
                assert done.returncode == 0, (curl, done.stderr)
                assert done.stdout.startswith("{") and '"error"' not in done.stdout, curl
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0, start


@pytest.mark.timeout(900)  # preprocess, train and index from scratch
def test_the_readme_python_snippet_runs(tmp_path: Path) -> None:
    """Run with the bundled data from scratch (a small model, three epochs, no re-ranker), it
    prints the answers and logs what it does, as a terminal would show it."""
    env = {**clean_env(), "GAMEREC_TRAIN__EPOCHS": "3", "GAMEREC_TRAIN__RERANK": "false"}
    shell = Shell(tmp_path, env, free_port())
    script = shell.folder / "snippet.py"
    script.write_text(readme_python())
    done = shell.run(f"python {script}".replace("python", shlex.quote(sys.executable), 1))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 5  # the five answers printed
    logged = done.stderr
    assert "preprocess: reading" in logged and "training: epoch 1 of" in logged
    assert "index: writing" in logged
