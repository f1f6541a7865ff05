"""The SteamSpy crawler against a real local server replaying recorded SteamSpy answers.

Politeness is checked from the server's side (arrival times), resilience by injected faults,
and "nothing lost, nothing twice" by interrupting crawls (an exception from the progress
callback, a SIGKILL of the real console script) and counting what the server saw.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import free_port
from gamerec import pipeline
from gamerec.cli import app
from gamerec.dataio.catalog import load_steamspy, parse_owners
from gamerec.dataio.http_client import PoliteClient, RetryPolicy
from gamerec.dataio.steamspy import (
    SteamSpyClient,
    crawl_all_pages,
    page_records,
    top_appids_by_owners,
)
from gamerec.errors import (
    FetchError,
    GamerecError,
    RateLimitError,
    ServerUnreachableError,
)
from gamerec.settings import Settings
from replay_server import (
    Fault,
    ReplayServer,
    fetch_env,
    fetch_overrides,
    page_appids,
    recorded_appdetails,
    recorded_pages,
)

RECORDED_PAGES = len(recorded_pages())  # the page after the last recorded one is empty


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


def settings_for(server: ReplayServer, root: Path, **fetch: Any) -> Settings:
    return Settings.load(overrides=fetch_overrides(server, root / "gamerec-data", **fetch))


def raw_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "raw" / "steamspy"


def request_counts(server: ReplayServer) -> Counter[tuple[str, str]]:
    """How often each page / appid was asked for."""
    counts: Counter[tuple[str, str]] = Counter()
    for request in server.requests():
        kind = request.params.get("request", "")
        counts[(kind, request.params.get("page") or request.params.get("appid") or "")] += 1
    return counts


def first_page_records() -> dict[int, dict[str, Any]]:
    """Every recorded app's record from the first page it appears on."""
    records: dict[int, dict[str, Any]] = {}
    for body in recorded_pages().values():
        for key, record in json.loads(body).items():
            records.setdefault(int(key), record)
    return records


def leftover_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file()]


class FakeTime:
    """An injected clock and sleep: sleeping advances the clock instantly and is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- nothing lost, nothing twice ------------------------------------------------------------


def test_every_unique_appid_lands_exactly_once_and_details_bring_genres_and_tags(
    workdir: Path, server: ReplayServer
) -> None:
    pages = page_appids()
    shared = [set(a) & set(b) for a, b in itertools.pairwise(pages)]
    assert all(shared), "the recorded pages must overlap, as SteamSpy's do"
    unique = set().union(*map(set, pages))
    assert len(unique) < sum(map(len, pages))

    settings = settings_for(server, workdir)
    summary = pipeline.fetch_steamspy(settings, details=25)

    assert summary.pages.to_dict() == {
        "fetched": RECORDED_PAGES,
        "skipped": 0,
        "failed": {},
        "end_page": RECORDED_PAGES,
        "apps": len(unique),
    }
    for number, body in recorded_pages().items():  # raw answers, byte for byte
        assert (raw_dir(settings) / "all" / f"page_{number}.json").read_bytes() == body
    catalog = load_steamspy(raw_dir(settings))
    assert catalog["appid"].is_unique
    assert set(catalog["appid"].astype(int)) == unique
    assert len(catalog) == len(unique)

    # appdetails went to the 25 most-owned games: none left out owns more than one taken
    details = summary.appdetails
    assert details.requested == 25
    assert details.fetched + details.not_found == 25
    detailed = {int(r.params["appid"]) for r in server.requests(request="appdetails")}
    assert len(detailed) == 25
    low = {a: parse_owners(record["owners"])[0] for a, record in first_page_records().items()}
    assert min(low[a] for a in detailed) >= max(low[a] for a in unique - detailed)
    served = {
        a: json.loads(recorded_appdetails()[a]) for a in detailed if a in recorded_appdetails()
    }
    assert len(served) >= 20
    rows = catalog.set_index(catalog["appid"].astype(int))
    for appid, record in served.items():
        genres = [g.strip() for g in (record["genre"] or "").split(",") if g.strip()]
        tags = list(record["tags"]) if isinstance(record["tags"], dict) else []
        assert rows.at[appid, "genres"] == genres
        assert rows.at[appid, "tags"] == tags
        assert rows.at[appid, "name"] == record["name"]
    assert sum(bool(rows.at[a, "tags"]) for a in served) >= 20


def test_ctrl_c_midway_then_rerun_refetches_nothing_complete_and_loses_nothing(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)

    def interrupt_after_page_1(stage: str, message: str, fraction: float | None) -> None:
        if message.startswith("page 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.fetch_steamspy(settings, details=8, progress=interrupt_after_page_1)
    assert sorted(p.name for p in (raw_dir(settings) / "all").iterdir()) == [
        "page_0.json",
        "page_1.json",
    ]

    def interrupt_after_third_detail(stage: str, message: str, fraction: float | None) -> None:
        if stage == "steamspy appdetails" and "(3/8)" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.fetch_steamspy(settings, details=8, progress=interrupt_after_third_detail)
    summary = pipeline.fetch_steamspy(settings, details=8)

    assert summary.pages.skipped == RECORDED_PAGES
    assert summary.appdetails.skipped == 3
    counts = request_counts(server)
    assert all(n == 1 for n in counts.values()), counts
    assert len([k for k in counts if k[0] == "all"]) == RECORDED_PAGES + 1
    assert len([k for k in counts if k[0] == "appdetails"]) == 8
    catalog = load_steamspy(raw_dir(settings))
    assert set(catalog["appid"].astype(int)) == set().union(*map(set, page_appids()))
    assert not leftover_temp_files(raw_dir(settings))


def test_sigkill_of_the_console_script_midway_then_rerun_resumes(
    workdir: Path, server: ReplayServer
) -> None:
    gamerec = shutil.which("gamerec") or str(Path(sys.executable).parent / "gamerec")
    assert Path(gamerec).exists()
    top = top_appids_by_owners(first_page_records(), 6)
    server.fail(Fault("hang"), request="appdetails", appid=top[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    env.update(fetch_env(server))
    command = [gamerec, "fetch", "steamspy", "--details", "6", "--json"]

    victim = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.hanging.wait(timeout=30), "the crawl never reached the hanging request"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
    assert victim.returncode == -signal.SIGKILL

    # the re-run in-process (the workdir fixture made workdir the current directory)
    rerun = CliRunner().invoke(app, command[1:], env=fetch_env(server))
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["pages"]["fetched"] == 0
    assert summary["pages"]["skipped"] == RECORDED_PAGES
    assert summary["appdetails"]["skipped"] == 2
    assert summary["appdetails"]["fetched"] + summary["appdetails"]["not_found"] == 4
    counts = request_counts(server)
    assert counts[("appdetails", str(top[2]))] == 2  # the one that hung, asked again
    assert all(n == 1 for key, n in counts.items() if key != ("appdetails", str(top[2])))
    data = workdir / "gamerec-data"
    assert not leftover_temp_files(data)
    detailed = {int(p.stem) for p in (data / "raw/steamspy/appdetails").glob("[0-9]*.json")}
    assert detailed <= set(top) and len(detailed) >= 5


def test_an_item_failing_for_good_is_reported_and_the_rerun_fetches_only_it(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)  # max_retries 3: four attempts
    server.fail(Fault("truncated-json"), times=4, request="all", page=1)

    first = pipeline.fetch_steamspy(settings, details=0)

    assert list(first.pages.failed) == ["1"]
    message = first.pages.failed["1"]
    assert "SteamSpy request=all page=1" in message and "after 4 attempts" in message
    assert first.pages.fetched == RECORDED_PAGES - 1
    assert first.pages.end_page == RECORDED_PAGES
    assert not (raw_dir(settings) / "all" / "page_1.json").exists()
    assert not leftover_temp_files(raw_dir(settings))

    second = pipeline.fetch_steamspy(settings, details=0)

    assert second.pages.fetched == 1 and second.pages.failed == {}
    counts = request_counts(server)
    assert counts[("all", "1")] == 5
    assert all(n == 1 for key, n in counts.items() if key != ("all", "1"))  # end not re-asked
    assert (raw_dir(settings) / "all" / "page_1.json").read_bytes() == recorded_pages()[1]


def test_end_page_is_remembered_and_a_larger_pages_limit_still_fetches_more(
    workdir: Path, server: ReplayServer
) -> None:
    settings = settings_for(server, workdir)
    state = raw_dir(settings) / "all" / "_state.json"

    assert pipeline.fetch_steamspy(settings, pages=1, details=0).pages.fetched == 1
    assert not state.exists()
    assert pipeline.fetch_steamspy(settings, pages=2, details=0).pages.fetched == 1
    everything = pipeline.fetch_steamspy(settings, details=0).pages
    assert everything.fetched == RECORDED_PAGES - 2
    assert json.loads(state.read_text()) == {"end_page": RECORDED_PAGES}
    asked = len(server.requests(request="all"))
    assert asked == RECORDED_PAGES + 1

    again = pipeline.fetch_steamspy(settings, details=0).pages
    fewer = pipeline.fetch_steamspy(settings, pages=2, details=0).pages
    assert len(server.requests(request="all")) == asked  # the end is not asked again
    assert again.skipped == RECORDED_PAGES and again.end_page == RECORDED_PAGES
    assert fewer.skipped == 2 and fewer.fetched == 0

    beyond = pipeline.fetch_steamspy(settings, pages=50, details=0).pages

    # more pages than the catalog had: only the old end page is asked again (it may have grown)
    assert [r.params["page"] for r in server.requests(request="all")][asked:] == ["3"]
    assert beyond.skipped == RECORDED_PAGES and beyond.end_page == RECORDED_PAGES


def test_an_empty_page_ends_the_crawl_is_not_saved_and_a_larger_pages_looks_again(
    workdir: Path, server: ReplayServer
) -> None:
    server.fail(Fault("empty"), request="all", page=1)
    settings = settings_for(server, workdir)

    first = pipeline.fetch_steamspy(settings, details=0).pages

    assert first.fetched == 1 and first.end_page == 1
    assert sorted(p.name for p in (raw_dir(settings) / "all").iterdir()) == [
        "_state.json",
        "page_0.json",
    ]
    assert pipeline.fetch_steamspy(settings, details=0).pages.fetched == 0

    second = pipeline.fetch_steamspy(settings, pages=RECORDED_PAGES + 1, details=0).pages

    assert second.fetched == RECORDED_PAGES - 1 and second.end_page == RECORDED_PAGES
    assert [r.params["page"] for r in server.requests(request="all")] == ["0", "1", "1", "2", "3"]
    assert len(load_steamspy(raw_dir(settings))) == len(set().union(*map(set, page_appids())))


def test_unknown_appids_are_recorded_as_not_found_and_not_asked_again(workdir: Path) -> None:
    top = top_appids_by_owners(first_page_records(), 6)
    unknown = {top[1], top[4]}
    with ReplayServer(unknown_appids=unknown) as server:
        settings = settings_for(server, workdir)
        first = pipeline.fetch_steamspy(settings, pages=1, details=6).appdetails
        second = pipeline.fetch_steamspy(settings, pages=1, details=6).appdetails
        asked = len(server.requests(request="appdetails"))

    assert first.not_found == 2 and first.fetched == 4
    state = json.loads((raw_dir(settings) / "appdetails" / "_not_found.json").read_text())
    assert set(state["appids"]) == unknown
    assert not any((raw_dir(settings) / "appdetails" / f"{a}.json").exists() for a in unknown)
    assert second.to_dict() == {
        "requested": 6,
        "fetched": 0,
        "skipped": 4,
        "not_found": 2,
        "failed": {},
    }
    assert asked == 6
    catalog = load_steamspy(raw_dir(settings)).set_index("appid")
    assert all(catalog.at[a, "tags"] == [] for a in unknown)  # the page row, no details


# -- politeness and resilience --------------------------------------------------------------


def test_server_never_sees_requests_closer_than_the_intervals(
    workdir: Path, server: ReplayServer
) -> None:
    all_gap, any_gap = 0.1, 0.05
    server.fail(Fault("status", status=500), request="all", page=1)
    server.fail(Fault("cut"), request="appdetails")
    settings = settings_for(server, workdir, all_interval_s=all_gap, request_interval_s=any_gap)

    pipeline.fetch_steamspy(settings, details=8)

    seen = server.requests()
    pages = [r.time for r in seen if r.params["request"] == "all"]
    assert len(pages) == RECORDED_PAGES + 2  # one retry
    assert len(seen) == len(pages) + 9
    assert min(b - a for a, b in itertools.pairwise(pages)) >= all_gap
    times = [r.time for r in seen]
    assert min(b - a for a, b in itertools.pairwise(times)) >= any_gap


def test_retry_after_of_a_429_is_honoured(workdir: Path, server: ReplayServer) -> None:
    server.fail(Fault("status", status=429, retry_after="1"), request="all", page=0)
    settings = settings_for(server, workdir, backoff_max_s=2.0)

    summary = pipeline.fetch_steamspy(settings, pages=1, details=0)

    first, second = (r.time for r in server.requests(request="all", page=0))
    assert second - first >= 1.0
    assert summary.pages.fetched == 1


TRANSIENT: list[Fault] = [
    Fault("status", status=500),
    Fault("status", status=503),
    Fault("status", status=429),
    Fault("slow", seconds=1.0),
    Fault("cut"),
    Fault("truncated-json"),
    Fault("not-json"),
]


@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f"{f.kind}-{f.status}")
def test_a_transient_fault_is_retried_and_only_the_good_body_is_written(
    workdir: Path, server: ReplayServer, fault: Fault
) -> None:
    server.fail(fault, request="all", page=1)
    settings = settings_for(server, workdir, timeout_s=0.3)

    summary = pipeline.fetch_steamspy(settings, pages=2, details=0)

    assert summary.pages.to_dict() == {
        "fetched": 2,
        "skipped": 0,
        "failed": {},
        "end_page": None,
        "apps": 1999,
    }
    assert [r.fault for r in server.requests(request="all", page=1)] == [fault.kind, None]
    assert (raw_dir(settings) / "all" / "page_1.json").read_bytes() == recorded_pages()[1]
    assert not leftover_temp_files(raw_dir(settings))


def test_backoff_doubles_with_jitter_up_to_the_cap_and_names_the_request(
    server: ReplayServer,
) -> None:
    server.fail(Fault("status", status=500), times=None, request="all")
    for jitter, expected in [(1.0, [1.0, 2.0, 4.0, 5.0]), (0.0, [0.5, 1.0, 2.0, 2.5])]:
        fake = FakeTime()
        with (
            PoliteClient(
                retry=RetryPolicy(max_retries=4, backoff_base_s=1.0, backoff_max_s=5.0),
                sleep=fake.sleep,
                clock=fake.clock,
                jitter=lambda j=jitter: j,
            ) as client,
            pytest.raises(FetchError) as raised,
        ):
            client.get_json(server.steamspy_url, {"request": "all", "page": 0}, what="page 0")
        assert fake.sleeps == expected
        assert "page 0: failed after 5 attempts: HTTP 500" in raised.value.message


def test_retry_after_longer_than_the_longest_backoff_gives_up_at_once(
    server: ReplayServer,
) -> None:
    server.fail(Fault("status", status=429, retry_after="3600"), times=None, request="all")
    fake = FakeTime()
    with (
        SteamSpyClient(
            server.steamspy_url, sleep=fake.sleep, clock=fake.clock, backoff_max_s=300
        ) as client,
        pytest.raises(RateLimitError) as raised,
    ):
        client.all_page(0)
    assert "SteamSpy request=all page=0" in raised.value.message
    assert "3600 s" in raised.value.message and "try again later" in raised.value.message
    assert len(server.requests()) == 1 and fake.sleeps == []

    server.fail(Fault("status", status=429, retry_after="7"), request="tag")
    with SteamSpyClient(
        server.steamspy_url, sleep=fake.sleep, clock=fake.clock, request_interval_s=0
    ) as client:
        client.tag("FPS")
    assert fake.sleeps == [7.0]


def test_a_server_failing_everything_stops_the_crawl_with_a_fetch_error(
    workdir: Path, server: ReplayServer
) -> None:
    server.fail(Fault("status", status=502), times=None)
    settings = settings_for(server, workdir)

    with pytest.raises(FetchError) as raised:
        pipeline.fetch_steamspy(settings, details=3)

    message = raised.value.message
    assert "SteamSpy request=all page=2: failed after 4 attempts: HTTP 502" in message
    assert "run the command again to resume" in message
    assert len(server.requests()) == 3 * 4  # three pages in a row, then it stops


def test_a_base_url_nothing_listens_on_is_a_clear_error(workdir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api.php"
    settings = Settings.load(
        overrides={
            "data_dir": workdir / "gamerec-data",
            "fetch.steamspy_url": url,
            "fetch.max_retries": 1,
            "fetch.backoff_base_s": 0.001,
        }
    )
    with pytest.raises(ServerUnreachableError) as raised:
        pipeline.fetch_steamspy(settings, details=0)
    assert isinstance(raised.value, GamerecError)
    assert "could not connect" in raised.value.message
    assert url in raised.value.message and "check your network connection" in raised.value.message

    result = CliRunner().invoke(
        app,
        ["fetch", "steamspy", "--pages", "1"],
        env={"GAMEREC_FETCH__STEAMSPY_URL": url, "GAMEREC_FETCH__MAX_RETRIES": "0"},
    )
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "could not connect" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("code", "reason"),
    [(-2, "Name or service not known"), (-3, "Temporary failure in name resolution")],
)
def test_a_host_that_cannot_be_resolved_fails_at_once(code: int, reason: str) -> None:
    # offline, or a mistyped host: no retry can help, and six of them took 43 s
    import socket

    import httpx

    def no_dns(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(code, reason)
        except socket.gaierror as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    slept: list[float] = []
    client = PoliteClient(
        transport=httpx.MockTransport(no_dns), retry=RetryPolicy(5, 2.0, 300.0), sleep=slept.append
    )
    with client, pytest.raises(ServerUnreachableError) as raised:
        client.get_json("http://steamspy.example/api.php", what="SteamSpy request=all page=0")
    assert slept == []  # not one retry
    assert reason in raised.value.message
    assert "steamspy.example" in raised.value.message
    assert "check your network connection" in raised.value.message


def test_top100_genre_and_tag_requests_return_the_servers_answers_politely(
    server: ReplayServer,
) -> None:
    gap = 0.05
    with SteamSpyClient(server.steamspy_url, request_interval_s=gap) as client:
        answers = {
            "top100in2weeks": client.top100in2weeks(),
            "top100forever": client.top100forever(),
            "top100owned": client.top100owned(),
        }
        action = client.genre("Action")
        fps = client.tag("FPS")
    for request, answer in answers.items():
        assert answer == server.top100(request) and len(answer) == 100
    assert action == server.by_genre_or_tag("genre", "Action") and len(action) > 100
    assert fps == server.by_genre_or_tag("tag", "FPS") and "379720" in fps
    assert [r.params for r in server.requests()][3:] == [
        {"request": "genre", "genre": "Action"},
        {"request": "tag", "tag": "FPS"},
    ]
    times = [r.time for r in server.requests()]
    assert min(b - a for a, b in itertools.pairwise(times)) >= gap


def test_crawl_ignores_damaged_files_and_refetches_them(
    workdir: Path, server: ReplayServer
) -> None:
    directory = workdir / "all"
    directory.mkdir()
    (directory / "page_0.json").write_bytes(recorded_pages()[0][:5000])  # cut short by a crash
    (directory / ".page_1.json.k2j3.tmp").write_bytes(b"{")  # an unfinished atomic write
    with SteamSpyClient(server.steamspy_url, all_interval_s=0, request_interval_s=0) as client:
        summary = crawl_all_pages(client, directory, pages=2)
    assert summary["fetched"] == 2 and summary["skipped"] == 0
    assert (directory / "page_0.json").read_bytes() == recorded_pages()[0]
    assert len(page_records(directory)) == 1999


# -- the command line -----------------------------------------------------------------------


def test_cli_fetch_steamspy_prints_a_summary_table_or_json(
    workdir: Path, server: ReplayServer
) -> None:
    runner = CliRunner()
    env = fetch_env(server)

    as_json = runner.invoke(app, ["fetch", "steamspy", "--details", "5", "--json"], env=env)
    as_table = runner.invoke(app, ["fetch", "steamspy", "--details", "5"], env=env)

    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["pages"]["fetched"] == RECORDED_PAGES
    assert summary["appdetails"]["fetched"] + summary["appdetails"]["not_found"] == 5
    assert (workdir / summary["output"]).resolve() == workdir / "gamerec-data/raw/steamspy"
    assert "steamspy pages" in as_json.stderr  # the progress bar went to stderr
    assert as_table.exit_code == 0, as_table.output
    assert "Fetched from SteamSpy" in as_table.stdout
    assert "page 3 came back empty: the catalog is complete" in as_table.stdout


def test_cli_exits_1_and_lists_what_failed(workdir: Path, server: ReplayServer) -> None:
    server.fail(Fault("not-json"), times=None, request="all", page=1)
    result = CliRunner().invoke(
        app, ["fetch", "steamspy", "--details", "0", "--json"], env=fetch_env(server)
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["pages"]["failed"].keys() == {"1"}
    assert "failed: SteamSpy request=all page=1" in result.stderr
    assert "Error: 1 requests failed after retries" in result.stderr
    assert "Traceback" not in result.output


def test_cli_rejects_a_pages_limit_below_one(workdir: Path, server: ReplayServer) -> None:
    result = CliRunner().invoke(app, ["fetch", "steamspy", "--pages", "0"], env=fetch_env(server))
    assert result.exit_code == 1
    assert "fetch.pages" in result.stderr
    assert server.requests() == []


# --- answers that must not cost memory or politeness -----------------------------------------


def test_a_gzip_encoded_answer_is_decoded(server: ReplayServer) -> None:
    server.fail(Fault("gzip"), request="all")
    with SteamSpyClient(server.steamspy_url, all_interval_s=0, request_interval_s=0) as client:
        answer = client.all_page(0)
    assert answer.body == recorded_pages()[0]
    assert server.requests()[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_gzip_bomb_answer_stops_at_the_body_cap_without_a_retry(server: ReplayServer) -> None:
    bomb = gzip.compress(b"{" + b" " * (32 * 1024**2) + b"}", compresslevel=9)  # ~32 KB
    server.fail(Fault("gzip", body=bomb), times=None, request="all")
    with SteamSpyClient(
        server.steamspy_url, all_interval_s=0, max_retries=3, max_body_bytes=1024**2
    ) as client:
        tracemalloc.start()
        try:
            with pytest.raises(FetchError) as raised:
                client.all_page(0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "larger than 1,048,576 bytes" in raised.value.message
    assert "fetch.steamspy_url" in raised.value.message
    assert len(server.requests()) == 1  # not retried: a retry would be the same answer
    assert peak < 8 * 1024**2  # not the 32 MiB the answer expands to


def test_a_plain_answer_past_the_body_cap_is_refused(server: ReplayServer) -> None:
    with (
        SteamSpyClient(server.steamspy_url, max_body_bytes=1000) as client,
        pytest.raises(FetchError, match="larger than 1,000 bytes"),
    ):
        client.all_page(0)


def test_a_cut_gzip_answer_is_retried_as_truncated(server: ReplayServer) -> None:
    cut = gzip.compress(recorded_pages()[0])[:-100]
    server.fail(Fault("gzip", body=cut), request="all")
    fake = FakeTime()
    with SteamSpyClient(
        server.steamspy_url, sleep=fake.sleep, clock=fake.clock, all_interval_s=0
    ) as client:
        answer = client.all_page(0)
    assert answer.body == recorded_pages()[0]
    assert [r.fault for r in server.requests()] == ["gzip", None]


def test_a_deeply_nested_answer_is_retried_as_invalid(server: ReplayServer) -> None:
    deep = gzip.compress(b"[" * 100_000 + b"]" * 100_000)
    server.fail(Fault("gzip", body=deep), request="all")
    fake = FakeTime()
    with SteamSpyClient(
        server.steamspy_url, sleep=fake.sleep, clock=fake.clock, all_interval_s=0
    ) as client:
        answer = client.all_page(0)
    assert answer.body == recorded_pages()[0]
    assert [r.fault for r in server.requests()] == ["gzip", None]


def test_a_saved_page_nested_too_deeply_is_fetched_again(
    workdir: Path, server: ReplayServer
) -> None:
    directory = workdir / "all"
    directory.mkdir()
    (directory / "page_0.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with SteamSpyClient(server.steamspy_url, all_interval_s=0, request_interval_s=0) as client:
        summary = crawl_all_pages(client, directory, pages=1)
    assert summary["fetched"] == 1
    assert (directory / "page_0.json").read_bytes() == recorded_pages()[0]


@pytest.mark.parametrize(
    "retry_after", ["nan", "-5", "0", "Wed, 21 Oct 2015 07:28:00 GMT", "NaN", "-inf"]
)
def test_a_retry_after_that_says_no_wait_waits_the_backoff_base(
    server: ReplayServer, retry_after: str
) -> None:
    server.fail(Fault("status", status=429, retry_after=retry_after), request="tag")
    fake = FakeTime()
    with SteamSpyClient(
        server.steamspy_url,
        sleep=fake.sleep,
        clock=fake.clock,
        request_interval_s=0,
        backoff_base_s=2.0,
        backoff_max_s=300.0,
    ) as client:
        client.tag("FPS")
    assert fake.sleeps == [2.0]


def test_steamspy_follows_a_redirect_to_another_origin(server: ReplayServer) -> None:
    """Without a secret to protect, a moved API is followed (SteamSpy sends no key)."""
    with ReplayServer() as elsewhere:
        server.fail(Fault("redirect", location=elsewhere.base + "/"), request="all")
        with SteamSpyClient(server.steamspy_url, all_interval_s=0) as client:
            answer = client.all_page(1)
        assert answer.body == recorded_pages()[1]
        assert [r.params.get("page") for r in elsewhere.requests()] == ["1"]
