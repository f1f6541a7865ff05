"""Settings: defaults < gamerec.toml (or --config) < GAMEREC_* env < flags, with provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gamerec.cli import app
from gamerec.errors import ConfigError
from gamerec.settings import PreprocessSettings, Settings, TrainSettings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_come_from_the_code(workdir: Path) -> None:
    settings = Settings.load()
    assert settings.train.epochs == TrainSettings().epochs
    assert settings.preprocess.min_user_items == PreprocessSettings().min_user_items == 5
    assert settings.data_dir == Path("gamerec-data")
    assert set(settings.sources.values()) == {"default"}
    assert "train.epochs" in settings.sources


def test_toml_in_the_working_directory_overrides_defaults(workdir: Path) -> None:
    write(workdir / "gamerec.toml", "data_dir = 'ws'\n[train]\nepochs = 7\n")
    settings = Settings.load()
    assert settings.train.epochs == 7
    assert settings.data_dir == Path("ws")
    assert settings.sources["train.epochs"] == "gamerec.toml"
    assert settings.sources["data_dir"] == "gamerec.toml"
    assert settings.sources["train.batch_size"] == "default"
    assert settings.train.batch_size == TrainSettings().batch_size


def test_env_overrides_toml_and_nests_with_double_underscore(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "gamerec.toml", "[train]\nepochs = 7\nbatch_size = 48\n")
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCHS", "9")
    settings = Settings.load()
    assert settings.train.epochs == 9
    assert settings.sources["train.epochs"] == "env"
    assert settings.train.batch_size == 48  # the file still counts for what env leaves alone
    assert settings.sources["train.batch_size"] == "gamerec.toml"


def test_flags_override_env_and_none_flags_are_ignored(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "gamerec.toml", "[preprocess]\nseed = 1\n")
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCHS", "9")
    settings = Settings.load(overrides={"train.epochs": 11, "preprocess.seed": None})
    assert settings.train.epochs == 11
    assert settings.sources["train.epochs"] == "flag"
    assert settings.preprocess.seed == 1
    assert settings.sources["preprocess.seed"] == "gamerec.toml"


def test_config_path_replaces_the_working_directory_file(workdir: Path) -> None:
    write(workdir / "gamerec.toml", "[train]\nepochs = 7\n")
    elsewhere = workdir / "conf"
    elsewhere.mkdir()
    other = write(elsewhere / "other.toml", "[train]\npatience = 2\n")
    settings = Settings.load(config=other)
    assert settings.train.patience == 2
    assert settings.sources["train.patience"] == str(other)
    # ./gamerec.toml (epochs = 7) is not read when --config is given
    assert settings.train.epochs == TrainSettings().epochs != 7
    assert settings.sources["train.epochs"] == "default"


def test_missing_config_path_is_an_error_naming_it(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist"):
        Settings.load(config=workdir / "nope.toml")


@pytest.mark.parametrize(
    ("toml", "field", "words"),
    [
        ("[train]\nepochs = 'many'\n", "train.epochs", "valid integer"),
        ("[preprocess]\nmin_user_items = -1\n", "preprocess.min_user_items", "greater than"),
        ("[fetch]\ntimeout_s = 0\n", "fetch.timeout_s", "greater than"),
        ("[preprocess]\nvalid_fraction = 0.7\n", "preprocess.valid_fraction", "less than"),
        ("[index]\nkind = 'annoy'\n", "index.kind", "flat"),
        ("[[preprocess.inputs]]\nkind = 'xml'\npath = 'a'\n", "preprocess.inputs.0.kind", "csv"),
    ],
)
def test_invalid_toml_value_names_field_and_file(
    workdir: Path, toml: str, field: str, words: str
) -> None:
    write(workdir / "gamerec.toml", toml)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert f"gamerec.toml: invalid value for {field!r}" in message
    assert words in message


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[train]\nepochz = 3\n", "train.epochz"),
        ("[trian]\nepochs = 3\n", "trian"),
        ("colour = 'red'\n", "colour"),
        ("[[preprocess.inputs]]\nkind = 'csv'\npath = 'a.csv'\nuser_col = 'u'\n", "user_col"),
    ],
)
def test_unknown_toml_key_is_an_error_naming_it_and_the_file(
    workdir: Path, toml: str, field: str
) -> None:
    write(workdir / "gamerec.toml", toml)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "gamerec.toml: unknown setting" in message
    assert field in message


@pytest.mark.parametrize(
    ("toml", "suggestion"),
    [
        ("[train]\nepoch = 3\n", "did you mean 'train.epochs'?"),
        ("[trian]\nepochs = 3\n", "did you mean 'train'?"),
        ("datadir = 'ws'\n", "did you mean 'data_dir'?"),
        (
            "[[preprocess.inputs]]\nkind = 'csv'\npath = 'a.csv'\nuser_col = 'u'\n",
            "did you mean 'preprocess.inputs.0.user_column'?",
        ),
        ("[train]\nxyzzy = 3\n", "[train] takes embedding_dim, hidden_dim, epochs, "),
    ],
)
def test_a_typo_in_the_config_file_gets_the_nearest_setting(
    workdir: Path, toml: str, suggestion: str
) -> None:
    write(workdir / "gamerec.toml", toml)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert suggestion in message
    # `gamerec config show` reads the same file and would fail the same way
    assert "config show" not in message
    shown = CliRunner().invoke(app, ["config", "show"])
    assert shown.exit_code == 1 and suggestion in shown.stderr


def test_malformed_toml_names_the_file(workdir: Path) -> None:
    write(workdir / "gamerec.toml", "[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"gamerec\.toml: not valid TOML"):
        Settings.load()


def test_invalid_env_value_names_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCHS", "lots")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert "environment variable GAMEREC_TRAIN__EPOCHS" in str(caught.value)
    assert "'train.epochs'" in str(caught.value)


def test_invalid_flag_value_says_it_came_from_a_flag(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"command-line flag: invalid value for 'train.epochs'"):
        Settings.load(overrides={"train.epochs": 0})


def test_env_can_set_structured_values(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GAMEREC_PREPROCESS__INPUTS", json.dumps([{"kind": "csv", "path": "plays.csv"}])
    )
    monkeypatch.setenv("GAMEREC_DATA_DIR", "somewhere")
    settings = Settings.load()
    assert [(s.kind, s.path) for s in settings.preprocess.inputs] == [("csv", Path("plays.csv"))]
    assert settings.preprocess.inputs[0].user_column == "user"
    assert settings.data_dir == Path("somewhere")
    assert settings.sources["preprocess.inputs"] == "env"


def test_env_can_set_a_whole_section_as_json(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_TRAIN", '{"epochs": 3, "rerank_alphas": [0.5]}')
    settings = Settings.load()
    assert (settings.train.epochs, settings.train.rerank_alphas) == (3, [0.5])
    assert settings.sources["train.epochs"] == "env"


def test_an_env_name_that_is_no_setting_is_an_error_not_ignored(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCH", "3")  # the setting is `epochs`
    with pytest.raises(ConfigError, match=r"GAMEREC_TRAIN__EPOCH: 'train.epoch' is no setting"):
        Settings.load()


def test_a_structured_env_value_must_be_json(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_TRAIN__RERANK_ALPHAS", "0.5, 1")
    with pytest.raises(ConfigError, match=r"GAMEREC_TRAIN__RERANK_ALPHAS: .* takes JSON"):
        Settings.load()


def test_api_key_from_env_is_usable_but_never_displayed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_STEAM_API_KEY", "K3Y-s3cr3t")
    settings = Settings.load()
    assert settings.fetch.steam_api_key is not None
    assert settings.fetch.steam_api_key.get_secret_value() == "K3Y-s3cr3t"
    rows = {name: (value, source) for name, value, source in settings.to_display()}
    assert rows["fetch.steam_api_key"] == ("********", "env")
    assert "K3Y-s3cr3t" not in repr(settings)
    assert "K3Y-s3cr3t" not in json.dumps(settings.to_display())


# --- through the CLI --------------------------------------------------------------------------


def test_config_show_json_reports_value_and_source_of_every_layer(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "gamerec.toml", "[train]\nepochs = 7\npatience = 3\n")
    monkeypatch.setenv("GAMEREC_TRAIN__PATIENCE", "6")
    monkeypatch.setenv("GAMEREC_STEAM_API_KEY", "K3Y-s3cr3t")
    result = CliRunner().invoke(app, ["--data-dir", "ws", "config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["train.epochs"] == {"value": 7, "source": "gamerec.toml"}
    assert shown["train.patience"] == {"value": 6, "source": "env"}
    assert shown["data_dir"] == {"value": "ws", "source": "flag"}
    assert shown["train.batch_size"] == {"value": TrainSettings().batch_size, "source": "default"}
    assert shown["fetch.steam_api_key"] == {"value": "********", "source": "env"}
    assert "K3Y-s3cr3t" not in result.stdout + result.stderr


def test_config_show_reads_the_config_option(workdir: Path) -> None:
    other = write(workdir / "other.toml", "[serve]\nport = 9999\n")
    result = CliRunner().invoke(app, ["--config", str(other), "config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["serve.port"] == {"value": 9999, "source": str(other)}


def test_config_show_table_lists_settings_and_sources(workdir: Path) -> None:
    write(workdir / "gamerec.toml", "[train]\nepochs = 7\n")
    result = CliRunner().invoke(app, ["config", "show"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "train.epochs" in line)
    assert "7" in line
    assert "gamerec.toml" in line


def test_config_show_with_an_invalid_file_is_a_clean_error(workdir: Path) -> None:
    write(workdir / "gamerec.toml", "[train]\nepochs = -3\n")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid settings")
    assert "gamerec.toml: invalid value for 'train.epochs'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_constructing_settings_directly_reports_bad_values_as_config_errors() -> None:
    from gamerec.errors import ConfigError, GamerecError

    assert Settings(data_dir=Path("elsewhere")).data_dir == Path("elsewhere")
    with pytest.raises(ConfigError, match=r"invalid value for 'train\.epochs'"):
        Settings(train={"epochs": 0})
    with pytest.raises(GamerecError, match="unknown setting 'trian'"):
        Settings(trian={})


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(
        project / "gamerec.toml",
        'data_dir = "work"\n[[preprocess.inputs]]\nkind = "csv"\npath = "data/plays.csv"\n'
        '[[preprocess.inputs]]\nkind = "csv"\npath = "/abs/other.csv"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings.load(config=project / "gamerec.toml")
    assert settings.data_dir == project / "work"
    assert [spec.path for spec in settings.preprocess.inputs] == [
        project / "data" / "plays.csv",
        Path("/abs/other.csv"),
    ]
    # the working directory's own gamerec.toml keeps its paths as written
    write(elsewhere / "gamerec.toml", 'data_dir = "here"\n')
    assert Settings.load().data_dir == Path("here")


# --- pydantic-settings, precedence and provenance ---------------------------------------------


def test_settings_is_a_pydantic_settings_base_settings() -> None:
    import pydantic_settings

    import gamerec.settings

    assert issubclass(gamerec.settings.Settings, pydantic_settings.BaseSettings)


def test_each_layer_overrides_the_one_below_and_is_named_as_the_source(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def epochs(settings: Settings) -> tuple[int, str]:
        return settings.train.epochs, settings.sources["train.epochs"]

    assert epochs(Settings()) == (TrainSettings().epochs, "default")
    assert epochs(Settings(train={"epochs": 2})) == (2, "init")
    write(workdir / "gamerec.toml", "[train]\nepochs = 3\n")
    assert epochs(Settings(train={"epochs": 2})) == (3, "gamerec.toml")
    monkeypatch.setenv("GAMEREC_TRAIN__EPOCHS", "4")
    assert epochs(Settings(train={"epochs": 2})) == (4, "env")
    assert epochs(Settings.load(overrides={"train.epochs": 5})) == (5, "flag")


def test_a_section_given_as_an_argument_merges_with_the_layers_above(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_TRAIN__PATIENCE", "2")
    settings = Settings(train=TrainSettings(epochs=5))
    assert (settings.train.epochs, settings.train.patience) == (5, 2)
    assert settings.sources["train.epochs"] == "init"
    assert settings.sources["train.patience"] == "env"


def test_sources_cover_every_displayed_setting(workdir: Path) -> None:
    settings = Settings.load(overrides={"serve.port": 9000})
    names = [name for name, _, _ in settings.to_display()]
    assert names == sorted(set(names), key=names.index)  # no setting twice
    assert set(names) <= set(settings.sources)
    assert {"serve.port", "serve.processes", "fetch.steam_api_key", "data_dir"} <= set(names)


# --- serve.token and serve.processes ----------------------------------------------------------


def test_an_empty_token_from_env_is_an_error_naming_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMEREC_SERVE__TOKEN", "")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "environment variable GAMEREC_SERVE__TOKEN: invalid value for 'serve.token'" in message
    assert "empty token" in message


def test_an_empty_token_in_the_file_is_an_error_naming_the_file(workdir: Path) -> None:
    write(workdir / "gamerec.toml", '[serve]\ntoken = ""\n')
    with pytest.raises(ConfigError, match=r"gamerec\.toml: invalid value for 'serve\.token'"):
        Settings.load()


def test_a_token_is_kept_and_masked(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEREC_SERVE__TOKEN", "t0ken")
    settings = Settings.load()
    assert settings.serve.token is not None
    assert settings.serve.token.get_secret_value() == "t0ken"
    rows = {name: (value, source) for name, value, source in settings.to_display()}
    assert rows["serve.token"] == ("********", "env")


@pytest.mark.parametrize("blank", [" ", "\t", " \n "])
def test_a_blank_token_is_an_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv("GAMEREC_SERVE__TOKEN", blank)
    variable = r"GAMEREC_SERVE__TOKEN: invalid value for 'serve\.token'"
    with pytest.raises(ConfigError, match=variable):
        Settings.load()


def test_a_token_is_trimmed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as read from a file with its line end, or pasted with a space
    monkeypatch.setenv("GAMEREC_SERVE__TOKEN", " t0ken \n")
    settings = Settings.load()
    assert settings.serve.token is not None
    assert settings.serve.token.get_secret_value() == "t0ken"


def test_processes_default_to_auto(workdir: Path) -> None:
    settings = Settings.load()
    assert settings.serve.processes == "auto"
    assert settings.sources["serve.processes"] == "default"


@pytest.mark.parametrize(
    ("env", "toml", "flag", "expected"),
    [
        ("3", None, None, 3),
        ("auto", None, None, "auto"),
        (None, "2", None, 2),
        (None, '"auto"', None, "auto"),
        ("auto", None, 2, 2),
    ],
)
def test_processes_take_a_count_or_auto_from_every_layer(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    toml: str | None,
    flag: int | None,
    expected: int | str,
) -> None:
    if env is not None:
        monkeypatch.setenv("GAMEREC_SERVE__PROCESSES", env)
    if toml is not None:
        write(workdir / "gamerec.toml", f"[serve]\nprocesses = {toml}\n")
    assert Settings.load(overrides={"serve.processes": flag}).serve.processes == expected


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5", "257", "", "²"])
def test_a_bad_processes_value_is_one_error_naming_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GAMEREC_SERVE__PROCESSES", value)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert message.count("\n") == 1  # "invalid settings:" and one line, not one per union member
    assert "GAMEREC_SERVE__PROCESSES: invalid value for 'serve.processes'" in message
    assert 'must be "auto" or a whole number from 1 to 256' in message


@pytest.mark.parametrize("toml", ["true", "1.5", "0", '"four"'])
def test_a_bad_processes_value_in_the_file_names_the_file(workdir: Path, toml: str) -> None:
    write(workdir / "gamerec.toml", f"[serve]\nprocesses = {toml}\n")
    with pytest.raises(ConfigError, match=r"gamerec\.toml: invalid value for 'serve\.processes'"):
        Settings.load()


def test_serve_resolves_auto_to_the_cores_it_may_use() -> None:
    import os

    from gamerec.runtime.server import MAX_AUTO_PROCESSES, worker_processes

    assert worker_processes(3) == 3
    cores = len(os.sched_getaffinity(0))
    assert 1 <= worker_processes("auto") <= min(cores, MAX_AUTO_PROCESSES)


# --- unknown variables, bad files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "setting", "suggestion"),
    [
        ("GAMEREC_TRAIN__EPOCH", "train.epoch", "GAMEREC_TRAIN__EPOCHS"),
        ("GAMEREC_TRIAN__EPOCHS", "trian.epochs", "GAMEREC_TRAIN"),
        ("gamerec_serve__tokn", "serve.tokn", "GAMEREC_SERVE__TOKEN"),
        ("GAMEREC_DATADIR", "datadir", "GAMEREC_DATA_DIR"),
    ],
)
def test_an_unknown_variable_is_an_error_with_a_suggestion(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, setting: str, suggestion: str
) -> None:
    monkeypatch.setenv(variable, "3")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert f"{variable}: {setting!r} is no setting; did you mean {suggestion}?" in message
    assert "\n" not in message
    assert "config show" not in message  # it reads the same variables and fails the same way


@pytest.mark.parametrize(
    "variable", ["GAMEREC_TRAIN__EPOCHS__MAX", "GAMEREC_", "GAMEREC_ZZZZZZ", "GAMEREC_TRAIN__"]
)
def test_a_variable_below_a_value_or_far_from_any_setting_is_an_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "3")
    with pytest.raises(ConfigError, match=rf"{variable}: .* is no setting"):
        Settings.load()


def test_an_invalid_value_in_a_config_file_names_that_file(workdir: Path) -> None:
    conf = workdir / "conf"
    conf.mkdir()
    other = write(conf / "other.toml", "[serve]\nport = 'http'\n")
    with pytest.raises(ConfigError) as caught:
        Settings.load(config=other)
    assert f"{other}: invalid value for 'serve.port'" in str(caught.value)


def test_an_unreadable_config_file_names_it(workdir: Path) -> None:
    (workdir / "gamerec.toml").mkdir()  # a folder by that name is not read as settings
    assert Settings.load().sources["data_dir"] == "default"
    broken = write(workdir / "broken.toml", "x = \xff\n")
    with pytest.raises(ConfigError, match=rf"{broken}: not valid TOML"):
        Settings.load(config=broken)


def test_relative_paths_from_env_and_flags_stay_relative_to_the_working_directory(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = workdir / "conf"
    conf.mkdir()
    other = write(conf / "gamerec.toml", "[train]\nepochs = 3\n")
    monkeypatch.setenv("GAMEREC_DATA_DIR", "ws")
    assert Settings.load(config=other).data_dir == Path("ws")
    assert Settings.load(config=other, overrides={"data_dir": Path("flagged")}).data_dir == Path(
        "flagged"
    )


def test_no_setting_of_the_machine_reaches_a_test() -> None:
    import os

    assert not [name for name in os.environ if name.upper().startswith("GAMEREC_")]
    assert not Path("gamerec.toml").exists()
    assert not (Path.cwd() / "pyproject.toml").exists()  # not the checkout pytest ran from
