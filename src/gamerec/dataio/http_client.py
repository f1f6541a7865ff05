"""A polite JSON-over-HTTP client: minimum gaps between requests, retries with backoff.

The SteamSpy and Steam Web API clients are thin layers over :class:`PoliteClient`. It takes
plain arguments only (no settings), and everything that touches time or the network can be
injected: an ``httpx`` transport or client, the ``sleep`` function, the monotonic clock and the
jitter source. Tests run it against a local server with millisecond intervals.

What counts as a transient failure (retried with exponential backoff and jitter): timeouts,
connection errors, HTTP 429 (honouring ``Retry-After``), HTTP 5xx, and a 2xx body that is not the
JSON expected (a truncated or garbled body). Any other status fails at once, and so does a host
name that cannot be resolved (offline, or a mistyped URL: no retry helps). A failure that
survives the retries raises :class:`~gamerec.errors.FetchError` naming the request;
429 raises :class:`~gamerec.errors.RateLimitError`, and a server that could never be connected
to raises :class:`~gamerec.errors.ServerUnreachableError`.

Bodies are read as a stream and decompressed here, a chunk at a time, so that a small
gzip-encoded answer cannot expand without bound: past ``max_body_bytes`` the request fails at
once. Redirects are followed within the same origin (scheme, host and port); a client that
sends a secret header refuses a redirect to any other origin rather than send the secret there.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import random
import socket
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack, cast

import httpx

from gamerec.errors import FetchError, RateLimitError, ServerUnreachableError

__all__ = [
    "MAX_BODY_BYTES",
    "ClientOptions",
    "ClosingClient",
    "FailureBudget",
    "Fetched",
    "PoliteClient",
    "ProgressFn",
    "RetryNotice",
    "RetryPolicy",
    "Throttle",
    "no_progress",
    "polite_client",
    "retries_reported",
]

#: ``(bucket, seconds)``: at least ``seconds`` between the end of one request in ``bucket``
#: and the start of the next one in it
Gap = tuple[str, float]

#: the largest answer body read (decoded): SteamSpy's biggest page is well under 1 MB
MAX_BODY_BYTES = 64 * 1024**2
_MAX_REDIRECTS = 5
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    max_retries: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0

    def delay(self, retry: int, jitter: float) -> float:
        """Seconds before retry number ``retry`` (0-based): base * 2**retry, capped, then
        scaled by ``0.5 + jitter / 2`` so that many clients do not retry in lockstep."""
        capped = min(self.backoff_max_s, self.backoff_base_s * (2.0**retry))
        return capped * (0.5 + 0.5 * jitter)


@dataclass(frozen=True)
class RetryNotice:
    """Told to the ``on_retry`` callback before the client sleeps and tries again."""

    what: str
    attempt: int
    attempts: int
    delay_s: float
    problem: str


@dataclass(frozen=True)
class Fetched:
    """A successful response: the parsed JSON and the exact bytes it was parsed from."""

    data: Any
    body: bytes


class Throttle:
    """Keeps a minimum gap between requests, per named bucket.

    Gaps are measured from the *end* of the previous request, so the server sees requests
    at least the gap apart however long they took to answer.
    """

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._last_end: dict[str, float] = {}

    def wait(self, gaps: Sequence[Gap]) -> None:
        ready = max(
            (self._last_end[bucket] + gap for bucket, gap in gaps if bucket in self._last_end),
            default=float("-inf"),
        )
        # a loop, because a sleep may end a hair early on some platforms
        while (now := self._clock()) < ready:
            self._sleep(ready - now)

    def done(self, gaps: Sequence[Gap]) -> None:
        now = self._clock()
        for bucket, _ in gaps:
            self._last_end[bucket] = now


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None if absent or unparsable.

    The result may be negative, zero or not finite (``nan``, a past date): the caller clamps it.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


class _BodyTooLargeError(Exception):
    pass


class _BodyTruncatedError(Exception):
    pass


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


def _read_body(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, decompressed here in bounded steps; stops once it passes ``limit``."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decoder: Any = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
    elif encoding not in ("", "identity"):
        raise _BodyTruncatedError(f"the answer has an unsupported Content-Encoding {encoding!r}")
    parts: list[bytes] = []
    total = 0
    for raw in response.iter_raw():
        data = raw
        while data:
            if decoder is None:
                chunk, data = data, b""
            else:
                chunk = decoder.decompress(data, _CHUNK)
                data = decoder.unconsumed_tail
            total += len(chunk)
            if total > limit:
                raise _BodyTooLargeError
            parts.append(chunk)
            if decoder is not None and decoder.eof:
                break
    if decoder is not None and not decoder.eof:
        raise _BodyTruncatedError("the compressed body ends early (truncated)")
    return b"".join(parts)


@dataclass(frozen=True)
class _JsonRequest:
    """One :meth:`PoliteClient.get_json` call's request, and how to judge and report it."""

    url: str
    params: Mapping[str, str | int] | None
    what: str
    gaps: Sequence[Gap]
    expect: Callable[[Any], bool] | None
    advice: Mapping[int, str] | None
    where: str


@dataclass(frozen=True)
class _TransientFailure:
    """Why one try failed in a way another try may not: ``problem`` is told to ``on_retry``."""

    problem: str
    reached_server: bool = True  # False: the request never arrived
    rate_limited: bool = False
    retry_after: float | None = None  # the server's own wait, in seconds, when it gave one


def _parsed(body: bytes, expect: Callable[[Any], bool] | None) -> Fetched | _TransientFailure:
    """A 2xx body's JSON, or why it is not the JSON expected (a truncated or garbled body)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _TransientFailure(
            f"the body is not valid JSON ({len(body):,} bytes; truncated or garbled)"
        )
    except RecursionError:  # [[[[... past Python's recursion limit
        return _TransientFailure(f"the body is JSON nested too deeply ({len(body):,} bytes)")
    if expect is None or expect(data):
        return Fetched(data, body)
    return _TransientFailure("the JSON does not have the expected shape")


class ClientOptions(TypedDict, total=False):
    """How an API client talks to its server; see :func:`polite_client` for the defaults."""

    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    transport: httpx.BaseTransport | None
    client: httpx.Client | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    on_retry: Callable[[RetryNotice], None] | None
    before_request: Callable[[], None] | None
    max_body_bytes: int


def polite_client(
    headers: Mapping[str, str], secrets: Collection[str] = (), **options: Unpack[ClientOptions]
) -> PoliteClient:
    """A :class:`PoliteClient` from flat options: the retry fields make its RetryPolicy."""
    default = RetryPolicy()
    retry = RetryPolicy(
        options.pop("max_retries", default.max_retries),
        options.pop("backoff_base_s", default.backoff_base_s),
        options.pop("backoff_max_s", default.backoff_max_s),
    )
    return PoliteClient(retry=retry, headers=headers, secrets=secrets, **cast(Any, options))


class ClosingClient(ABC):
    """``with client:`` closes it; subclasses say what closing means."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PoliteClient(ClosingClient):
    """GET JSON documents politely; see the module docstring for what is retried.

    ``secrets`` are strings (an API key) scrubbed from every message this client produces,
    as a second line of defence: callers should send them in headers, never in URLs. With
    any secret, a redirect to another origin is refused (the headers would follow it).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[RetryNotice], None] | None = None,
        before_request: Callable[[], None] | None = None,
        secrets: Collection[str] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.max_body_bytes = max_body_bytes
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, transport=transport)
        if headers:
            self._client.headers.update(headers)
        # decoded here, in bounded steps (see _read_body): only encodings zlib reads
        self._client.headers["Accept-Encoding"] = "gzip, deflate"
        self._sleep = sleep
        self._jitter = jitter
        self.throttle = Throttle(sleep=sleep, clock=clock)
        self.on_retry = on_retry
        self.before_request = before_request
        self._secrets = [s for s in secrets if s]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(timeout_s={self.timeout_s}, retry={self.retry})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _get(
        self, url: str, params: Mapping[str, str | int] | None, what: str, where: str
    ) -> tuple[httpx.Response, bytes]:
        """One GET, following same-origin redirects, with the body read under the cap."""
        request = self._client.build_request("GET", url, params=params)
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._client.send(request, stream=True, follow_redirects=False)
            try:
                if response.next_request is None:
                    if not 200 <= response.status_code < 300:
                        return response, b""
                    return response, _read_body(response, self.max_body_bytes)
                target = response.next_request
                if self._secrets and _origin(target.url) != _origin(request.url):
                    shown = f"{target.url.scheme}://{target.url.host}"
                    raise FetchError(
                        f"{what}: the server redirects to another origin ({shown}); the "
                        f"key is not sent there. Check {where} ({self.scrub(url)}): it must "
                        "name the API's own address"
                    )
                request = target
            finally:
                response.close()
        raise FetchError(f"{what}: more than {_MAX_REDIRECTS} redirects; check {where} ({url})")

    def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        *,
        what: str,
        gaps: Sequence[Gap] = (),
        expect: Callable[[Any], bool] | None = None,
        advice: Mapping[int, str] | None = None,
        where: str = "the base URL",
    ) -> Fetched:
        """GET ``url`` and parse JSON, retrying transient failures.

        ``what`` names the request in messages (it must not contain secrets); ``gaps`` are the
        throttle buckets this request belongs to; ``expect`` rejects a parsed body of the wrong
        shape (retried like a truncated one); ``advice`` adds what to do for a given HTTP status;
        ``where`` names the setting that holds the URL.
        """
        request = _JsonRequest(url, params, what, gaps, expect, advice, where)
        attempts = self.retry.max_retries + 1
        ever_connected = False
        for attempt in range(1, attempts + 1):
            if self.before_request is not None:
                self.before_request()
            self.throttle.wait(gaps)
            outcome = self._try(request)
            if isinstance(outcome, Fetched):
                self.throttle.done(gaps)
                return outcome
            failure = outcome
            ever_connected = ever_connected or failure.reached_server
            # a request that never arrived does not count against the gaps
            if failure.reached_server:
                self.throttle.done(gaps)
            if attempt == attempts:
                break
            delay = (
                failure.retry_after
                if failure.retry_after is not None
                else self.retry.delay(attempt - 1, self._jitter())
            )
            if self.on_retry is not None:
                self.on_retry(RetryNotice(what, attempt, attempts, delay, failure.problem))
            self._sleep(delay)
        raise self._gave_up(request, attempts, failure, ever_connected)

    def _try(self, request: _JsonRequest) -> Fetched | _TransientFailure:
        """One try: the answer, or the transient failure to retry; any other failure raises."""
        what, url, where = request.what, request.url, request.where
        try:
            response, body = self._get(url, request.params, what, where)
        except _BodyTooLargeError:
            self.throttle.done(request.gaps)
            raise FetchError(
                f"{what}: the answer is larger than {self.max_body_bytes:,} bytes, far more "
                f"than any real answer; check {where} ({url})"
            ) from None
        except _BodyTruncatedError as exc:
            return _TransientFailure(str(exc))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            unresolved = _name_resolution_error(exc)
            if unresolved is not None:
                host = self.scrub(httpx.URL(url).host)
                raise ServerUnreachableError(
                    f"{what}: cannot find the server {host} ({unresolved.strerror}); "
                    f"check your network connection and the base URL ({self.scrub(url)})"
                ) from None
            problem = f"could not connect ({self.scrub(str(exc)) or type(exc).__name__})"
            return _TransientFailure(problem, reached_server=False)
        except httpx.TimeoutException:
            return _TransientFailure(f"no answer within {self.timeout_s:g} s (timeout)")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise FetchError(
                f"{what}: cannot request {url} ({self.scrub(str(exc))}); check the base URL"
            ) from None
        except httpx.RequestError as exc:
            # the connection broke mid-response: e.g. a body shorter than its Content-Length
            return _TransientFailure(
                f"the connection broke ({type(exc).__name__}: {self.scrub(str(exc))})"
            )
        return self._answer(request, response, body)

    def _answer(
        self, request: _JsonRequest, response: httpx.Response, body: bytes
    ) -> Fetched | _TransientFailure:
        """What a response that arrived says: its JSON, a failure to retry, or (raised) one not
        worth retrying."""
        status = response.status_code
        if status == 429:
            retry_after = self._clamped_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.retry.backoff_max_s:
                self.throttle.done(request.gaps)
                raise RateLimitError(
                    f"{request.what}: the server is rate limiting (HTTP 429) and asks to wait "
                    f"{retry_after:.0f} s, longer than the longest backoff "
                    f"({self.retry.backoff_max_s:g} s); try again later"
                )
            return _TransientFailure(
                "HTTP 429 Too Many Requests", rate_limited=True, retry_after=retry_after
            )
        if status >= 500:
            return _TransientFailure(f"HTTP {status} {response.reason_phrase}".rstrip())
        if not 200 <= status < 300:
            self.throttle.done(request.gaps)
            hint = (request.advice or {}).get(status, "check the request's parameters and URL")
            raise FetchError(
                f"{request.what}: HTTP {status} {response.reason_phrase}".rstrip() + f"; {hint}"
            )
        return _parsed(body, request.expect)

    def _gave_up(
        self,
        request: _JsonRequest,
        attempts: int,
        last: _TransientFailure,
        ever_connected: bool,
    ) -> FetchError:
        """The error once every attempt has failed, named for the last attempt's failure."""
        what, tries = request.what, f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if last.rate_limited:
            return RateLimitError(
                f"{what}: still rate limited (HTTP 429) after {tries}; wait a while and run again"
            )
        if not ever_connected:
            return ServerUnreachableError(
                f"{what}: {last.problem} after {tries}; check your network connection and the "
                f"base URL ({request.url})"
            )
        return FetchError(
            f"{what}: failed after {tries}: {last.problem}; run again later to resume"
        )

    def _clamped_retry_after(self, header: str | None) -> float | None:
        """A ``Retry-After`` wait no shorter than the backoff base: ``nan``, a negative number
        or a past date must not mean "hammer the server again at once"."""
        seconds = _retry_after_seconds(header)
        if seconds is None:
            return None
        if math.isnan(seconds) or seconds < self.retry.backoff_base_s:
            return self.retry.backoff_base_s
        return seconds


def _name_resolution_error(exc: BaseException) -> socket.gaierror | None:
    """The DNS failure behind a connection error (httpx wraps it twice), if that is its cause."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a loop in it must not hang
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


#: ``(stage, message, fraction of the stage done or None when unknown)``, as in the pipeline
ProgressFn = Callable[[str, str, float | None], None]


def no_progress(stage: str, message: str, fraction: float | None) -> None:
    return None


class FailureBudget:
    """Decides when a crawl of many items should stop instead of moving on.

    One item failing after its retries is recorded and the crawl goes on, so that one broken
    item cannot block the rest forever. ``limit`` failures in a row, or a run in which every
    request failed, mean the server or the settings are at fault: stop with a FetchError.
    """

    def __init__(self, limit: int = 3) -> None:
        self.limit = limit
        self.consecutive = 0
        self.successes = 0
        self.failures = 0
        self.last: FetchError | None = None

    def succeeded(self) -> None:
        self.consecutive = 0
        self.successes += 1

    def failed(self, error: FetchError) -> None:
        if isinstance(error, RateLimitError | ServerUnreachableError):
            raise error  # every further request would meet the same fate
        self.consecutive += 1
        self.failures += 1
        self.last = error
        if self.consecutive >= self.limit:
            raise FetchError(
                f"{error.message} ({self.consecutive} requests in a row failed, so the crawl "
                "stopped; what was fetched is saved: run the command again to resume)"
            )

    def finish(self) -> None:
        if self.last is not None and self.successes == 0:
            raise FetchError(
                f"{self.last.message} (every request of this run failed; what was fetched "
                "before is saved: run the command again to resume)"
            )


@contextlib.contextmanager
def retries_reported(http: PoliteClient, progress: ProgressFn, stage: str) -> Iterator[None]:
    """While the block runs, tell ``progress`` about each retry (a bar shows why it waits)."""
    previous = http.on_retry

    def report(notice: RetryNotice) -> None:
        if previous is not None:
            previous(notice)
        progress(
            stage,
            f"{notice.what}: {notice.problem}; retry {notice.attempt}/{notice.attempts - 1} "
            f"in {notice.delay_s:.1f} s",
            None,
        )

    http.on_retry = report
    try:
        yield
    finally:
        http.on_retry = previous
