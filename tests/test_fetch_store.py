"""``gamerec fetch store`` against a real local server replaying recorded Steam store answers.

Politeness is measured from the server's side (arrival times) and on an injected clock (the
default gap against the store's limit); resilience by injected 429, 500, cut and truncated
answers; "nothing lost, nothing twice" by counting what the server saw across runs.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gamerec import pipeline
from gamerec.cli import app
from gamerec.dataio.catalog import load_catalog_table
from gamerec.dataio.datasets import BUNDLED_CATALOG, data_file
from gamerec.dataio.steamspy import page_records, top_appids_by_owners
from gamerec.dataio.steamstore import StoreClient, most_owned_appids, parse_appids
from gamerec.errors import InvalidRequestError, RateLimitError
from gamerec.settings import Settings
from replay_server import (
    STEAMSPY_PAGES,
    Fault,
    ReplayServer,
    fetch_env,
    fetch_overrides,
    recorded_store,
)

#: eight recorded apps of the three shards: ELDEN RING, Baldur's Gate 3, Brawlhalla, a DLC with
#: its base game, a demo, a soundtrack, a year-only date, a game "To be announced"
RECORDED = [1245620, 1086940, 291550, 1088000, 1088670, 1247270, 1245960, 1088030]
#: apps the store does not show: two it never had, one recorded app it answers "success": false
UNKNOWN = [1086011, 1086012]
HIDDEN = 292030


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(store_missing={HIDDEN}) as replay:
        yield replay


def settings_for(server: ReplayServer, root: Path, **fetch: Any) -> Settings:
    return Settings.load(overrides=fetch_overrides(server, root / "gamerec-data", **fetch))


def store_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "raw" / "store"


def asked(server: ReplayServer) -> list[int]:
    """The appids of the store requests, in arrival order."""
    return [int(r.params["appids"]) for r in server.requests() if r.path == "/api/appdetails"]


def leftover_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file()]


class FakeTime:
    """An injected clock and sleep: sleeping advances the clock instantly."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# -- nothing lost, nothing twice --------------------------------------------------------------


def test_every_app_is_saved_once_through_429_500_cut_and_truncated_answers(
    workdir: Path, server: ReplayServer
) -> None:
    server.fail(Fault("status", status=429, retry_after="0.2"), appids=RECORDED[0])
    server.fail(Fault("status", status=500), times=2, appids=RECORDED[1])
    server.fail(Fault("truncated-json"), appids=RECORDED[3])
    server.fail(Fault("cut"), appids=RECORDED[4])
    server.fail(Fault("not-json"), appids=UNKNOWN[0])
    wanted = [*RECORDED, *UNKNOWN, HIDDEN]
    settings = settings_for(server, workdir, backoff_max_s=1.0)

    summary = pipeline.fetch_store(settings, appids=[",".join(map(str, wanted))])

    assert summary.to_dict() == {
        "appids_from": "--appids",
        "requested": len(wanted),
        "fetched": len(RECORDED),
        "skipped": 0,
        "not_found": 3,
        "failed": {},
        "output": str(store_dir(settings)),
    }
    counts = Counter(asked(server))
    assert counts == {
        **{appid: 1 for appid in wanted},
        RECORDED[0]: 2,
        RECORDED[1]: 3,
        RECORDED[3]: 2,
        RECORDED[4]: 2,
        UNKNOWN[0]: 2,
    }
    for appid in RECORDED:  # the answers, byte for byte
        assert (store_dir(settings) / f"{appid}.json").read_bytes() == server.store_body(appid)
    not_found = json.loads((store_dir(settings) / "_not_found.json").read_text())
    assert not_found == {"appids": sorted([*UNKNOWN, HIDDEN])}
    assert sorted(p.name for p in store_dir(settings).iterdir()) == sorted(
        [*(f"{appid}.json" for appid in RECORDED), "_not_found.json"]
    )
    assert not leftover_temp_files(store_dir(settings))
    first, retried = (r.time for r in server.requests(appids=RECORDED[0]))
    assert retried - first >= 0.2  # the 429's Retry-After

    before = len(server.requests())
    again = pipeline.fetch_store(settings, appids=[",".join(map(str, wanted))])

    assert len(server.requests()) == before  # nothing saved or known missing is asked again
    assert again.skipped == len(RECORDED) and again.not_found == 3
    assert again.fetched == 0 and again.failed == {}


def test_ctrl_c_midway_then_rerun_asks_only_for_the_rest(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)
    wanted = [str(appid) for appid in RECORDED]

    def interrupt_after_the_third(stage: str, message: str, fraction: float | None) -> None:
        if stage == "store appdetails" and f"(3/{len(RECORDED)})" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.fetch_store(settings, appids=wanted, progress=interrupt_after_the_third)
    summary = pipeline.fetch_store(settings, appids=wanted)

    assert summary.skipped == 3 and summary.fetched == len(RECORDED) - 3
    assert Counter(asked(server)) == dict.fromkeys(RECORDED, 1)
    assert not leftover_temp_files(store_dir(settings))


def test_a_damaged_saved_answer_is_fetched_again(workdir: Path, server: ReplayServer) -> None:
    settings = settings_for(server, workdir)
    folder = store_dir(settings)
    folder.mkdir(parents=True)
    (folder / "1086940.json").write_bytes(server.store_body(1086940)[:500])  # cut by a crash
    (folder / "1245620.json").write_bytes(server.store_body(1086940))  # another app's answer

    summary = pipeline.fetch_store(settings, appids=["1086940,1245620,291550"])

    assert summary.fetched == 3 and summary.skipped == 0
    for appid in (1086940, 1245620):
        assert (folder / f"{appid}.json").read_bytes() == server.store_body(appid)


# -- politeness -------------------------------------------------------------------------------


def test_the_server_never_sees_two_requests_closer_than_the_interval(
    workdir: Path, server: ReplayServer
) -> None:
    gap = 0.05
    server.fail(Fault("status", status=429), appids=RECORDED[2])
    server.fail(Fault("status", status=500), appids=RECORDED[5])
    settings = settings_for(server, workdir, store_interval_s=gap)

    pipeline.fetch_store(settings, appids=[",".join(map(str, RECORDED))])

    times = [r.time for r in server.requests()]
    assert len(times) == len(RECORDED) + 2
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= gap, gaps


def test_the_default_interval_keeps_under_200_requests_in_any_5_minutes(
    server: ReplayServer,
) -> None:
    default = Settings().fetch
    assert default.store_interval_s == 1.5
    assert default.store_url == "https://store.steampowered.com/api/appdetails"
    fake = FakeTime()
    sent: list[float] = []
    hooks = {"request": [lambda request: sent.append(fake.now)]}
    with (
        httpx.Client(event_hooks=hooks) as http,
        StoreClient(
            server.store_url,
            interval_s=default.store_interval_s,
            sleep=fake.sleep,
            clock=fake.clock,
            client=http,
        ) as client,
    ):
        for appid in itertools.islice(itertools.cycle(RECORDED), 401):
            client.appdetails(appid)
    # the clock stands still while a request is out, so every gap is the interval's alone
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 1.5
    busiest = max(sum(1 for t in sent if start <= t < start + 300.0) for start in sent)
    assert busiest == 200


def test_a_rate_limit_longer_than_the_longest_backoff_stops_and_says_what_is_saved(
    workdir: Path, server: ReplayServer
) -> None:
    server.fail(Fault("status", status=429, retry_after="600"), times=None, appids=RECORDED[2])
    settings = settings_for(server, workdir, backoff_max_s=60)

    with pytest.raises(RateLimitError) as raised:
        pipeline.fetch_store(settings, appids=[",".join(map(str, RECORDED))])

    message = raised.value.message
    assert f"Steam store appdetails appids={RECORDED[2]}" in message
    assert "asks to wait 600 s" in message
    assert f"2 store appdetails fetched in this run are saved; {len(RECORDED) - 2} remain" in (
        message
    )
    saved = {p.name for p in store_dir(settings).iterdir()}
    assert saved == {f"{RECORDED[0]}.json", f"{RECORDED[1]}.json"}


def test_the_store_asks_in_english_for_one_app_a_request(server: ReplayServer) -> None:
    with StoreClient(server.store_url, interval_s=0) as client:
        answer = client.appdetails(1086940)
    assert answer.data["1086940"]["data"]["name"] == "Baldur's Gate 3"
    (request,) = server.requests()
    assert request.path == "/api/appdetails"
    assert request.params == {"appids": "1086940", "l": "english"}


# -- which apps ---------------------------------------------------------------------------------


def test_without_a_workspace_catalog_the_bundled_catalogs_most_owned_come_first(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)

    summary = pipeline.fetch_store(settings, details=4)

    bundled = load_catalog_table(data_file(BUNDLED_CATALOG))
    assert asked(server) == most_owned_appids(bundled, 4) == [570, 730, 578080, 271590]
    assert summary.appids_from == f"the bundled catalog ({BUNDLED_CATALOG})"
    assert summary.not_found == 4  # none of them is among the recorded store apps


def test_with_steamspy_pages_their_most_owned_come_first(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)
    pages = Path(settings.data_dir) / "raw" / "steamspy" / "all"
    pages.mkdir(parents=True)
    for page in STEAMSPY_PAGES.glob("page_*.json.gz"):
        shutil.copy(page, pages / page.name)

    summary = pipeline.fetch_store(settings, details=5)

    assert asked(server) == top_appids_by_owners(page_records(pages), 5)
    assert summary.appids_from == str(pages)


def test_after_preprocess_the_processed_catalogs_most_owned_come_first(
    workdir: Path, server: ReplayServer, bundled_workspace: Path
) -> None:
    from gamerec.artifacts.processed import read_processed

    settings = settings_for(server, workdir)
    shutil.copytree(bundled_workspace / "processed", Path(settings.data_dir) / "processed")
    items = read_processed(bundled_workspace / "processed", tables=("items",)).items

    summary = pipeline.fetch_store(settings, details=6)

    assert asked(server) == most_owned_appids(items, 6)
    assert summary.appids_from.endswith("processed/items.parquet")
    owners = items.drop_duplicates("appid").set_index("appid")["owners_low"]
    lows = [owners[appid] for appid in asked(server)]
    assert lows == sorted(lows, reverse=True)


def test_most_owned_ranks_by_owners_then_reviews_then_appid_with_unknown_owners_last() -> None:
    import pandas as pd

    items = pd.DataFrame(
        {
            "appid": pd.array([5, 4, 3, 2, 1, None], dtype="Int64"),
            "owners_low": pd.array([20, None, 50, 20, 20, 99], dtype="Int64"),
            "owners_high": pd.array([50, None, 100, 50, 50, 200], dtype="Int64"),
            "positive": pd.array([10, 999, 1, 30, 10, 5], dtype="Int64"),
            "negative": pd.array([0, 0, 0, None, 0, 0], dtype="Int64"),
        }
    )
    assert most_owned_appids(items, 10) == [3, 2, 1, 5, 4]
    assert most_owned_appids(items, 2) == [3, 2]
    assert most_owned_appids(items, 0) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["1086940,1245620"], [1086940, 1245620]),
        (["1086940", " 1245620 , 1086940,"], [1086940, 1245620]),
    ],
)
def test_appids_are_read_in_order_without_repeats(given: list[str], expected: list[int]) -> None:
    assert parse_appids(given) == expected


@pytest.mark.parametrize("bad", [["abc"], ["12,-3"], ["1.5"], ["٣"], ["0"], [","], []])
def test_a_bad_appid_is_an_error_that_shows_how_to_give_them(bad: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_appids(bad)
    assert "--appids 1086940,1245620" in raised.value.message


# -- the command line ---------------------------------------------------------------------------


def test_cli_fetch_store_prints_json_or_a_table_with_what_happened(
    workdir: Path, server: ReplayServer
) -> None:
    runner = CliRunner()
    env = fetch_env(server)
    wanted = f"{RECORDED[0]},{RECORDED[1]},{HIDDEN}"

    as_json = runner.invoke(app, ["fetch", "store", "--appids", wanted, "--json"], env=env)
    as_table = runner.invoke(
        app, ["fetch", "store", "--appids", wanted, "--appids", str(RECORDED[2])], env=env
    )

    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert (summary["fetched"], summary["not_found"], summary["failed"]) == (2, 1, {})
    assert (workdir / summary["output"]).resolve() == workdir / "gamerec-data/raw/store"
    assert "store appdetails" in as_json.stderr  # the progress bar went to stderr
    assert as_table.exit_code == 0, as_table.output
    assert "Fetched from the Steam store" in as_table.stdout
    assert "not in the store (remembered)" in as_table.stdout
    assert Counter(asked(server)) == {RECORDED[0]: 1, RECORDED[1]: 1, HIDDEN: 1, RECORDED[2]: 1}


def test_cli_exits_1_and_lists_what_failed(workdir: Path, server: ReplayServer) -> None:
    server.fail(Fault("status", status=500), times=None, appids=RECORDED[1])
    result = CliRunner().invoke(
        app,
        ["fetch", "store", "--appids", f"{RECORDED[0]},{RECORDED[1]}", "--json"],
        env=fetch_env(server),
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"].keys() == {str(RECORDED[1])}
    assert f"failed: Steam store appdetails appids={RECORDED[1]}" in result.stderr
    assert "Error: 1 requests failed after retries" in result.stderr
    assert "Traceback" not in result.output


def test_cli_refuses_a_bad_appid_before_any_request(workdir: Path, server: ReplayServer) -> None:
    result = CliRunner().invoke(
        app, ["fetch", "store", "--appids", "1086940,abc"], env=fetch_env(server)
    )
    assert result.exit_code == 1
    assert "Error: 'abc' is not an appid" in result.stderr
    assert "Traceback" not in result.output
    assert server.requests() == []


def test_cli_details_sets_how_many_of_the_catalog_are_asked_for(
    workdir: Path, server: ReplayServer
) -> None:
    result = CliRunner().invoke(
        app, ["fetch", "store", "--details", "3", "--json"], env=fetch_env(server)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requested"] == 3
    assert len(asked(server)) == 3


def test_the_replayed_records_are_the_fixtures(server: ReplayServer) -> None:
    recorded = recorded_store()
    assert len(recorded) == 572
    body = json.loads(server.store_body(1088000))
    assert body == {"1088000": {"success": True, "data": recorded[1088000]}}
    assert json.loads(server.store_body(HIDDEN)) == {str(HIDDEN): {"success": False}}
