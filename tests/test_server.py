"""``gamerec serve`` over real sockets: endpoints, errors, limits, token, signals, the page.

Most tests run a :class:`GamerecServer` in a thread on a free loopback port around one shared
Recommender; the signal tests run ``python -m gamerec serve`` as a subprocess.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gamerec.errors import ArtifactError, InvalidRequestError, NotFoundError
from gamerec.runtime.recommender import Recommender
from gamerec.runtime.server import GamerecServer, is_loopback, parse_recommend_request

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "test-token-123"
PLAYED = {"620": 600, "400": 120}


@pytest.fixture(scope="module")
def recommender(trained_workspace: Path) -> Recommender:
    return Recommender.from_dir(trained_workspace)


@contextmanager
def running(loader: Callable[[], Any], **options: Any) -> Iterator[GamerecServer]:
    server = GamerecServer(loader, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server(recommender: Recommender) -> Iterator[GamerecServer]:
    with running(lambda: recommender, timeout_s=5.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def guarded(recommender: Recommender) -> Iterator[GamerecServer]:
    """With a token and a 2 KB body cap."""
    with running(lambda: recommender, token=TOKEN, max_body_bytes=2048, timeout_s=5.0) as srv:
        yield srv


def call(
    server: GamerecServer,
    method: str,
    path: str,
    payload: Any = None,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: (status, headers, decoded JSON or text)."""
    sent = dict(headers or {})
    if payload is not None:
        body = json.dumps(payload).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    content_type = answer_headers.get("content-type", "")
    decoded = json.loads(data) if content_type.startswith("application/json") else data.decode()
    return response.status, answer_headers, decoded


def raw(server: GamerecServer, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_error(status: int, body: Any, expected: int, code: str | None = None) -> None:
    assert status == expected, body
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in json.dumps(body)


# ------------------------------------------------------------------------------ endpoints
def test_health_reports_versions_and_size(server: GamerecServer, recommender: Recommender) -> None:
    status, headers, body = call(server, "GET", "/health")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert body["status"] == "ok"
    assert body["items"] == recommender.n_items > 0
    assert body["model"] == recommender.model_manifest["created"]
    assert body["model_fingerprint"] == recommender.model_manifest["files"]["item_embeddings.npy"]
    assert body["index"] == "flat"
    assert body["genres"] == recommender.genres and "Action" in body["genres"]
    assert body["reloads"] == 0


@pytest.mark.parametrize(
    ("payload", "arguments"),
    [
        ({"time_played": PLAYED, "top_k": 7}, {"played": PLAYED, "k": 7}),
        (
            {"time_played": {"620": 600.5}, "genres": ["RPG"], "achievements": {"400": 3}},
            {"played": {"620": 600.5}, "genres": ["RPG"], "achievements": {"400": 3}},
        ),
        ({"genres": ["Strategy"], "top_k": 4}, {"genres": ["Strategy"], "k": 4}),
        ({"games": ["Portal 2", 400]}, {"played": {620: 0.0, 400: 0.0}}),
        ({}, {}),
        (
            {"time_played": PLAYED, "exclude_owned": False, "top_k": 3},
            {"played": PLAYED, "exclude_owned": False, "k": 3},
        ),
    ],
)
def test_recommend_answers_exactly_what_the_library_answers(
    server: GamerecServer,
    recommender: Recommender,
    payload: dict[str, Any],
    arguments: dict[str, Any],
) -> None:
    status, _, body = call(server, "POST", "/recommend", payload)
    assert status == 200, body
    expected = [r.to_dict() for r in recommender.recommend(**{"k": 10, **arguments})]
    assert body["recommendations"] == expected
    assert len(expected) == arguments.get("k", 10)


def test_recommend_for_a_known_user_and_reports_unknown_appids(
    server: GamerecServer, recommender: Recommender
) -> None:
    user = next(iter(recommender.known_users))
    status, _, body = call(
        server, "POST", "/recommend", {"user_id": user, "time_played": {"999999999": 5}}
    )
    assert status == 200
    assert body["recommendations"] == [r.to_dict() for r in recommender.recommend(user_id=user)]
    assert body["history"]["unknown_appids"] == [999999999]
    assert (body["history"]["given"], body["history"]["known"]) == (1, 0)


def test_http_library_and_cli_give_the_same_answer(
    server: GamerecServer, recommender: Recommender, trained_workspace: Path, workdir: Path
) -> None:
    from typer.testing import CliRunner

    from gamerec.cli import app

    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(trained_workspace),
            "recommend",
            "--played",
            "620:600,400:120",
            "--genres",
            "Action",
            "--top-k",
            "6",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)
    status, _, body = call(
        server,
        "POST",
        "/recommend",
        {"time_played": PLAYED, "genres": ["Action"], "top_k": 6},
    )
    assert status == 200
    from_library = recommender.recommend(played=PLAYED, genres=["Action"], k=6).to_dict()
    assert body == from_library == from_cli
    assert len(from_cli["recommendations"]) == 6


def test_similar_by_appid_and_by_name(server: GamerecServer, recommender: Recommender) -> None:
    status, _, body = call(server, "GET", "/similar/620?k=4")
    assert status == 200
    assert body["similar"] == [r.to_dict() for r in recommender.similar(620, 4)]
    status, _, by_name = call(server, "GET", "/similar/Portal%202?k=4")
    assert status == 200 and by_name == body
    status, _, default_k = call(server, "GET", "/similar/620")
    assert status == 200 and len(default_k["similar"]) == 10


def test_items_search_by_name_and_by_appid(server: GamerecServer, recommender: Recommender) -> None:
    status, _, body = call(server, "GET", "/items?q=portal&limit=3")
    assert status == 200
    assert body["items"] == recommender.search_items("portal", 3)
    assert all("portal" in item["name"].lower() for item in body["items"])
    status, _, body = call(server, "GET", "/items?appids=620,400,999999999")
    assert status == 200
    assert [(i["appid"], i["name"]) for i in body["items"]] == [(620, "Portal 2"), (400, "Portal")]


def test_the_page_is_self_contained(server: GamerecServer) -> None:
    status, headers, page = call(server, "GET", "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "<script>" in page and "<style>" in page
    # no external scripts, styles, fonts or images: the only URLs are links built for games
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"?(https?:)?//", page)
    assert "@import" not in page and "url(" not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["https://store.steampowered.com/app/"]


def test_head_answers_headers_only(server: GamerecServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.request("HEAD", "/health")
    response = connection.getresponse()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.read() == b""
    connection.close()


def test_keep_alive_serves_many_requests_on_one_connection(server: GamerecServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.connect()
    sock = connection.sock
    body = json.dumps({"time_played": PLAYED, "top_k": 3})
    for _ in range(20):
        connection.request(
            "POST", "/recommend", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Connection") is None  # not closing
        response.read()
        connection.request(
            "POST", "/recommend", body="{", headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 400  # a bad request does not cost the connection
        response.read()
    assert connection.sock is sock  # never reconnected
    connection.close()


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({"bogus": 1}, "unknown field"),
        ({"top_k": 0}, "between 1 and"),
        ({"top_k": -5}, "between 1 and"),
        ({"top_k": 10**30}, "between 1 and"),
        ({"top_k": 1001}, "between 1 and 100"),
        ({"top_k": 2.0}, "whole number"),
        ({"top_k": "5"}, "whole number"),
        ({"top_k": True}, "whole number"),
        ({"top_k": None}, "whole number"),
        ({"user_id": 123}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"time_played": [620]}, "time_played must be an object"),
        ({"time_played": {"portal": 5}}, "appids"),
        ({"time_played": {"620": "600"}}, "number of minutes"),
        ({"time_played": {"620": -1}}, "between 0"),
        ({"time_played": {"620": 1e300}}, "between 0"),
        ({"time_played": {"620": True}}, "number of minutes"),
        ({"achievements": {"620": 2.5}}, "whole number"),
        ({"genres": "RPG"}, "list of strings"),
        ({"genres": [1]}, "list of strings"),
        ({"exclude_owned": "no"}, "true or false"),
        ({"time_played": 0}, "time_played must be an object"),
        ({"genres": ""}, "list of strings"),
        ({"achievements": False}, "achievements must be an object"),
        ({"games": "Hades"}, "games must be a list of names or appids"),
        ({"games": [True]}, "games must be a list of names or appids"),
        ({"games": [["Hades"]]}, "games must be a list of names or appids"),
        ({"games": ["Hades"] * 101}, "at most 100 names"),
        ({"games": [""]}, "an empty game name"),
        ({"games": [-1]}, "-1 is not an appid"),
        ({"games": [10**400]}, "is not an appid"),
    ],
)
def test_bad_values_are_422(server: GamerecServer, payload: Any, fragment: str) -> None:
    status, _, body = call(server, "POST", "/recommend", payload)
    assert_error(status, body, 422, "invalid_request")
    assert fragment in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{'top_k': 5}",
        b'{"top_k": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe{}",
        b"",
        b"[" * 50_000 + b"]" * 50_000,
        b'{"top_k": ' + b"9" * 5000 + b"}",
    ],
)
def test_malformed_json_is_400(server: GamerecServer, body: bytes) -> None:
    status, _, answer = call(
        server, "POST", "/recommend", body=body, headers={"Content-Type": "application/json"}
    )
    assert_error(status, answer, 400, "bad_request")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_wrong_content_type_is_415(server: GamerecServer, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, body = call(server, "POST", "/recommend", body=b"{}", headers=headers)
    assert_error(status, body, 415, "unsupported_media_type")
    status, _, _ = call(
        server,
        "POST",
        "/recommend",
        body=b"{}",
        headers={"Content-Type": "Application/JSON; charset=UTF-8"},
    )
    assert status == 200


def test_an_unknown_user_is_answered_and_an_unknown_genre_is_404(server: GamerecServer) -> None:
    status, _, body = call(server, "POST", "/recommend", {"user_id": "nobody-at-all"})
    assert status == 200 and len(body["recommendations"]) == 10
    assert "unknown user 'nobody-at-all'" in body["note"]
    status, _, body = call(server, "POST", "/recommend", {"genres": ["Pinball Wizardry"]})
    assert_error(status, body, 404, "not_found")
    for odd in ("\ud800", "ポータル\u0000", "\u202e💥"):  # lone surrogates, NUL, emoji
        status, _, body = call(server, "POST", "/recommend", {"user_id": odd})
        assert status == 200 and "unknown user" in body["note"]
        status, _, body = call(server, "POST", "/recommend", {"genres": [odd]})
        assert_error(status, body, 404, "not_found")
    status, _, body = call(server, "GET", "/similar/999999999")
    assert_error(status, body, 404, "not_found")
    status, _, body = call(server, "GET", "/similar/no%20such%20game%20xyz")
    assert_error(status, body, 404, "not_found")


def test_an_ambiguous_name_is_422_with_candidates(server: GamerecServer) -> None:
    status, _, body = call(server, "GET", "/similar/counter")
    assert_error(status, body, 422, "ambiguous_name")
    assert any("Counter-Strike" in c for c in body["error"]["candidates"])
    status, _, body = call(server, "POST", "/recommend", {"games": ["Portal 2", "counter"]})
    assert_error(status, body, 422, "ambiguous_name")
    assert any("Counter-Strike" in c for c in body["error"]["candidates"])


def test_items_search_puts_the_best_matches_first_and_says_kind_and_year(
    server: GamerecServer,
) -> None:
    status, _, body = call(server, "GET", "/items?q=portal&limit=100")
    assert status == 200
    items = body["items"]
    names = [item["name"] for item in items]
    # the two games named Portal first, before any other game
    assert set(names[:2]) == {"Portal", "Portal 2"}, names[:5]
    assert names[0] == "Portal"  # the exact name
    # a name with a word starting with the query, the more owned one first, before a name
    # that only contains it
    bridge = names.index("Bridge Constructor Portal")
    brazilian = next(i for i, name in enumerate(names) if name.startswith("BRAZILIAN DRUG"))
    assert bridge < brazilian
    assert bridge < names.index("Teleportals. I swear it's a nice game")
    assert names.index("Portal Knights") < bridge  # the name starts with the query
    # every row says what it is and when it came out; games before what is not a game
    assert all({"kind", "release_year"} <= set(item) for item in items)
    kinds = [item["kind"] for item in items]
    assert "game" in kinds and set(kinds) - {"game"}, kinds
    assert kinds == sorted(kinds, key=lambda kind: kind != "game")
    portal = items[0]
    assert (portal["appid"], portal["kind"], portal["release_year"]) == (400, "game", 2007)
    final_hours = items[names.index("Portal 2 - The Final Hours")]
    assert final_hours["kind"] == "video"
    status, _, body = call(server, "GET", "/items?appids=620,104600")
    assert status == 200
    assert [(i["name"], i["kind"], i["release_year"]) for i in body["items"]] == [
        ("Portal 2", "game", 2011),
        ("Portal 2 - The Final Hours", "video", 2011),
    ]


def test_http_messages_name_request_fields_and_the_command_line_its_options(
    server: GamerecServer, recommender: Recommender, trained_workspace: Path, workdir: Path
) -> None:
    status, _, body = call(server, "POST", "/recommend", {"user_id": "nobody-at-all"})
    assert status == 200
    note = body["note"]
    assert "time_played" in note and "achievements" in note, note
    status, _, by_appid = call(server, "GET", "/similar/999999999")
    assert_error(status, by_appid, 404, "not_found")
    assert "/similar/" in by_appid["error"]["message"]
    status, _, by_name = call(server, "GET", "/similar/no%20such%20game%20xyz")
    assert_error(status, by_name, 404, "not_found")
    assert "/similar/portal" in by_name["error"]["message"]
    for message in (note, by_appid["error"]["message"], by_name["error"]["message"]):
        assert not re.search(r"--[a-z]|`gamerec (similar|serve)", message), message
    # the command line (and the library, by default) keeps naming its options
    from typer.testing import CliRunner

    from gamerec.cli import app

    result = CliRunner().invoke(
        app, ["--data-dir", str(trained_workspace), "recommend", "--user", "nobody", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "(--game Hades, --played 620:1200 or --library owned.json)"
        in json.loads(result.stdout)["note"]
    )
    assert "--played 620:1200" in str(recommender.recommend(user_id="nobody-at-all").note)
    with pytest.raises(NotFoundError, match="`gamerec similar portal`"):
        recommender.similar("no such game xyz")


@pytest.mark.parametrize(
    "path",
    [
        "/similar/620?k=0",
        "/similar/620?k=-1",
        "/similar/620?k=1001",
        "/similar/620?k=x",
        "/similar/620?k=1&k=2",
        "/similar/620?kk=1",
        "/items",
        "/items?q=",
        "/items?q=a&appids=1",
        "/items?q=portal&limit=0",
        "/items?q=portal&limit=101",
        "/items?appids=abc",
        "/health?x=1",
        "/similar/" + "x" * 300,
    ],
)
def test_bad_query_parameters_are_422(server: GamerecServer, path: str) -> None:
    status, _, body = call(server, "GET", path)
    assert_error(status, body, 422, "invalid_request")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/recommend", "POST"),
        ("PUT", "/health", "GET, HEAD"),
        ("DELETE", "/items", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
        ("PATCH", "/similar/620", "GET, HEAD"),
        ("GET", "/admin/reload", "POST"),
        ("FOO", "/recommend", "POST"),
    ],
)
def test_wrong_methods_are_405_with_allow(
    server: GamerecServer, method: str, path: str, allowed: str
) -> None:
    status, headers, body = call(server, method, path)
    assert_error(status, body, 405, "method_not_allowed")
    assert headers["allow"] == allowed


@pytest.mark.parametrize(
    "path", ["/nope", "/recommend/x", "/similar/", "/../etc/passwd", "/%F0%9F%8E%AE"]
)
def test_unknown_paths_are_404(server: GamerecServer, path: str) -> None:
    status, _, body = call(server, "GET", path)
    assert_error(status, body, 404, "not_found")


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\n\r\n", 505),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(120))
            + b"\r\n",
            431,
        ),
        (b"GET /similar/%FF%FE HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (b"GET /items?q=%C3%28 HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2x\r\n\r\n{}",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Content-Length: 3\r\n\r\n{}",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            411,
        ),
    ],
)
def test_broken_requests_get_json_errors_not_tracebacks(
    server: GamerecServer, request_bytes: bytes, expected: int
) -> None:
    answer = raw(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % expected), answer[:200]
    assert b"Connection: close" in head
    error = json.loads(body)["error"]
    assert error["message"] and b"Traceback" not in answer


def test_a_bug_is_a_generic_500_and_logged(
    recommender: Recommender, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        """A recommender whose recommend() has a bug that one history meets (the trial
        answers the server checks at start pass)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(recommender, name)

        def recommend(self, **arguments: Any) -> Any:
            history = arguments.get("history")  # a /recommend history comes as a History
            if history is not None and history.minutes() == {int(a): m for a, m in PLAYED.items()}:
                raise KeyError("secret internal detail")
            return recommender.recommend(**arguments)

    with running(Broken) as srv, caplog.at_level("ERROR", logger="gamerec.serve"):
        status, _, body = call(srv, "POST", "/recommend", {"time_played": PLAYED})
        assert_error(status, body, 500, "internal_error")
        assert "secret" not in json.dumps(body)
        assert any("secret internal detail" in r.exc_text for r in caplog.records if r.exc_text)
        assert call(srv, "GET", "/health")[0] == 200


# ------------------------------------------------------------------------------ limits and token
def test_bodies_above_the_cap_are_413(guarded: GamerecServer) -> None:
    small = {"time_played": {str(620 + i): 1 for i in range(50)}}
    assert len(json.dumps(small)) <= 2048
    status, _, _ = call(guarded, "POST", "/recommend", small, token=TOKEN)
    assert status == 200
    large = {"time_played": {str(100000 + i): 1 for i in range(300)}}
    status, headers, body = call(guarded, "POST", "/recommend", large, token=TOKEN)
    assert_error(status, body, 413, "payload_too_large")
    assert headers["connection"] == "close"
    assert "2,048" in body["error"]["message"]


def test_a_large_body_announced_with_expect_is_refused_before_it_is_sent(
    guarded: GamerecServer,
) -> None:
    head = (
        "POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 10000000\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    answer = raw(guarded, head)  # the 10 MB never leave this process
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"HTTP/1.1 100" not in answer


def test_expect_100_continue_with_a_small_body(server: GamerecServer) -> None:
    body = json.dumps({"time_played": PLAYED, "top_k": 2}).encode()
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
        s.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # at once, not after a wait
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(json.loads(answer.partition(b"\r\n\r\n")[2])["recommendations"]) == 2


def test_a_10_mb_body_sent_blindly_still_gets_its_413(guarded: GamerecServer) -> None:
    body = b"x" * 10_000_000
    head = (
        "POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", guarded.server_address[1]), timeout=10) as s:
        s.sendall(head)
        with contextlib.suppress(OSError):  # refused before it was all read
            s.sendall(body)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_the_token_guards_everything_but_health(guarded: GamerecServer) -> None:
    for method, path, payload in [
        ("POST", "/recommend", {"time_played": PLAYED}),
        ("GET", "/items?q=portal", None),
        ("GET", "/similar/620", None),
    ]:
        for token in (None, "wrong", TOKEN + "x", ""):
            status, headers, body = call(guarded, method, path, payload, token=token)
            assert_error(status, body, 401, "unauthorized")
            assert headers["www-authenticate"].startswith("Bearer")
        status, _, _ = call(guarded, method, path, payload, token=TOKEN)
        assert status == 200
    status, _, body = call(guarded, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    status, _, _ = call(guarded, "GET", "/")
    assert status == 200  # the page holds no data; what it fetches needs the token


def test_reload_over_http_needs_a_configured_token(
    server: GamerecServer, guarded: GamerecServer
) -> None:
    status, _, body = call(server, "POST", "/admin/reload", token=TOKEN)
    assert_error(status, body, 403, "forbidden")
    status, _, body = call(guarded, "POST", "/admin/reload")
    assert_error(status, body, 401, "unauthorized")
    before = call(guarded, "GET", "/health")[2]["reloads"]
    status, _, body = call(guarded, "POST", "/admin/reload", token=TOKEN)
    assert status == 200 and body["reloaded"] is True and body["items"] > 0
    assert call(guarded, "GET", "/health")[2]["reloads"] == before + 1


def test_a_failed_reload_keeps_the_old_model(recommender: Recommender) -> None:
    attempts: list[int] = []

    def loader() -> Recommender:
        attempts.append(1)
        if len(attempts) > 1:
            raise ArtifactError("index/items.faiss is unreadable; run `gamerec index`")
        return recommender

    with running(loader, token=TOKEN) as srv:
        expected = call(srv, "POST", "/recommend", {"time_played": PLAYED}, token=TOKEN)[2]
        status, _, body = call(srv, "POST", "/admin/reload", token=TOKEN)
        assert_error(status, body, 503, "unavailable")
        assert "still serving the previous model" in body["error"]["message"]
        assert "items.faiss" in body["error"]["message"]
        assert srv.recommender is recommender
        health = call(srv, "GET", "/health")[2]
        assert health["status"] == "ok" and health["reloads"] == 0
        assert health["last_reload"]["ok"] is False
        again = call(srv, "POST", "/recommend", {"time_played": PLAYED}, token=TOKEN)[2]
        assert again == expected


def test_a_second_reload_while_one_runs_is_409(recommender: Recommender) -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow_loader() -> Recommender:
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)
        return recommender

    with running(slow_loader, token=TOKEN) as srv:
        first = threading.Thread(
            target=call, args=(srv, "POST", "/admin/reload"), kwargs={"token": TOKEN}
        )
        first.start()
        while len(calls) < 2:
            time.sleep(0.01)
        status, _, body = call(srv, "POST", "/admin/reload", token=TOKEN)
        assert_error(status, body, 409, "conflict")
        assert call(srv, "GET", "/similar/620?k=2", token=TOKEN)[0] == 200  # still answering
        release.set()
        first.join(10)
        assert srv.reloads == 1


def test_at_most_max_workers_compute_at_once(recommender: Recommender) -> None:
    entered, release = threading.Event(), threading.Event()

    class Gated:
        def __getattr__(self, name: str) -> Any:
            return getattr(recommender, name)

        def recommend(self, **arguments: Any) -> Any:
            if arguments["k"] == 2:  # the requests below, not the server's trials at start
                entered.set()
                release.wait(10)
            return recommender.recommend(**arguments)

    with running(Gated, max_workers=1, timeout_s=0.5) as srv:
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(call(srv, "POST", "/recommend", {"top_k": 2})[0])
        )
        first.start()
        assert entered.wait(5)
        status, headers, body = call(srv, "POST", "/recommend", {"top_k": 2})
        assert_error(status, body, 503, "unavailable")
        assert headers["retry-after"] == "1"
        assert call(srv, "GET", "/health")[0] == 200  # health needs no slot
        release.set()
        first.join(10)
        assert results == [200]
        assert call(srv, "POST", "/recommend", {"top_k": 2})[0] == 200


def test_connections_above_the_limit_get_503(recommender: Recommender) -> None:
    # a request's deadline far off: on a busy machine the held requests must not time out
    with running(lambda: recommender, max_connections=2, timeout_s=30.0) as srv:
        port = srv.server_address[1]
        held = []
        # two connections busy with a request past its headers (idle ones, and ones still
        # sending their headers, make room)
        for _ in range(2):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.connect()
            assert connection.sock is not None
            connection.sock.sendall(
                b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 20\r\n\r\n{"
            )
            held.append(connection)
        deadline = time.monotonic() + 15
        # accepted in the background, and each one's headers read: for half a second on end, as
        # a handler thread only just started has not yet said it is reading its headers
        settled_at = None
        while settled_at is None or time.monotonic() - settled_at < 0.5:
            settled = srv._connections >= 2 and not srv._idle and not srv._in_head
            settled_at = (settled_at or time.monotonic()) if settled else None
            assert time.monotonic() < deadline
            time.sleep(0.01)
        answer = raw(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "unavailable"
        held.pop().close()
        deadline = time.monotonic() + 5
        while b"200 OK" not in raw(srv, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"):
            assert time.monotonic() < deadline, "a freed connection slot was never reused"
            time.sleep(0.05)
        for connection in held:
            connection.close()


@pytest.mark.slow
def test_a_slow_client_is_cut_off_and_others_are_served(recommender: Recommender) -> None:
    with running(lambda: recommender, timeout_s=1.0) as srv:
        port = srv.server_address[1]
        stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
        stalled.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Ty")
        dribbling = socket.create_connection(("127.0.0.1", port), timeout=5)
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":  # a byte every 0.2 s: never done
            try:
                dribbling.sendall(bytes([byte]))
            except OSError:
                break
            assert call(srv, "GET", "/health")[0] == 200  # others are served meanwhile
            time.sleep(0.2)
            if time.monotonic() - started > 3:
                break
        dribbled_for = time.monotonic() - started
        answer = stalled.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert stalled.recv(65536) == b""  # and closed
        assert time.monotonic() - started < 3
        assert dribbled_for < 2.5, "the dribbling client was not cut off by the 1 s deadline"
        stalled.close()
        dribbling.close()
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert idle.recv(1) == b""  # an idle connection is closed after the timeout, silently
        idle.close()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gamerec.serve.access"]


def test_access_log_has_one_line_per_request(
    server: GamerecServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="gamerec.serve.access"):
        call(server, "POST", "/recommend", {"time_played": PLAYED})
        call(server, "GET", "/nope?secret=1")
        deadline = time.monotonic() + 5  # the line is written just after the answer is sent
        while len(lines := access_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(lines) == 2
    # each line is written after its answer, from the connection's own thread: either order
    post, other = sorted(lines, key=lambda line: 'path="/recommend"' not in line)
    assert re.fullmatch(
        r'method="POST" path="/recommend" status=200 ms=\d+\.\d\d bytes=\d+ client=127\.0\.0\.1',
        post,
    )
    assert 'path="/nope" status=404' in other and "secret" not in other


# ------------------------------------------------------------------------------ units
def test_parse_recommend_request_types() -> None:
    request = parse_recommend_request(
        {"user_id": "u1", "time_played": {"620": 60}, "achievements": {"400": 2}, "top_k": 3},
        max_top_k=50,
    )
    assert request.history.played == {620: 60.0} and request.history.achievements == {400: 2}
    assert request.top_k == 3 and request.user_id == "u1" and request.exclude_owned
    assert request.released_since is None
    with pytest.raises(InvalidRequestError, match="between 1 and 50"):
        parse_recommend_request({"top_k": 51}, max_top_k=50)
    assert parse_recommend_request({"released_since": 2022}, 50).released_since == 2022
    for bad in ("2022", 1800, True, 2022.5):
        with pytest.raises(InvalidRequestError, match="released_since must be a year"):
            parse_recommend_request({"released_since": bad}, max_top_k=50)


def test_one_history_rule_for_http_and_the_command_line() -> None:
    """A /recommend history is checked by History's rules: what --played refuses, so does the
    server, and an accepted one is the same History."""
    from gamerec.dataio.history import History

    body = {"time_played": {"620": 90, "400": 30.5}, "achievements": {"620": 4}}
    request = parse_recommend_request(body, max_top_k=10)
    assert request.history == History.from_mappings({620: 90, 400: 30.5}, {620: 4})
    assert request.history == History(History.parse_pairs("620:90,400:30.5"), {620: 4})
    for bad in ({"-1": 5}, {"620": -1}, {"x": 1}, {"620": "5"}, {str(2**32): 1}, {"": 1, "6": 2}):
        with pytest.raises(InvalidRequestError, match="time_played"):
            parse_recommend_request({"time_played": bad}, max_top_k=10)
    # past the cap, the most played are kept and the rest counted
    many = {str(appid): float(appid) for appid in range(1, 31)}
    capped = parse_recommend_request({"time_played": many}, max_top_k=10, max_history=10)
    assert sorted(capped.history.played) == list(range(21, 31)) and capped.left_out == 20


def test_parse_recommend_request_never_fails_otherwise() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=10,
    )
    fields = st.sampled_from(
        ["user_id", "time_played", "genres", "achievements", "top_k", "exclude_owned", "x"]
    )

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(fields, values, max_size=4) | values)
    def check(payload: Any) -> None:
        try:
            request = parse_recommend_request(payload, max_top_k=100)
        except InvalidRequestError as exc:
            assert exc.http_status == 422 and exc.message
        else:
            assert 1 <= request.top_k <= 100
            assert all(
                isinstance(k, int) and 0 <= v <= 1e9 for k, v in request.history.played.items()
            )

    check()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ------------------------------------------------------------------------------ hostile requests
# ------------------------------------------------------------------------------ attack review
def answers_in(data: bytes) -> list[int]:
    """The status of every response in ``data`` (a smuggled request shows as a second one)."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


_SMUGGLED = b"GET /similar/620 HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # two Content-Length headers, even equal, on a route without a body
        (b"GET /health HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
        (
            b"GET /health HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
            % len(_SMUGGLED)
            + _SMUGGLED,
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            400,
        ),
        # a transfer coding beside a length, repeated, or one that is not supported
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 2\r\n\r\n{}" + _SMUGGLED,
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: gzip\r\n\r\n{}",
            400,
        ),
        (b"GET /health HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n" + _SMUGGLED, 400),
        (b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        # NBSP and \x85 are not whitespace in HTTP: not in Content-Length, not in the line
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: \xa02\r\n\r\n{}",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\x85\r\n\r\n{}",
            400,
        ),
        (
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: \xc2\xb2\r\n\r\n{}",
            400,
        ),
        (b"GET\xa0/health\xa0HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\x85\r\nHost: x\r\n\r\n", 400),
        (b"GET /health\x85HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
def test_ambiguous_framing_is_400_and_closes(
    server: GamerecServer, request_bytes: bytes, expected: int
) -> None:
    answer = raw(server, request_bytes)
    assert answers_in(answer) == [expected], answer[:300]
    head = answer.partition(b"\r\n\r\n")[0]
    assert b"Connection: close" in head


def test_header_values_are_trimmed_of_sp_and_htab_only(server: GamerecServer) -> None:
    body = json.dumps({"time_played": PLAYED, "top_k": 2}).encode()
    answer = raw(
        server,
        b"POST /recommend HTTP/1.1\r\nContent-Type:\t application/json \t\r\n"
        b"Connection: close\r\nContent-Length: \t%d \r\n\r\n" % len(body) + body,
    )
    assert answers_in(answer) == [200], answer[:300]


def test_a_failed_reload_of_a_truncated_users_table_keeps_the_old_model(
    trained_workspace: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "gamerec-data"
    for part in ("processed", "model", "index"):
        shutil.copytree(trained_workspace / part, workspace / part)
    with running(lambda: Recommender.from_dir(workspace), token=TOKEN) as srv:
        user = next(iter(srv.recommender.known_users))
        payloads = [{"time_played": PLAYED}, {"user_id": user}]
        expected = [call(srv, "POST", "/recommend", p, token=TOKEN)[2] for p in payloads]
        users = workspace / "processed" / "users.parquet"
        users.write_bytes(users.read_bytes()[:100])
        status, _, body = call(srv, "POST", "/admin/reload", token=TOKEN)
        assert_error(status, body, 503, "unavailable")
        assert "still serving the previous model" in body["error"]["message"]
        assert "users.parquet" in body["error"]["message"]  # the admin is told which file
        for payload, answer in zip(payloads, expected, strict=True):
            status, _, body = call(srv, "POST", "/recommend", payload, token=TOKEN)
            assert status == 200 and body == answer
        status, _, health = call(srv, "GET", "/health")
        assert status == 200 and health["reloads"] == 0 and health["users"] > 0
        assert health["last_reload"]["ok"] is False
        # /health needs no token: no file or folder names there
        assert str(tmp_path) not in json.dumps(health)
        assert "users.parquet" not in json.dumps(health)


def test_recommender_check_finds_a_catalog_of_another_size(recommender: Recommender) -> None:
    class Shrunk:
        def __getattr__(self, name: str) -> Any:
            return getattr(recommender, name)

        check = Recommender.check
        n_items = recommender.n_items - 1

    with pytest.raises(ArtifactError, match="disagree on the number of games"):
        Shrunk().check()


def idle_sockets(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def test_an_idle_socket_is_closed_sooner_than_a_request_is_cut_off(
    recommender: Recommender,
) -> None:
    with running(lambda: recommender, timeout_s=10.0, idle_timeout_s=1.0) as srv:
        port = srv.server_address[1]
        started = time.monotonic()
        (silent,) = idle_sockets(port, 1)
        assert silent.recv(1) == b""  # closed, without an answer
        assert time.monotonic() - started < 3
        silent.close()
        keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        keep_alive.request("GET", "/health")
        assert keep_alive.getresponse().read()
        started = time.monotonic()
        assert keep_alive.sock is not None and keep_alive.sock.recv(1) == b""
        assert time.monotonic() - started < 3
        keep_alive.close()


def test_idle_sockets_from_one_client_do_not_keep_health_out(recommender: Recommender) -> None:
    with running(lambda: recommender, max_connections=64) as srv:
        port = srv.server_address[1]
        held = idle_sockets(port, 100)  # more than every connection the server allows
        try:
            for _ in range(3):
                started = time.monotonic()
                status, _, body = call(srv, "GET", "/health")
                assert status == 200 and body["status"] == "ok"
                assert time.monotonic() - started < 1.0
            # the idle ones were answered 503 or closed to make room: none holds a thread
            for sock in held[:-32]:
                assert sock.recv(65536)[:13] in (b"", b"HTTP/1.1 503 ")
        finally:
            for sock in held:
                sock.close()


def busy_sockets(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """Connections with a request half sent: not idle, so never closed to make room."""
    sockets = idle_sockets(port, count, source)
    for sock in sockets:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    return sockets


def test_one_client_cannot_take_every_connection(
    recommender: Recommender, caplog: pytest.LogCaptureFixture
) -> None:
    # the held requests' deadlines far off: on a busy machine the thirty refusals below can
    # outlast the default five seconds, and a held request cut off makes room
    with (
        running(
            lambda: recommender,
            max_connections=16,
            max_connections_per_client=4,
            timeout_s=60.0,
            header_timeout_s=60.0,
        ) as srv,
        caplog.at_level("WARNING", logger="gamerec.serve"),
    ):
        port = srv.server_address[1]
        held = busy_sockets(port, 4)
        deadline = time.monotonic() + 30
        # accepted in the background, and each one's first bytes read (busy, not idle: a busy
        # connection is never closed to make room). Counted in the head phase itself: on a
        # loaded machine a handler can start after its accept, and it is idle a moment before
        # it reads, when a probe may close it to make room
        while sum(len(socks) for socks in srv._in_head.values()) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        try:
            for _ in range(30):
                answer = raw(srv, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
                assert answers_in(answer) == [503]
            # another address (127.0.0.2 is loopback too) still gets in
            (other,) = idle_sockets(port, 1, source="127.0.0.2")
            other.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := other.recv(65536):
                answer += chunk
            assert answers_in(answer) == [200]
            other.close()
        finally:
            for sock in held:
                sock.close()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]  # not one per refusal


@pytest.mark.parametrize("game", ["%C2%B2", "%D9%A3", "%EF%BC%96%EF%BC%92%EF%BC%90"])
def test_unicode_digits_are_not_appids(server: GamerecServer, game: str) -> None:
    status, _, body = call(server, "GET", f"/similar/{game}")  # a name, then: "TrackMania²"
    assert status in (404, 422) and body["error"]["code"] in ("not_found", "ambiguous_name")
    status, _, body = call(server, "GET", f"/items?appids={game}")
    assert_error(status, body, 422, "invalid_request")
    key = bytes.fromhex(game.replace("%", "")).decode()
    status, _, body = call(server, "POST", "/recommend", {"time_played": {key: 60}})
    assert_error(status, body, 422, "invalid_request")


def test_unicode_digits_in_the_library_and_the_cli(
    recommender: Recommender, trained_workspace: Path
) -> None:
    from gamerec.dataio.history import History
    from gamerec.errors import NotFoundError

    with pytest.raises(NotFoundError):
        recommender.similar("²")
    with pytest.raises(InvalidRequestError):
        recommender.recommend(played={"²": 60})  # not appid 2
    with pytest.raises(InvalidRequestError):
        History.parse_pairs("٦٢٠:60")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    done = subprocess.run(
        [sys.executable, "-m", "gamerec", "--data-dir", str(trained_workspace), "similar", "²"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "²" in done.stderr


def test_a_non_ascii_token_is_compared_as_utf8_bytes(recommender: Recommender) -> None:
    token = "tökén-ü-🎮"
    with running(lambda: recommender, token=token) as srv:
        for encoding, expected in (("utf-8", 200), ("latin-1", 401)):
            try:
                header = f"Authorization: Bearer {token}".encode(encoding)
            except UnicodeEncodeError:
                header = f"Authorization: Bearer {token[:-2]}".encode(encoding)
            answer = raw(
                srv,
                b"GET /similar/620?k=2 HTTP/1.1\r\nConnection: close\r\n" + header + b"\r\n\r\n",
            )
            assert answers_in(answer) == [expected], answer[:300]


def test_processes_auto_is_the_available_cores_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from gamerec.errors import ConfigError
    from gamerec.runtime import supervisor as server_module
    from gamerec.settings import Settings

    assert Settings().serve.processes == "auto"
    assert 1 <= server_module.available_cores() <= (os.cpu_count() or 1)
    for cores, expected in ((1, 1), (2, 2), (4, 4), (64, server_module.MAX_AUTO_PROCESSES)):
        monkeypatch.setattr(server_module, "available_cores", lambda n=cores: n)
        assert server_module.worker_processes("auto") == expected
    assert server_module.worker_processes(3) == 3
    for wrong in (0, -1, "two", True, 2.5):
        with pytest.raises(ConfigError):
            server_module.worker_processes(wrong)  # type: ignore[arg-type]


def _robustness_module() -> Any:
    path = Path(__file__).parents[1] / "benchmarks" / "robustness_serve.py"
    spec = importlib.util.spec_from_file_location("robustness_serve", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness_serve"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_300_hostile_requests_get_4xx_and_the_server_stays_healthy(
    recommender: Recommender,
) -> None:
    hostile = _robustness_module()
    with running(lambda: recommender, token=hostile.TOKEN, timeout_s=0.5) as srv:
        requests = list(hostile.hostile_requests(300, seed=7))
        assert {r.kind for r in requests} >= {"invalid_json", "big_body", "slow", "protocol"}
        counts, failures = hostile.run("127.0.0.1", srv.server_address[1], requests, 0.5)
        assert failures == []
        assert sum(counts.values()) == 300
        assert all(code == "closed" or 400 <= int(code) < 500 for code in counts)
        health = call(srv, "GET", "/health")
        assert health[0] == 200
        answer = call(srv, "POST", "/recommend", {"time_played": PLAYED}, token=hostile.TOKEN)
        assert answer[0] == 200
        deadline = time.monotonic() + 5  # the count drops just after an answer is sent
        while srv.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.in_flight == 0, "a request was never finished"


# ------------------------------------------------------------------------------ subprocesses
class Served:
    """``python -m gamerec serve`` in a subprocess, its stderr collected by a thread."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, processes: int = 1):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
        environment.update(env or {})
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gamerec",
                "--data-dir",
                str(data_dir),
                "serve",
                "--port",
                "0",
                "--processes",
                str(processes),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=environment,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = int(self.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in the server's stderr:\n{''.join(self.lines)}")

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps(payload) if payload is not None else None
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = (response.status, json.loads(response.read()))
        connection.close()
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_and_exits_0(trained_workspace: Path) -> None:
    served = Served(trained_workspace)
    try:
        body = json.dumps({"time_played": PLAYED, "top_k": 5}).encode()
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        time.sleep(0.3)  # the server is now reading this request's body
        served.process.send_signal(signal.SIGTERM)
        served.wait_for("finishing the requests in flight")
        time.sleep(0.5)
        assert served.process.poll() is None, "exited with a request in flight"
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
        assert len(json.loads(payload)["recommendations"]) == 5
        assert served.process.wait(15) == 0
        assert any("Stopped after 1 requests" in line for line in served.lines)
    finally:
        served.stop()


@pytest.mark.slow
def test_sighup_reloads_while_answering_and_keeps_the_old_model_on_failure(
    trained_workspace: Path, tmp_path: Path
) -> None:
    from gamerec import pipeline
    from gamerec.settings import Settings

    workspace = tmp_path / "gamerec-data"
    for part in ("processed", "model", "index"):
        shutil.copytree(trained_workspace / part, workspace / part)
    served = Served(workspace)
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        body = json.dumps({"time_played": PLAYED, "top_k": 5})
        while not stop.is_set():
            try:
                connection.request(
                    "POST", "/recommend", body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                statuses.append(-1)  # a dropped connection: a failure below
                return
        connection.close()

    clients = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for client in clients:
            client.start()
        assert served.request("GET", "/health")[1]["index"] == "flat"
        # a different index, built beside the running server, comes in with a SIGHUP
        settings = Settings.load(overrides={"data_dir": workspace, "index.kind": "hnsw"})
        pipeline.build_index(settings)
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reloaded the artifacts")
        health = served.request("GET", "/health")[1]
        assert health["index"] == "hnsw" and health["reloads"] == 1
        assert health["last_reload"]["ok"] is True
        # a broken index: the reload fails, the old model keeps answering
        (workspace / "index" / "items.faiss").write_bytes(b"not an index")
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reload failed, still serving the previous model")
        health = served.request("GET", "/health")[1]
        assert health["index"] == "hnsw" and health["reloads"] == 1
        assert health["last_reload"]["ok"] is False
        assert "items.faiss" not in health["last_reload"]["error"]  # open to all: no paths
        assert any("items.faiss" in line for line in served.lines)  # the log has the details
        time.sleep(0.3)
    finally:
        stop.set()
        for client in clients:
            client.join(30)
        served.stop()
    assert len(statuses) > 30
    assert set(statuses) == {200}, "a request failed during a reload"


@pytest.mark.slow
def test_worker_processes_share_the_port_reload_and_drain(trained_workspace: Path) -> None:
    served = Served(trained_workspace, env={"GAMEREC_SERVE__TOKEN": TOKEN}, processes=2)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        pids, answers = set(), []
        for _ in range(60):  # fresh connections: each worker accepts some
            status, health = served.request("GET", "/health")
            assert status == 200
            pids.add(health["pid"])
        assert len(pids) == 2 and served.process.pid not in pids
        body = json.dumps({"time_played": PLAYED, "top_k": 4})
        for _ in range(10):
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
            connection.request("POST", "/recommend", body=body, headers=auth)
            answers.append(json.loads(connection.getresponse().read()))
            connection.close()
        assert all(a == answers[0] for a in answers)  # every worker answers alike
        # a reload asked of one worker over HTTP reaches every worker
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        connection.request("POST", "/admin/reload", headers=auth)
        response = connection.getresponse()
        assert response.status == 202, response.read()
        connection.close()
        deadline = time.monotonic() + 30
        while sum("reloaded the artifacts" in line for line in served.lines) < 2:
            assert time.monotonic() < deadline, "".join(served.lines)
            time.sleep(0.05)
        # SIGTERM with a request half sent: it is answered, then every process exits 0
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
            % (TOKEN.encode(), len(body))
            + body[:5].encode()
        )
        time.sleep(0.3)
        served.process.send_signal(signal.SIGTERM)
        served.wait_for("the workers finish what is in flight")
        time.sleep(0.5)
        sock.sendall(body[5:].encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert served.process.wait(20) == 0
        stopped = served.wait_for(r"Stopped after (\d+) requests")
        assert int(stopped.group(1)) == 60 + 10 + 1 + 1
    finally:
        served.stop()


@pytest.mark.slow
def test_the_server_process_never_imports_torch_pandas_or_faiss(trained_workspace: Path) -> None:
    script = (
        "import sys, threading\n"
        "from gamerec.runtime.recommender import Recommender\n"
        "from gamerec.runtime.server import GamerecServer\n"
        "from gamerec.runtime.blas import set_blas_threads\n"
        "set_blas_threads(1)\n"
        f"workspace = {str(trained_workspace)!r}\n"
        "server = GamerecServer(lambda: Recommender.from_dir(workspace), port=0)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "import http.client, json\n"
        "c = http.client.HTTPConnection('127.0.0.1', server.server_address[1])\n"
        "c.request('POST', '/recommend', body=json.dumps({'time_played': {'620': 60}}),"
        " headers={'Content-Type': 'application/json'})\n"
        "assert c.getresponse().status == 200\n"
        "print(sorted(m for m in ('torch', 'pandas', 'faiss') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ the page
def page_dom(server: GamerecServer, query: str, profile: Path) -> str:
    """The page at ``/?query`` as headless Chromium leaves it once it is ready (its DOM)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium)")
    url = f"http://127.0.0.1:{server.server_address[1]}/?{query}"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    dom = result.stdout
    assert 'data-ready="1"' in dom, result.stderr[-2000:]
    return dom


def element(dom: str, element_id: str) -> str:
    """The markup inside the element with ``id`` (elements of that tag do not nest here)."""
    match = re.search(rf'<(\w+) id="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert match, f"no element #{element_id}"
    return match.group(2)


def shown_text(dom: str) -> str:
    """What the page shows: the DOM without its script, tags and entities."""
    body = re.sub(r"<script>.*?</script>", "", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def assert_no_error_shown(dom: str) -> None:
    assert re.search(r'<div id="error" role="alert" hidden="">', dom), "the page showed an error"


def assert_years_shown(dom: str, answers: list[Any]) -> None:
    """Each answer's item shows its release year (where one is known)."""
    items = re.findall(r'<li class="answer" data-appid="[^"]*">(.*?)</li>', dom, re.S)
    assert len(items) == len(answers)
    for markup, answer in zip(items, answers, strict=True):
        if answer.release_year is not None:
            assert f'<span class="year">{answer.release_year}</span>' in markup, answer.name
    assert any(answer.release_year for answer in answers)


@pytest.mark.slow
def test_the_page_searches_and_shows_recommendations_in_chromium(
    server: GamerecServer, recommender: Recommender, tmp_path: Path
) -> None:
    played = {**PLAYED, "999999999": 60}
    given = ",".join(f"{appid}:{minutes}" for appid, minutes in played.items())
    dom = page_dom(server, f"q=portal&played={given}&k=8", tmp_path / "profile")
    # the header says when the model was trained, readably, and nothing of index internals
    header = shown_text(element(dom, "health"))
    assert "model trained" in header, header
    assert not re.search(r"\d{4}-\d\d-\d\dT|[+-]\d{4}\b|index|flat", header), header
    # the search ran: its hits are listed, the best matches first, each with its kind
    hits = recommender.search_items("portal", 12)
    for item in hits:
        assert html.escape(item["name"], quote=False) in dom
    listed = re.findall(r'<li class="(?:game|other)" data-appid="([^"]*)"', dom)
    assert listed == [json.dumps(item["appid"]) for item in hits]
    assert listed[:2] == ["400", "620"]
    assert element(dom, "search-results").count('<span class="kind">Game</span>') == len(hits)
    # the library was filled from the URL, with names looked up by appid
    assert re.search(r'id="library".*Portal 2.*appid 620', dom, re.S)
    # the recommendations are the library's, in its order, with their reasons and years
    expected = recommender.recommend(played=played, k=8)
    answers = re.findall(r'<li class="answer" data-appid="(\d+|null)">', dom)
    assert answers == [str(r.appid) for r in expected]
    for answer in expected:
        assert html.escape(answer.name, quote=False) in dom
        assert html.escape(answer.reason, quote=False) in dom
    assert_years_shown(dom, expected)
    # what became of the games given is a note beside the results, not an error
    note = shown_text(element(dom, "note"))
    assert "2 of the 3 games given are known" in note and "999999999" in note, note
    assert '<div id="note" role="status">' in dom
    assert_no_error_shown(dom)


@pytest.mark.slow
def test_the_page_labels_what_is_not_a_game_in_chromium(
    server: GamerecServer, recommender: Recommender, tmp_path: Path
) -> None:
    dom = page_dom(server, "q=portal%202", tmp_path / "profile")
    hits = recommender.search_items("portal 2", 12)
    kinds = [item["kind"] for item in hits]
    assert kinds[0] == "game" and {"video", "title-only"} <= set(kinds), kinds
    rows = re.findall(
        r'<li class="(game|other)" data-appid="([^"]*)" data-kind="([^"]*)">(.*?)</li>',
        element(dom, "search-results"),
        re.S,
    )
    assert [(row[1], row[2]) for row in rows] == [(json.dumps(i["appid"]), i["kind"]) for i in hits]
    for (style, _, kind, markup), item in zip(rows, hits, strict=True):
        assert style == ("game" if kind == "game" else "other")
        if item["release_year"] is not None:
            assert f'<span class="year">{item["release_year"]}</span>' in markup
        if kind == "game":
            assert '<span class="kind">Game</span>' in markup and ">Add</button>" in markup
    final_hours = next(row[3] for row in rows if row[2] == "video")
    assert '<span class="kind other">Video</span>' in final_hours
    title_only = next(row[3] for row in rows if row[2] == "title-only")
    assert "Title only" in title_only and "cannot be added" in title_only
    assert "<button" not in title_only
    assert_no_error_shown(dom)


@pytest.mark.slow
def test_the_page_shows_a_129_game_library_and_its_note_in_chromium(
    server: GamerecServer, recommender: Recommender, tmp_path: Path
) -> None:
    from gamerec.dataio.history import History

    library = History.from_library(FIXTURES / "steam-webapi" / "GetOwnedGames_include_appinfo.json")
    minutes = library.minutes()
    given = ",".join(f"{appid}:{amount:.0f}" for appid, amount in minutes.items())
    dom = page_dom(server, f"played={given}&k=15", tmp_path / "profile")
    expected = recommender.recommend(history=library, k=15)
    report = expected.history
    assert report.given == 129 and report.unknown, report
    # every game of the catalog is named in the library, past the first 100 looked up too
    shelf = element(dom, "library")
    assert shelf.count("<li ") == 129
    catalog = recommender.catalog
    for appid in list(minutes)[100:]:
        if appid in catalog.by_appid:
            name = catalog.names[catalog.by_appid[appid]]
            assert html.escape(name, quote=False) in shelf, name
    answers = re.findall(r'<li class="answer" data-appid="(\d+|null)">', dom)
    assert answers == [str(r.appid) for r in expected]
    assert_years_shown(dom, expected)
    # the note is information beside the results, and no error is shown
    note = shown_text(element(dom, "note"))
    assert f"{report.known} of the 129 games given are known" in note, note
    assert dom.index('id="note"') < dom.index('id="results"')
    assert_no_error_shown(dom)


@pytest.mark.slow
def test_the_page_shows_games_like_a_game_with_their_reasons_in_chromium(
    server: GamerecServer, recommender: Recommender, tmp_path: Path
) -> None:
    dom = page_dom(server, "similar=620&k=6", tmp_path / "profile")
    expected = recommender.similar(620, 6)
    answers = re.findall(r'<li class="answer" data-appid="(\d+|null)">', dom)
    assert answers == [str(r.appid) for r in expected]
    for answer in expected:
        assert html.escape(answer.reason, quote=False) in dom
    assert any("players of Portal 2" in answer.reason for answer in expected)
    assert "Games like Portal 2" in shown_text(element(dom, "results-title"))
    assert "similar to" not in shown_text(dom).lower()
    assert_no_error_shown(dom)


# ------------------------------------------------------------------------------ round 3
def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_request_that_stops_after_one_byte_is_cut_off_by_the_header_deadline(
    recommender: Recommender,
) -> None:
    # timeout_s (the whole request) stays long; the request line and headers have less time
    with running(lambda: recommender, timeout_s=30.0, header_timeout_s=1.0) as srv:
        (stalled,) = idle_sockets(srv.server_address[1], 1)
        stalled.settimeout(6.0)
        started = time.monotonic()
        stalled.sendall(b"G")
        answer = stalled.recv(65536)  # a socket.timeout here: still held after 6 s
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert time.monotonic() - started < 5.0
        stalled.close()


def test_connections_stuck_in_their_headers_make_room_for_another_address(
    recommender: Recommender,
) -> None:
    with running(
        lambda: recommender, max_connections=8, max_connections_per_client=2, timeout_s=30.0
    ) as srv:
        port = srv.server_address[1]
        held = [sock for n in range(2, 6) for sock in idle_sockets(port, 2, f"127.0.0.{n}")]
        try:
            for sock in held:
                sock.sendall(b"G")  # one byte of a request line, then nothing
            wait_until(
                lambda: srv._connections == 8 and not srv._idle,
                "the eight connections were never all accepted and past their first byte",
            )
            for _ in range(3):
                (other,) = idle_sockets(port, 1, source="127.0.0.9")
                started = time.monotonic()
                other.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := other.recv(65536):
                    answer += chunk
                other.close()
                assert answers_in(answer) == [200], answer[:200]
                assert time.monotonic() - started < 1.0
        finally:
            for sock in held:
                sock.close()


def accepted_socket() -> tuple[socket.socket, socket.socket]:
    """(client end, server end) of a fresh loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=10)
        accepted, _ = listener.accept()
    return client, accepted


def test_ipv6_clients_count_per_64_prefix(recommender: Recommender) -> None:
    # the addresses are given to the server as if they had connected from them
    with running(lambda: recommender, max_connections_per_client=2, timeout_s=30.0) as srv:
        clients = []
        try:
            for address in ("2001:db8:0:7::1", "2001:db8:0:7:ffff::2", "2001:db8:0:7::3"):
                client, accepted = accepted_socket()
                clients.append(client)
                client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # busy: headers begun
                srv.process_request(accepted, (address, 40000, 0, 0))
                if len(clients) < 3:
                    wait_until(lambda: not srv._idle, "a connection never got its first byte")
            # the third address of that /64 is one client too many
            assert answers_in(clients[-1].recv(65536)) == [503]
            client, accepted = accepted_socket()  # another /64 is another client
            clients.append(client)
            srv.process_request(accepted, ("2001:db8:0:8::1", 40000, 0, 0))
            client.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert answers_in(client.recv(65536)) == [200]
        finally:
            for client in clients:
                client.close()


@pytest.mark.parametrize(
    ("request_line", "headers"),
    [
        (b"GET /health HTTP/1.1", 40 * [b"X-Filler: " + b"y" * 1000]),
        (b"GET /health?" + b"q" * 20_000 + b" HTTP/1.1", 15 * [b"X-Filler: " + b"y" * 1000]),
    ],
    ids=["many header lines", "a long request line and headers"],
)
def test_a_header_block_past_the_cap_is_431(
    server: GamerecServer, request_line: bytes, headers: list[bytes]
) -> None:
    # each line is within the per-line limit and there are fewer than 100: the total is not
    block = request_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    answer = raw(server, block)
    assert answers_in(answer) == [431], answer[:200]
    assert b"Connection: close" in answer.partition(b"\r\n\r\n")[0]


def test_one_address_with_many_requests_gets_one_turn_per_round(
    recommender: Recommender,
) -> None:
    entered, release = threading.Event(), threading.Event()
    order: list[int] = []

    class Gated:
        """Holds the first request until released; records each request's top_k."""

        def __getattr__(self, name: str) -> Any:
            return getattr(recommender, name)

        def recommend(self, **arguments: Any) -> Any:
            if arguments["k"] > 4:  # the server's trials at start (k = default_top_k)
                return recommender.recommend(**arguments)
            order.append(arguments["k"])
            entered.set()
            release.wait(10)
            return recommender.recommend(**arguments)

    def ask(source: str, top_k: int) -> None:
        (sock,) = idle_sockets(srv.server_address[1], 1, source)
        body = json.dumps({"top_k": top_k}).encode()
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        while sock.recv(65536):
            pass
        sock.close()

    with running(Gated, max_workers=1, timeout_s=10.0) as srv:
        threads = [threading.Thread(target=ask, args=("127.0.0.2", 1))]
        threads[0].start()
        assert entered.wait(5)
        for top_k in (2, 3):  # two more from the address whose request computes
            threads.append(threading.Thread(target=ask, args=("127.0.0.2", top_k)))
            threads[-1].start()
        time.sleep(0.5)  # (they queue for the one slot first)
        threads.append(threading.Thread(target=ask, args=("127.0.0.3", 4)))
        threads[-1].start()
        time.sleep(0.5)
        release.set()
        for thread in threads:
            thread.join(20)
    # the other address is served next, not after every request queued before it
    assert order[:2] == [1, 4], order
    assert sorted(order) == [1, 2, 3, 4]


def test_a_long_history_is_scored_by_its_most_played_games(
    server: GamerecServer, recommender: Recommender
) -> None:
    appids = [int(a) for a in recommender.catalog.appids[: recommender.n_items] if a > 0]
    assert len(appids) > 301
    played = {str(appid): float(minutes) for minutes, appid in enumerate(appids[:300], start=1)}
    status, _, body = call(server, "POST", "/recommend", {"time_played": played, "top_k": 5})
    assert status == 200, body
    # the default cap (serve.max_history) keeps the 250 most played: the last 250 given
    kept = {appid: minutes for appid, minutes in played.items() if minutes > 50}
    expected = recommender.recommend(played=kept, k=5).to_dict()
    assert body["history"]["left_out"] == 50
    assert body["history"]["given"] == 250
    assert body["recommendations"] == expected["recommendations"]
    # achievements count as play where no minutes are given, as the Recommender counts them
    status, _, body = call(
        server,
        "POST",
        "/recommend",
        {"time_played": played, "achievements": {str(appids[300]): 1000}, "top_k": 5},
    )
    assert status == 200 and body["history"]["left_out"] == 51
    kept = {appid: minutes for appid, minutes in played.items() if minutes > 51}
    expected = recommender.recommend(played=kept, achievements={appids[300]: 1000}, k=5).to_dict()
    assert body["recommendations"] == expected["recommendations"]


def test_http_top_k_is_capped_by_its_own_setting(server: GamerecServer) -> None:
    status, _, body = call(server, "POST", "/recommend", {"top_k": 101})
    assert_error(status, body, 422, "invalid_request")
    assert "between 1 and 100" in body["error"]["message"]
    status, _, body = call(server, "GET", "/similar/620?k=101")
    assert_error(status, body, 422, "invalid_request")
    status, _, body = call(server, "POST", "/recommend", {"top_k": 100})
    assert status == 200 and len(body["recommendations"]) == 100
    assert call(server, "GET", "/health")[2]["max_top_k"] == 100


def test_the_token_is_trimmed_and_a_blank_one_refused(recommender: Recommender) -> None:
    from gamerec.errors import ConfigError

    with running(lambda: recommender, token=" abc \n") as srv:
        assert call(srv, "GET", "/similar/620?k=2", token="abc")[0] == 200
    for blank in (" ", "\t\n"):
        with pytest.raises(ConfigError, match="blank"):
            GamerecServer(lambda: recommender, "127.0.0.1", 0, token=blank)


def test_a_port_in_use_is_one_line_naming_it_and_the_option(recommender: Recommender) -> None:
    from gamerec.errors import ConfigError

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            GamerecServer(lambda: recommender, "127.0.0.1", port)
    message = caught.value.message
    assert f"port {port}" in message and "--port" in message and "\n" not in message


@pytest.mark.parametrize(
    ("array", "rows"), [("item_vectors.npy", slice(None)), ("history.npy", slice(5, 6))]
)
def test_a_reload_refuses_arrays_that_are_not_finite(
    trained_workspace: Path, tmp_path: Path, array: str, rows: slice
) -> None:
    import numpy as np

    from gamerec.artifacts.store import fingerprint

    workspace = tmp_path / "gamerec-data"
    for part in ("processed", "model", "index"):
        shutil.copytree(trained_workspace / part, workspace / part)
    with running(lambda: Recommender.from_dir(workspace, in_memory=True), token=TOKEN) as srv:
        expected = call(srv, "POST", "/recommend", {"time_played": PLAYED}, token=TOKEN)[2]
        # NaN written into an index array, and the manifest signed again to match
        path = workspace / "index" / array
        values = np.load(path)
        values[rows] = np.nan
        np.save(path, values)
        manifest_path = workspace / "index" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][array] = fingerprint(path)
        manifest_path.write_text(json.dumps(manifest))
        status, _, body = call(srv, "POST", "/admin/reload", token=TOKEN)
        assert_error(status, body, 503, "unavailable")
        assert "still serving the previous model" in body["error"]["message"]
        assert "not finite" in body["error"]["message"]
        status, _, body = call(srv, "POST", "/recommend", {"time_played": PLAYED}, token=TOKEN)
        assert status == 200 and body == expected
        assert call(srv, "GET", "/health")[2]["reloads"] == 0


def test_one_address_holds_at_most_half_the_compute_slots(recommender: Recommender) -> None:
    entered = threading.Semaphore(0)
    release = threading.Event()

    class Gated:
        """Holds requests for top_k 2 until released."""

        def __getattr__(self, name: str) -> Any:
            return getattr(recommender, name)

        def recommend(self, **arguments: Any) -> Any:
            if arguments["k"] == 2:
                entered.release()
                release.wait(10)
            return recommender.recommend(**arguments)

    def ask(source: str, top_k: int, statuses: list[int]) -> None:
        (sock,) = idle_sockets(srv.server_address[1], 1, source)
        body = json.dumps({"top_k": top_k}).encode()
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        statuses.extend(answers_in(answer))

    with running(Gated, max_workers=2, timeout_s=2.0) as srv:
        held: list[int] = []
        threads = [threading.Thread(target=ask, args=("127.0.0.2", 2, held)) for _ in range(2)]
        for thread in threads:
            thread.start()
        assert entered.acquire(timeout=5)  # one of the two computes
        assert not entered.acquire(timeout=0.5)  # the other waits: the second slot is kept
        other: list[int] = []
        ask("127.0.0.3", 3, other)  # and another address gets it at once
        assert other == [200]
        release.set()
        for thread in threads:
            thread.join(20)
        assert held == [200, 200]
