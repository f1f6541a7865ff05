"""Steam Web API libraries against a real local server; the key must never leak.

Also the end-to-end path: ``gamerec fetch steamspy`` + ``gamerec fetch owned`` from the replay
server, then ``gamerec preprocess`` reading both, gives a catalog with genres and tags.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import free_port
from gamerec import pipeline
from gamerec.cli import app
from gamerec.dataio.interactions import load_owned_games
from gamerec.dataio.steamweb import (
    DailyQuota,
    SteamWebClient,
    read_steamids,
    validate_steamids,
)
from gamerec.errors import (
    ConfigError,
    DataError,
    FetchError,
    GamerecError,
    InvalidRequestError,
    RateLimitError,
    ServerUnreachableError,
)
from gamerec.settings import Settings
from replay_server import (
    FIRST_STEAMID,
    Fault,
    ReplayServer,
    fetch_env,
    fetch_overrides,
    recorded_appdetails,
    synthetic_libraries,
)

#: a distinctive key, so that any leak is found by a plain substring search
KEY = "TESTKEY" + secrets.token_hex(12).upper()
LIBRARIES = synthetic_libraries()
STEAMIDS = list(LIBRARIES)
PRIVATE = str(FIRST_STEAMID + 100)  # the server answers {"response": {}} for it


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(libraries=LIBRARIES, api_key=KEY) as replay:
        yield replay


@pytest.fixture
def keyed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``workdir`` with the key set the documented way, GAMEREC_STEAM_API_KEY."""
    monkeypatch.setenv("GAMEREC_STEAM_API_KEY", KEY)
    return workdir


def settings_for(server: ReplayServer, root: Path, **fetch: Any) -> Settings:
    return Settings.load(overrides=fetch_overrides(server, root / "gamerec-data", **fetch))


def owned_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "raw" / "steam" / "owned"


def test_libraries_are_saved_private_profiles_remembered_and_a_rerun_asks_only_new_ids(
    keyed: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, keyed)

    first = pipeline.fetch_owned(settings, [*STEAMIDS[:3], PRIVATE])

    assert first.fetched == 3 and first.private == 1 and first.failed == {}
    assert first.private_steamids == [PRIVATE]
    for steamid in STEAMIDS[:3]:
        assert (owned_dir(settings) / f"{steamid}.json").read_bytes() == LIBRARIES[steamid]
    assert not (owned_dir(settings) / f"{PRIVATE}.json").exists()
    private = json.loads((owned_dir(settings) / "_private.json").read_text())
    assert private == {"steamids": [PRIVATE]}
    for request in server.requests():
        assert request.path == "/IPlayerService/GetOwnedGames/v1/"
        assert request.params["include_appinfo"] == "1"
        assert request.params["include_played_free_games"] == "1"
        assert request.headers["x-webapi-key"] == KEY
        assert "key" not in request.params

    second = pipeline.fetch_owned(settings, [*STEAMIDS[:4], PRIVATE])

    assert second.fetched == 1 and second.skipped == 3 and second.private == 1
    assert [r.params["steamid"] for r in server.requests()][4:] == [STEAMIDS[3]]
    loaded = load_owned_games(owned_dir(settings))
    assert sorted(loaded.frame["user_id"].unique()) == sorted(STEAMIDS[:4])
    games = sum(len(json.loads(LIBRARIES[s])["response"]["games"]) for s in STEAMIDS[:4])
    assert len(loaded.frame) == games


BAD_STEAMIDS = [
    "123",
    "7656119796028793",  # 16 digits
    "765611979602879300",  # 18 digits
    "86561197960287930",  # does not start 7656119
    "7656119796028793x",
    "STEAM_0:0:11101",  # another SteamID format
    "",
]


@pytest.mark.parametrize("bad", BAD_STEAMIDS)
def test_an_invalid_steamid_is_rejected_before_any_request(
    keyed: Path, server: ReplayServer, bad: str
) -> None:
    settings = settings_for(server, keyed)

    with pytest.raises(InvalidRequestError) as raised:
        pipeline.fetch_owned(settings, [STEAMIDS[0], bad])
    result = CliRunner().invoke(
        app, ["fetch", "owned", "--steamid", STEAMIDS[0], "--steamid", bad], env=fetch_env(server)
    )

    assert "is not a SteamID64 (17 digits starting with 7656119" in raised.value.message
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "is not a SteamID64" in result.stderr
    assert "Traceback" not in result.output
    assert server.requests() == []


def test_no_steamids_at_all_is_a_clear_error(keyed: Path, server: ReplayServer) -> None:
    with pytest.raises(InvalidRequestError, match="--steamid ID or --steamids FILE"):
        validate_steamids([])
    result = CliRunner().invoke(app, ["fetch", "owned"], env=fetch_env(server))
    assert result.exit_code == 1
    assert "no steamids given" in result.stderr
    assert server.requests() == []


def test_a_steamids_file_skips_comments_and_names_the_bad_line(
    keyed: Path, server: ReplayServer
) -> None:
    good = keyed / "players.txt"
    good.write_text(f"# my friends\n{STEAMIDS[0]}\n\n{STEAMIDS[1]}  # Gabe\n")
    bad = keyed / "typo.txt"
    bad.write_text(f"{STEAMIDS[0]}\n\n7656119796028793\n")

    assert read_steamids(good) == STEAMIDS[:2]
    with pytest.raises(DataError) as raised:
        read_steamids(bad)
    assert raised.value.path == bad and raised.value.line == 3

    ok = CliRunner().invoke(
        app, ["fetch", "owned", "--steamids", str(good), "--json"], env=fetch_env(server)
    )
    typo = CliRunner().invoke(
        app, ["fetch", "owned", "--steamids", str(bad)], env=fetch_env(server)
    )

    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["fetched"] == 2
    assert typo.exit_code == 1 and "typo.txt, line 3" in typo.stderr
    assert len(server.requests()) == 2


def test_a_missing_key_says_to_set_gamerec_steam_api_key(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)
    assert settings.fetch.steam_api_key is None

    with pytest.raises(ConfigError) as raised:
        pipeline.fetch_owned(settings, STEAMIDS[:1])
    with pytest.raises(FetchError, match="GAMEREC_STEAM_API_KEY"):
        SteamWebClient("  ", server.steam_url)
    result = CliRunner().invoke(
        app, ["fetch", "owned", "--steamid", STEAMIDS[0]], env=fetch_env(server)
    )

    assert "set GAMEREC_STEAM_API_KEY" in raised.value.message
    assert result.exit_code == 1
    assert "Error: no Steam Web API key: set GAMEREC_STEAM_API_KEY" in result.stderr
    assert "Traceback" not in result.output
    assert server.requests() == []


def test_the_key_never_appears_in_output_logs_errors_urls_or_files(
    keyed: Path, server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL at INFO
    settings = settings_for(server, keyed)
    seen: list[str] = [repr(settings), str(settings.model_dump())]
    runner = CliRunner()
    env = fetch_env(server)

    summary = pipeline.fetch_owned(settings, [*STEAMIDS[:2], PRIVATE])
    seen.append(json.dumps(summary.to_dict()))
    with SteamWebClient(KEY, server.steam_url) as client:
        seen += [repr(client), repr(client.http)]
    for args in (
        ["fetch", "owned", "--steamid", STEAMIDS[2]],
        ["fetch", "owned", "--steamid", STEAMIDS[3], "--json"],
        ["config", "show"],
        ["config", "show", "--json"],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        seen.append(result.output)

    # failures: a refused key (403), a server error after retries, an unreachable server
    server.api_key = "ANOTHER" + KEY[::-1]
    with pytest.raises(FetchError) as refused:
        pipeline.fetch_owned(settings, STEAMIDS[4:5])
    assert "refused the key; set GAMEREC_STEAM_API_KEY" in refused.value.message
    server.api_key = KEY
    server.fail(Fault("status", status=500), times=None, steamid=STEAMIDS[5])
    with pytest.raises(FetchError) as broken:
        pipeline.fetch_owned(settings, STEAMIDS[5:6])
    unreachable = settings_for(server, keyed, steam_api_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnreachableError) as offline:
        pipeline.fetch_owned(unreachable, STEAMIDS[6:7])
    failing = runner.invoke(app, ["fetch", "owned", "--steamid", STEAMIDS[5]], env=env)
    assert failing.exit_code == 1
    for raised in (refused, broken, offline):
        seen += [str(raised.value), repr(raised.value), repr(raised.value.args)]
    seen.append(failing.output)

    console_script = Path(sys.executable).parent / "gamerec"
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    process_env.update({**env, "GAMEREC_STEAM_API_KEY": KEY})
    process = subprocess.run(
        [str(console_script), "fetch", "owned", "--steamid", STEAMIDS[6]],
        cwd=keyed,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert "Fetched Steam libraries" in process.stdout
    seen += [process.stdout, process.stderr]

    assert any("GetOwnedGames" in record.getMessage() for record in caplog.records)
    seen += [record.getMessage() for record in caplog.records]
    for text in seen:
        assert KEY not in text
    files = [p for p in (keyed / "gamerec-data").rglob("*") if p.is_file()]
    assert len(files) == 8  # five libraries, _private.json, _quota.json and _quota.lock
    for file in files:
        assert KEY.encode() not in file.read_bytes(), file
    assert all(KEY not in request.target for request in server.requests())
    assert sum(request.headers.get("x-webapi-key") == KEY for request in server.requests()) >= 8


def test_the_daily_limit_stops_before_it_is_exceeded(keyed: Path, server: ReplayServer) -> None:
    server.fail(Fault("status", status=503), steamid=STEAMIDS[0])  # a retry is a call too
    settings = settings_for(server, keyed, daily_limit=4)

    with pytest.raises(RateLimitError) as raised:
        pipeline.fetch_owned(settings, STEAMIDS[:5])

    assert "daily limit is reached: 4 of 4 calls made today (UTC" in raised.value.message
    assert "3 steam libraries fetched in this run are saved; 2 remain" in raised.value.message
    assert len(server.requests()) == 4
    assert len(list(owned_dir(settings).glob("7*.json"))) == 3
    quota = json.loads((Path(settings.data_dir) / "raw" / "steam" / "_quota.json").read_text())
    assert quota["calls"] == 4

    with pytest.raises(RateLimitError):
        pipeline.fetch_owned(settings, STEAMIDS[:5])
    assert len(server.requests()) == 4  # refused before asking


def test_the_daily_count_starts_again_on_a_new_utc_day(tmp_path: Path) -> None:
    today = [date(2025, 1, 1)]
    quota = DailyQuota(tmp_path / "_quota.json", limit=2, today=lambda: today[0])
    quota.spend()
    quota.spend()
    with pytest.raises(RateLimitError, match="run again after midnight UTC"):
        quota.spend()
    assert quota.used() == 2

    today[0] = date(2025, 1, 2)

    assert quota.used() == 0
    quota.spend()
    assert json.loads((tmp_path / "_quota.json").read_text()) == {"day": "2025-01-02", "calls": 1}


def test_a_429_that_outlasts_the_retries_is_a_rate_limit_error(
    keyed: Path, server: ReplayServer
) -> None:
    server.fail(Fault("status", status=429), times=None, steamid=STEAMIDS[1])
    settings = settings_for(server, keyed)  # max_retries 3

    with pytest.raises(RateLimitError) as raised:
        pipeline.fetch_owned(settings, STEAMIDS[:3])

    message = raised.value.message
    assert f"Steam GetOwnedGames for {STEAMIDS[1]}: still rate limited (HTTP 429)" in message
    assert "1 steam libraries fetched in this run are saved; 2 remain" in message
    assert len(server.requests(steamid=STEAMIDS[1])) == 4
    assert server.requests(steamid=STEAMIDS[2]) == []  # stopped at once, no more calls


def test_one_failing_library_is_reported_and_the_others_are_saved(
    keyed: Path, server: ReplayServer
) -> None:
    server.fail(Fault("not-json"), times=None, steamid=STEAMIDS[1])
    summary = pipeline.fetch_owned(settings_for(server, keyed), STEAMIDS[:3])
    assert summary.fetched == 2
    assert list(summary.failed) == [STEAMIDS[1]]
    assert "the body is not valid JSON" in summary.failed[STEAMIDS[1]]

    result = CliRunner().invoke(
        app,
        ["fetch", "owned", "--steamid", STEAMIDS[1], "--steamid", STEAMIDS[3]],
        env=fetch_env(server),
    )
    assert result.exit_code == 1
    assert f"failed: Steam GetOwnedGames for {STEAMIDS[1]}" in result.stderr
    assert "Error: 1 libraries failed after retries" in result.stderr


def test_a_steam_api_url_nothing_listens_on_is_a_clear_error(keyed: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    overrides = {
        "data_dir": keyed / "gamerec-data",
        "fetch.steam_api_url": url,
        "fetch.max_retries": 1,
        "fetch.backoff_base_s": 0.001,
    }
    with pytest.raises(ServerUnreachableError) as raised:
        pipeline.fetch_owned(Settings.load(overrides=overrides), STEAMIDS[:2])
    assert isinstance(raised.value, GamerecError)
    assert "could not connect" in raised.value.message and url in raised.value.message

    result = CliRunner().invoke(
        app,
        ["fetch", "owned", "--steamid", STEAMIDS[0]],
        env={"GAMEREC_FETCH__STEAM_API_URL": url, "GAMEREC_FETCH__MAX_RETRIES": "0"},
    )
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "could not connect" in result.stderr
    assert "Traceback" not in result.output


def test_the_owned_loader_ignores_state_and_unfinished_temp_files(tmp_path: Path) -> None:
    (tmp_path / f"{STEAMIDS[0]}.json").write_bytes(LIBRARIES[STEAMIDS[0]])
    (tmp_path / "_private.json").write_text(json.dumps({"steamids": [PRIVATE]}))
    (tmp_path / f".{STEAMIDS[1]}.json.x1y2.tmp").write_bytes(LIBRARIES[STEAMIDS[1]][:100])

    loaded = load_owned_games(tmp_path)

    assert list(loaded.frame["user_id"].unique()) == [STEAMIDS[0]]
    assert loaded.stats["files"] == 1


def test_fetch_then_preprocess_builds_a_catalog_with_genres_and_tags(
    keyed: Path, server: ReplayServer
) -> None:
    (keyed / "gamerec.toml").write_text(
        "[preprocess]\nmin_user_items = 3\nmin_item_users = 2\n\n"
        '[[preprocess.inputs]]\nkind = "steamspy"\npath = "gamerec-data/raw/steamspy"\n\n'
        '[[preprocess.inputs]]\nkind = "owned"\npath = "gamerec-data/raw/steam/owned"\n'
    )
    runner = CliRunner()
    env = fetch_env(server)
    ids = [arg for steamid in [*STEAMIDS, PRIVATE] for arg in ("--steamid", steamid)]

    spy = runner.invoke(app, ["fetch", "steamspy", "--details", "150", "--json"], env=env)
    owned = runner.invoke(app, ["fetch", "owned", *ids, "--json"], env=env)
    processed = runner.invoke(app, ["preprocess", "--json"], env=env)

    assert spy.exit_code == 0, spy.output
    assert owned.exit_code == 0, owned.output
    assert json.loads(owned.stdout)["fetched"] == len(STEAMIDS)
    assert processed.exit_code == 0, processed.output
    items = pd.read_parquet(keyed / "gamerec-data" / "processed" / "items.parquet")
    users = pd.read_parquet(keyed / "gamerec-data" / "processed" / "users.parquet")
    assert set(users["user_id"]) <= set(STEAMIDS) and len(users) >= 6
    details_dir = keyed / "gamerec-data" / "raw" / "steamspy" / "appdetails"
    detailed = {int(p.stem) for p in details_dir.glob("[0-9]*.json")}
    checked = 0
    for item in items.itertuples():
        if pd.isna(item.appid) or int(item.appid) not in detailed:
            assert list(item.tags) == []  # `all` pages carry no tags: only appdetails do
            continue
        record = json.loads(recorded_appdetails()[int(item.appid)])
        genres = [g.strip() for g in (record["genre"] or "").split(",") if g.strip()]
        tags = list(record["tags"]) if isinstance(record["tags"], dict) else []
        assert list(item.genres) == genres, item.name
        assert list(item.tags) == tags, item.name
        checked += bool(tags)
    assert checked >= 10


# --- the key stays on its origin; the daily count fails closed -------------------------------


def test_a_redirect_to_another_origin_never_receives_the_key(server: ReplayServer) -> None:
    """Two real servers on different ports are different origins: the second one records
    every header it is sent, and must never see the key."""
    with ReplayServer(libraries=LIBRARIES, api_key=KEY) as elsewhere:
        server.fail(Fault("redirect", location=elsewhere.base + "/"), times=None)
        with (
            SteamWebClient(KEY, server.steam_url, max_retries=0) as client,
            pytest.raises(FetchError) as raised,
        ):
            client.owned_games(STEAMIDS[0])

        assert "redirects to another origin" in raised.value.message
        assert "fetch.steam_api_url" in raised.value.message
        assert KEY not in raised.value.message
        assert [r.headers.get("x-webapi-key") for r in elsewhere.requests()] == []
        assert len(server.requests()) == 1


def test_a_same_origin_redirect_is_followed_with_the_key(server: ReplayServer) -> None:
    server.fail(Fault("redirect", status=301, location=server.base + "/"))
    with SteamWebClient(KEY, server.steam_url, max_retries=0) as client:
        answer = client.owned_games(STEAMIDS[0])
    assert answer.body == LIBRARIES[STEAMIDS[0]]
    assert [r.fault for r in server.requests()] == ["redirect", None]
    assert server.requests()[1].headers["x-webapi-key"] == KEY


@pytest.mark.parametrize(
    "url",
    ["http://api.steampowered.com", "http://10.0.0.5:8080", "ftp://api.steampowered.com"],
)
def test_the_key_is_only_sent_over_https_unless_to_a_loopback_address(url: str) -> None:
    with pytest.raises(ConfigError, match=r"fetch\.steam_api_url") as raised:
        SteamWebClient(KEY, url)
    assert "https" in raised.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.steampowered.com",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:9",
        "http://[::1]:9",
    ],
)
def test_https_and_loopback_urls_are_accepted(url: str) -> None:
    SteamWebClient(KEY, url).close()


def test_cli_refuses_a_plain_http_steam_api_url(keyed: Path) -> None:
    env = {"GAMEREC_FETCH__STEAM_API_URL": "http://api.steampowered.com"}
    result = CliRunner().invoke(app, ["fetch", "owned", "--steamid", STEAMIDS[0]], env=env)
    assert result.exit_code == 1
    assert "fetch.steam_api_url" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"day": "2025-01-01", "calls": 1e5}',
        b'{"day": "2025-01-01", "calls": -3}',
        b'{"day": "2025-01-01", "calls": "12"}',
        b'{"day": "2025-01-01", "calls": true}',
        b'{"calls": 12}',
        b"[]",
        b"",
        b'{"day": "", "calls": 12}',
        b'{"day": "garbage", "calls": 12}',
        b'{"day": "2025-13-45", "calls": 12}',
        b'{"day": "20250101", "calls": 12}',
        b'{"day": "2025-01-02", "calls": 12}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "not-json",
        "float",
        "negative",
        "text",
        "bool",
        "no-day",
        "list",
        "empty",
        "blank-day",
        "not-a-day",
        "no-such-day",
        "not-iso-day",
        "future-day",
        "nested",
    ],
)
def test_a_damaged_quota_file_fails_closed_and_says_how_to_fix_it(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "_quota.json"
    path.write_bytes(content)
    quota = DailyQuota(path, limit=100_000, today=lambda: date(2025, 1, 1))

    with pytest.raises(DataError) as raised:
        quota.spend()

    assert raised.value.path == path
    assert '{"day": "2025-01-01", "calls": N}' in raised.value.message
    assert path.read_bytes() == content  # not reset to a count of 1


def test_concurrent_spends_count_every_call(tmp_path: Path) -> None:
    """Processes spending at once must not lose counts (a read-modify-write race)."""
    path = tmp_path / "_quota.json"
    script = (
        "import sys\n"
        "from gamerec.dataio.steamweb import DailyQuota\n"
        "quota = DailyQuota(sys.argv[1], limit=10**6)\n"
        "for _ in range(100):\n"
        "    quota.spend()\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path)], env=os.environ.copy())
        for _ in range(4)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0, 0]
    assert DailyQuota(path, limit=10**6).used() == 400
