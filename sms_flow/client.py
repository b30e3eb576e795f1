"""The async HTTP client of the SMS API: one shared session, retries, typed errors.

:class:`SmsClient` sends ``PUT /v3/sources/{source_id}/changestate`` exactly as the API page
documents it, and reads sources back (``GET /v3/sources[/{id}]``, ``POST /v3/sources``). It
knows the wire and nothing above it: no statechart, no journal, no waves.

A call is a loop of attempts: :meth:`SmsClient._attempt` sends one request and judges its
outcome (the answer of a 2xx; else a typed error, from :mod:`sms_flow._answers` for an HTTP
answer, and whether it may be retried), and :meth:`SmsClient._call` decides whether to try
again, by :class:`~sms_flow.retry.RetryPolicy`: capped exponential backoff with full jitter, a
429's ``Retry-After`` honoured, until the call's ``total_time`` is spent (or a given number of
attempts made), so that an outage shorter than ``total_time`` loses no call. Connection errors,
timeouts, 429 and the retryable 5xx are retried; other 4xx never are. Every attempt is signed
afresh (an AK/SK signature carries its date). The ``POST`` that registers a source is not
idempotent, so it is retried only when the service surely did not process it (the
connection was refused, or a 429). :meth:`SmsClient.stats` counts the retries by cause.
A final error's ``maybe_applied`` says whether any attempt may have been processed.

An answer is read up to :data:`~sms_flow.wire.ANSWER_MAX_BYTES` (8 MiB, decompressed), never
further: a larger one is an :class:`~sms_flow.errors.AnswerTooLargeError`. Every answer's body
and quoted headers go through the client's :class:`~sms_flow._answers.Redactor` before anything parses,
quotes or logs them.

:meth:`SmsClient.read_sources` (and :func:`read_sources`, for a wrapper of the client) reads
the states of many sources: by pages of the listing where it is allowed, else one ``GET``
each, streaming them.

A retry must never overtake a newer change for the same source: each ``change_state`` call
takes a sequence number, and a retry stops with :class:`~sms_flow.errors.SupersededError`
when a newer call for the same source has started. Only sources with a call in flight are
remembered.

Bad input (a source id over the limit or unsafe in a path, an unknown value, an empty
change) raises an :class:`~sms_flow.errors.InputError` before anything is sent. No message,
log line or ``repr`` holds a token, a secret key, an ``Authorization`` header or a signature.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from importlib import metadata
from types import TracebackType
from typing import Any, Final, Protocol, Self

import aiohttp
from pydantic import ValidationError
from yarl import URL

from sms_flow._answers import Answer, Redactor, api_error
from sms_flow._guard import send_guard
from sms_flow.auth import Auth, _secrets_of, auth_from_env
from sms_flow.errors import (
    AnswerTooLargeError,
    ApiError,
    AuthError,
    ConfigError,
    ConnectError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    SupersededError,
    ThrottledError,
    TransportError,
    UnknownValueError,
    UsageError,
    truncate,
)
from sms_flow.log import get_logger
from sms_flow.retry import RetryPolicy
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    SdkCycle,
    Spelling,
    parse_copystate,
    parse_service_cycle,
    read_side_state,
)
from sms_flow.wire import (
    ANSWER_MAX_BYTES,
    BODY_MAX_BYTES,
    SOURCES_PATH,
    ChangeStateRequest,
    RegisterSourceRequest,
    SourceList,
    SourceServer,
    changestate_path,
    source_path,
)

__all__ = [
    "ENDPOINT_ENV",
    "REGION_ENV",
    "ClientStats",
    "PushResult",
    "SmsClient",
    "SourceReader",
    "endpoint_for_region",
    "read_sources",
]


ENDPOINT_ENV: Final = "SMS_FLOW_ENDPOINT"
"""The environment variable :meth:`SmsClient.from_env` reads the endpoint from."""
REGION_ENV: Final = "SMS_FLOW_REGION"
"""The environment variable :meth:`SmsClient.from_env` reads the region from."""

_log = get_logger(__name__)

# Endpoints that do not follow https://sms.{region}.myhuaweicloud.com.
_SPECIAL_ENDPOINTS: Final = {"ru-moscow-1": "https://sms-api.ru-moscow-1.myhuaweicloud.com"}
_REGION_RE: Final = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")
# The body cache is bounded (a caller passing ever new strings must not grow it without
# limit); beyond the bound, bodies are built each time.
_BODIES_MAX: Final = 20_000
_SHOWN_DETAIL: Final = 200
# read_sources lists the sources (by pages) only for more ids than this; fewer, one GET each.
_LIST_ABOVE: Final = 50


def _user_agent() -> str:
    try:
        return f"sms-flow/{metadata.version('sms-flow')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "sms-flow"


_USER_AGENT: Final = _user_agent()
_DEFAULT_RETRY: Final = RetryPolicy()
_JSON_HEADERS: Final = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
_GET_HEADERS: Final = {"Accept": "application/json", "User-Agent": _USER_AGENT}


def _is_loopback(endpoint: str) -> bool:
    host = URL(endpoint).host or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def endpoint_for_region(region: str) -> str:
    """The SMS endpoint of a Huawei Cloud region, as the official SDK lists them.

    ``https://sms.{region}.myhuaweicloud.com``, except ``ru-moscow-1``
    (``https://sms-api.ru-moscow-1.myhuaweicloud.com``). Raises
    :class:`~sms_flow.errors.ConfigError` for a string that is not a region id.
    """
    if not isinstance(region, str) or not _REGION_RE.fullmatch(region):
        raise ConfigError(
            f"region {region!r} is not a Huawei Cloud region id; give one such as "
            "cn-north-4, ap-southeast-3 or ru-moscow-1 (or an endpoint URL instead)"
        )
    return _SPECIAL_ENDPOINTS.get(region, f"https://sms.{region}.myhuaweicloud.com")


def _check_endpoint(endpoint: str) -> str:
    """Parse and check an endpoint URL; the result has no trailing slash."""
    try:
        url = URL(endpoint.strip())
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(
            f"endpoint {endpoint!r} is not a URL; give one such as "
            "https://sms.cn-north-4.myhuaweicloud.com"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"endpoint {truncate(str(url), 80)!r} is not an absolute http(s) URL; give one "
            "such as https://sms.cn-north-4.myhuaweicloud.com"
        )
    if url.user is not None or url.password is not None:
        # Never echo the URL here: its user info may hold a password.
        raise ConfigError(
            "the endpoint holds a user name or password; remove it (credentials go in "
            "SMS_FLOW_TOKEN or CLOUD_SDK_AK/CLOUD_SDK_SK/CLOUD_SDK_PROJECT_ID)"
        )
    if url.raw_query_string or url.raw_fragment:
        raise ConfigError(
            f"endpoint {url.origin()}: remove the query or fragment; give the base URL only"
        )
    return str(url.with_path(url.raw_path.rstrip("/"), encoded=True))


@dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of a successful ``change_state``.

    ``status`` is the HTTP status (200), ``request_id`` the ``X-Request-Id`` of the answer,
    ``attempts`` how many attempts it took, ``elapsed`` the seconds the whole call took.
    A 200 does not prove the change landed: in some states the service ignores it; read
    the source back to know.
    """

    source_id: str
    status: int
    request_id: str | None
    attempts: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class ClientStats:
    """The retries a client's calls have made so far, by cause (:meth:`SmsClient.stats`).

    ``connect``: the connection could not be made (refused, unreachable); ``dropped``: it broke
    before a whole answer came; ``timeout``: no answer within the attempt's time;
    ``throttled``: a 429; ``server``: a 5xx. A retry is counted when its attempt starts.
    """

    connect: int = 0
    dropped: int = 0
    timeout: int = 0
    throttled: int = 0
    server: int = 0

    @property
    def retries(self) -> int:
        """Every retry, whatever its cause."""
        return self.connect + self.dropped + self.timeout + self.throttled + self.server

    def by_cause(self) -> dict[str, int]:
        """``{"connect": n, "dropped": n, "timeout": n, "429": n, "5xx": n}``, for a report."""
        return {
            "connect": self.connect,
            "dropped": self.dropped,
            "timeout": self.timeout,
            "429": self.throttled,
            "5xx": self.server,
        }


class _Cause(IntEnum):
    """Why an attempt failed, for the retry counters (the order of ClientStats' fields)."""

    CONNECT = 0
    DROPPED = 1
    TIMEOUT = 2
    THROTTLED = 3
    SERVER = 4


class _Mode(Enum):
    """Which failures of a request may be retried."""

    IDEMPOTENT = "idempotent"  # PUT changestate, GET: every transport error, 429, 5xx
    NOT_SENT = "not sent"  # POST: only when the request surely was not processed


@dataclass(frozen=True, slots=True)
class _Failure:
    """An attempt that failed.

    ``error`` is what to raise, ``retryable`` whether the call may try again, ``reason`` the
    failure in short, for the log (``HTTP 503 SMS.2007``, ``timeout`` ...), ``cause`` its
    counter, when it may be retried.
    """

    error: TransportError | ApiError
    retryable: bool
    reason: str
    request_id: str | None
    cause: _Cause | None = None


def _describe(exc: BaseException, sent: Mapping[str, str], redact: Redactor) -> str:
    """An exception in short for a message: its type and text, credentials removed."""
    detail = redact(str(exc).strip(), sent)
    name = type(exc).__name__
    return truncate(f"{name}: {detail}" if detail else name, _SHOWN_DETAIL)


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes | None:
    """The answer's body, decompressed; ``None`` when it is over ``ANSWER_MAX_BYTES``.

    Reads no further than the cap (plus one chunk): an answer with a ``Content-Length`` over it
    is not read at all, a compressed or chunked one is read chunk by chunk (aiohttp inflates
    by bounded steps) and abandoned once past it.
    """
    encoding = resp.headers.get("Content-Encoding", "")
    length = resp.content_length
    if length is not None and (not encoding or encoding.strip().lower() == "identity"):
        if length > ANSWER_MAX_BYTES:
            return None
        return await resp.read()  # exactly Content-Length bytes
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > ANSWER_MAX_BYTES:
            return None
    return bytes(body)


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


def _unsure(mode: _Mode) -> str:
    """What a failure message adds when the request may have been processed all the same."""
    if mode is _Mode.IDEMPOTENT:
        return ""
    return "; the request may have been processed: look for its result before sending it again"


def _state_filter(value: CopyState | str) -> str:
    """A copystate to filter a listing on, as the read side spells it."""
    return read_side_state(parse_copystate(value))


def _cycle_filter(value: MigrationCycle | SdkCycle | str) -> str:
    """A migration cycle to filter on; the SDK-only cycles are valid on the read side."""
    cycle = parse_service_cycle(str(value))
    if cycle is None:
        valid = ", ".join([*(c.value for c in MigrationCycle), *(c.value for c in SdkCycle)])
        raise UnknownValueError("migration_cycle", str(value), valid)
    return cycle.value


class SourceReader(Protocol):
    """What :func:`read_sources` needs of a client: ``get_source`` (``SmsClient`` is one).

    A reader that also has ``iter_sources`` (as :meth:`SmsClient.iter_sources`) is paged
    through when many sources are wanted.
    """

    async def get_source(self, source_id: str) -> SourceServer: ...


def read_sources(
    reader: SourceReader, ids: Iterable[str], *, concurrency: int = 32
) -> AsyncIterator[tuple[str, SourceServer | None]]:
    """The sources ``ids`` as the service reports them: ``(id, source)`` pairs, as they come.

    A source the service does not know comes as ``(id, None)``; each id comes once, in no set
    order. For more than 50 ids, and when ``reader`` has ``iter_sources``, the listing
    (``GET /v3/sources``, pages of 200) is read first and left as soon as every id is found;
    when the listing is refused (404, or 403 for a user without the list permission) a log
    line says so and the reader goes on without it. Every id the listing did not show, and
    every id when there are 50 or fewer, is read with its own ``GET /v3/sources/{id}``,
    ``concurrency`` at a time. Nothing is held but the ids still missing and the sources not
    yet consumed: a page, or ``concurrency`` sources. Any other error stops the reading and
    is raised.

    For :class:`SmsClient` use :meth:`SmsClient.read_sources`; this function serves wrappers
    of a client (a rate limit) that have ``get_source`` and ``iter_sources`` of their own.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidRequestError(f"concurrency is {concurrency!r}; give 1 or more")
    return _read_sources(reader, ids, concurrency)


async def _read_sources(
    reader: SourceReader, ids: Iterable[str], concurrency: int
) -> AsyncIterator[tuple[str, SourceServer | None]]:
    missing = dict.fromkeys(ids)  # ordered and unique; found ids leave it
    listing = getattr(reader, "iter_sources", None)
    if len(missing) > _LIST_ABOVE and listing is not None:
        pages: AsyncIterator[SourceServer] = listing()
        try:
            while missing:
                try:
                    src = await anext(pages)
                except StopAsyncIteration:
                    break
                except (NotFoundError, AuthError) as exc:
                    if exc.status not in (403, 404):
                        raise
                    _log.warning(
                        "sms.listing_refused",
                        status=exc.status,
                        error_code=exc.error_code,
                        request_id=exc.request_id,
                        sources=len(missing),
                        then="reading each source with GET /v3/sources/{source_id}; grant the "
                        "permission to list source servers to read them by pages",
                    )
                    break
                if src.id in missing:
                    del missing[src.id]
                    yield src.id, src
        finally:
            closing = getattr(pages, "aclose", None)
            if closing is not None:
                await closing()
    if not missing:
        return
    async for pair in _get_each(reader, iter(missing), min(concurrency, len(missing))):
        yield pair


async def _get_each(
    reader: SourceReader, ids: Iterator[str], workers: int
) -> AsyncIterator[tuple[str, SourceServer | None]]:
    """``GET`` each id, ``workers`` at a time, yielding each source as it comes."""
    done: asyncio.Queue[tuple[str, SourceServer | None] | BaseException | None] = asyncio.Queue(
        maxsize=workers
    )

    async def work() -> None:
        try:
            for source_id in ids:  # one iterator shared: each id is taken once
                try:
                    src: SourceServer | None = await reader.get_source(source_id)
                except NotFoundError:
                    src = None
                await done.put((source_id, src))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the reader, who raises it (WaitInterrupted too)
            await done.put(exc)
        else:
            await done.put(None)

    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    try:
        running = len(tasks)
        while running:
            item = await done.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SmsClient:
    """An async client of the SMS API; use it as ``async with SmsClient(...) as client``.

    Give exactly one of ``endpoint`` (a base URL such as
    ``https://sms.cn-north-4.myhuaweicloud.com``) and ``region`` (``cn-north-4``). ``auth``
    signs every attempt (:class:`~sms_flow.auth.TokenAuth` or
    :class:`~sms_flow.auth.AkSkAuth`). ``spelling`` chooses how enum values are sent.
    TLS certificates are verified unless ``verify_tls=False``; ``ca_file`` adds a CA bundle.
    ``limit`` caps the open connections. ``rng`` draws the backoff jitter (default: the
    ``random`` module), for reproducible timing. Constructing a client configures nothing
    else, logging included (see :mod:`sms_flow.log`).

    A ``session`` given by the caller is used as is and not closed; the TLS options and
    ``limit`` then belong to it. On such a session aiohttp may resend a PUT or GET once,
    unseen, when a kept-alive connection breaks; the client's own session does not.
    """

    __slots__ = (
        "_auth",
        "_base",
        "_bodies",
        "_latest",
        "_limit",
        "_owns_session",
        "_redact",
        "_retries",
        "_retry",
        "_rng",
        "_seq",
        "_session",
        "_spelling",
        "_ssl",
        "_timeout",
    )

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        region: str | None = None,
        auth: Auth | None = None,
        retry: RetryPolicy = _DEFAULT_RETRY,
        spelling: Spelling = Spelling.PAGE,
        verify_tls: bool = True,
        ca_file: str | None = None,
        limit: int = 100,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if (endpoint is None) == (region is None):
            raise ConfigError(
                "give exactly one of endpoint (e.g. https://sms.cn-north-4.myhuaweicloud.com) "
                f"and region (e.g. cn-north-4); from the environment: {ENDPOINT_ENV} or "
                f"{REGION_ENV}"
            )
        if endpoint is None:
            endpoint = endpoint_for_region(region)  # type: ignore[arg-type]  # one is given
        base = _check_endpoint(endpoint)
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"limit is {limit!r}; give the most connections to open (0 = no cap)")
        if session is not None and (not verify_tls or ca_file is not None or limit != 100):
            raise ConfigError(
                "verify_tls, ca_file and limit configure the client's own session; with a "
                "session of your own, set them on its connector instead"
            )
        if ca_file is not None and not verify_tls:
            raise ConfigError(
                "ca_file is given but verify_tls is False; a CA file only matters when "
                "certificates are verified: drop one of the two"
            )
        ssl_arg: ssl.SSLContext | bool = verify_tls
        if ca_file is not None:
            if not os.path.isfile(ca_file):
                raise ConfigError(f"ca_file {ca_file!r} is not a file; give a PEM CA bundle")
            try:
                ssl_arg = ssl.create_default_context(cafile=ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"ca_file {ca_file!r} is not a usable PEM CA bundle ({exc}); check the file"
                ) from None
        self._base = base
        self._auth = auth
        # Removes the credentials (and those sent) from every answer, wherever they show.
        self._redact = Redactor(_secrets_of(auth))
        self._retries = [0] * len(_Cause)
        self._retry = retry
        self._rng = rng
        self._spelling = Spelling(spelling)
        self._ssl = ssl_arg
        self._limit = limit
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=retry.timeout)
        self._seq = 0
        self._latest: dict[str, int] = {}
        # The exact body of each (copystate, migrationcycle) asked for, as given: a wave
        # pushes a handful of distinct changes thousands of times. It pays: building one
        # (checking the values, the pydantic model, the JSON) costs 9.3 µs, the lookup
        # 0.1 µs, about 1.2 % of the client CPU of a push in B3 (650-870 µs a push on the
        # 2-core machine, 2026-12-02). A source's URL is not cached: in B3 each source gets
        # 5 pushes, and a URL cache's saving on 4 of them (about 2.8 µs each) was spent
        # filling it on the first: change_state's preparation measured 9.2 µs a push, on
        # average, with the old URL caches and without them.
        self._bodies: dict[tuple[object, object], bytes] = {}

    # --- construction and lifetime -------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> SmsClient:
        """A client configured from the environment; keyword ``overrides`` win.

        The endpoint comes from ``SMS_FLOW_ENDPOINT`` or ``SMS_FLOW_REGION`` (one of them),
        the credentials from :func:`~sms_flow.auth.auth_from_env` (``SMS_FLOW_TOKEN``, or
        ``CLOUD_SDK_AK``/``CLOUD_SDK_SK``/``CLOUD_SDK_PROJECT_ID``).
        """
        endpoint = overrides.pop("endpoint", None)
        region = overrides.pop("region", None)
        if endpoint is None and region is None:
            endpoint = environ.get(ENDPOINT_ENV) or None
            region = environ.get(REGION_ENV) or None
            if endpoint is not None and region is not None:
                raise ConfigError(
                    f"both {ENDPOINT_ENV} and {REGION_ENV} are set; set only one "
                    f"(unset {REGION_ENV} to use the endpoint, or the other way round)"
                )
            if endpoint is None and region is None:
                raise ConfigError(
                    f"no SMS endpoint: set {ENDPOINT_ENV} (e.g. "
                    f"https://sms.cn-north-4.myhuaweicloud.com) or {REGION_ENV} (e.g. "
                    "cn-north-4), or pass endpoint= or region= (--endpoint/--region)"
                )
        if "auth" not in overrides:
            overrides["auth"] = auth_from_env(environ)
        client = cls(endpoint, region=region, **overrides)
        if overrides["auth"] is None and not _is_loopback(client.endpoint):
            raise ConfigError(
                f"no credentials for {client.endpoint}: set SMS_FLOW_TOKEN (an IAM token), or "
                "CLOUD_SDK_AK, CLOUD_SDK_SK and CLOUD_SDK_PROJECT_ID (AK/SK); only a simulator on "
                "this machine (127.0.0.1, localhost) is called without them"
            )
        return client

    @property
    def endpoint(self) -> str:
        """The base URL requests go to."""
        return self._base

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def spelling(self) -> Spelling:
        return self._spelling

    def stats(self) -> ClientStats:
        """The retries this client's calls have made so far, by cause."""
        return ClientStats(*self._retries)

    def __repr__(self) -> str:
        # The auth object is named by its type only: a custom Auth's repr might hold secrets.
        auth = type(self._auth).__name__ if self._auth is not None else None
        return (
            f"SmsClient(endpoint={self._base!r}, auth={auth}, retry={self._retry!r}, "
            f"spelling={self._spelling.value!r})"
        )

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open the client's own session (``async with`` does this)."""
        if self._session is None or (self._owns_session and self._session.closed):
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
            # trust_env stays off: it would read ~/.netrc and add an Authorization header.
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            # aiohttp silently resends a PUT or GET once when the connection breaks
            # (aio-libs/aiohttp#10790); that resend could overtake a newer change for the
            # same source and hides an attempt, so it is switched off, as aiohttp's own test
            # client does. Retries are this module's business.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
            self._owns_session = True

    async def aclose(self) -> None:
        """Close the client's own session; a session given by the caller stays open."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- changestate ---------------------------------------------------------------------

    async def change_state(
        self,
        source_id: str,
        copystate: CopyState | str | None = None,
        migrationcycle: MigrationCycle | str | None = None,
    ) -> PushResult:
        """``PUT /v3/sources/{source_id}/changestate`` with the given fields.

        Everything is checked first (the source id, the values, that the change names
        something): bad input raises an :class:`~sms_flow.errors.InputError` and sends
        nothing. Returns a :class:`PushResult` on a 2xx. Raises an
        :class:`~sms_flow.errors.ApiError` subclass for an HTTP error,
        :class:`~sms_flow.errors.ConnectError` or :class:`~sms_flow.errors.RequestTimeoutError`
        when no answer came, and :class:`~sms_flow.errors.SupersededError` when a retry was
        dropped because a newer change for the same source began.
        """
        path = changestate_path(source_id)
        url = URL(self._base + path, encoded=True)
        key = (copystate, migrationcycle)
        try:
            body = self._bodies[key]
        except (KeyError, TypeError):
            body = self._change_body(copystate, migrationcycle)
        self._seq = seq = self._seq + 1
        latest = self._latest
        latest[source_id] = seq
        start = time.monotonic()
        try:
            answer = await self._call(
                "PUT", url, path, body, _JSON_HEADERS, _Mode.IDEMPOTENT, source_id, seq
            )
        finally:
            if latest.get(source_id) == seq:
                del latest[source_id]
        return PushResult(
            source_id, answer.status, answer.request_id, answer.attempts, time.monotonic() - start
        )

    def _change_body(self, copystate: object, migrationcycle: object) -> bytes:
        request = ChangeStateRequest.of(copystate, migrationcycle)  # type: ignore[arg-type]
        body = request.to_wire(self._spelling)
        if len(self._bodies) < _BODIES_MAX:
            self._bodies[(copystate, migrationcycle)] = body
        return body

    # --- the read side and registration --------------------------------------------------

    async def get_source(self, source_id: str) -> SourceServer:
        """``GET /v3/sources/{source_id}``: the source server as the service reports it."""
        path = source_path(source_id)
        url = URL(self._base + path, encoded=True)
        answer = await self._call("GET", url, path, None, _GET_HEADERS, _Mode.IDEMPOTENT)
        data = answer.body
        try:
            raw = json.loads(data)
            if isinstance(raw, dict) and isinstance(raw.get("source_server"), dict):
                raw = raw["source_server"]  # tolerate an enveloped answer
            return SourceServer.model_validate(raw)
        except (ValueError, ValidationError):
            raise self._unusable("GET", path, answer, "a source server") from None

    async def list_sources(
        self,
        *,
        state: CopyState | str | None = None,
        migration_cycle: MigrationCycle | SdkCycle | str | None = None,
        name: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> SourceList:
        """``GET /v3/sources``: one page of source servers, filtered as given.

        ``state`` and ``migration_cycle`` are checked (an unknown one raises
        :class:`~sms_flow.errors.UnknownValueError`) and sent as the read side spells them;
        ``name`` matches part of a name.
        """
        if not isinstance(limit, int) or limit < 1:
            raise InvalidRequestError(f"limit is {limit!r}; give 1 or more (the default is 200)")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidRequestError(f"offset is {offset!r}; give 0 or more")
        query: dict[str, str] = {}
        if state is not None:
            query["state"] = _state_filter(state)
        if migration_cycle is not None:
            query["migration_cycle"] = _cycle_filter(migration_cycle)
        if name is not None:
            query["name"] = name
        query["limit"] = str(limit)
        query["offset"] = str(offset)
        path = SOURCES_PATH
        url = URL(self._base + path, encoded=True).with_query(query)
        answer = await self._call("GET", url, path, None, _GET_HEADERS, _Mode.IDEMPOTENT)
        try:
            return SourceList.model_validate_json(answer.body)
        except (ValueError, ValidationError):
            raise self._unusable("GET", path, answer, "a list of source servers") from None

    async def iter_sources(
        self,
        *,
        state: CopyState | str | None = None,
        migration_cycle: MigrationCycle | SdkCycle | str | None = None,
        name: str | None = None,
        page_size: int = 200,
    ) -> AsyncIterator[SourceServer]:
        """Every source server matching the filters, page by page, until ``count`` is reached."""
        offset = 0
        while True:
            page = await self.list_sources(
                state=state,
                migration_cycle=migration_cycle,
                name=name,
                limit=page_size,
                offset=offset,
            )
            for server in page.source_servers:
                yield server
            offset += len(page.source_servers)
            if not page.source_servers or offset >= page.count:
                return

    def read_sources(
        self, ids: Iterable[str], *, concurrency: int = 32
    ) -> AsyncIterator[tuple[str, SourceServer | None]]:
        """The sources ``ids`` as the service reports them: ``(id, source)`` pairs, streamed.

        ``None`` for a source the service does not know. By pages of the listing for more
        than 50 ids where listing is allowed (stopping once every id is found), else, and for
        what the listing did not show, one ``GET`` each, ``concurrency`` at a time; see
        :func:`read_sources`. For a dict: ``{i: s async for i, s in client.read_sources(ids)}``.
        """
        return read_sources(self, ids, concurrency=concurrency)

    async def register_source(self, name: str, **fields: Any) -> str:
        """``POST /v3/sources``: register a source server (as the agent does); its id.

        Not idempotent: retried only when the request surely was not processed (the
        connection was refused, or a 429), never after a timeout, a dropped connection or a
        5xx, which would risk registering it twice.
        """
        try:
            request = RegisterSourceRequest(name=name, **fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidRequestError(f"cannot register source {name!r}: {problems}") from None
        body = request.model_dump_json(exclude_none=True).encode()
        if len(body) > BODY_MAX_BYTES:
            raise InvalidRequestError(
                f"the registration of {truncate(name, 40)!r} is {len(body)} bytes; the API "
                f"refuses a body over {BODY_MAX_BYTES} bytes (SMS.2004)"
            )
        path = SOURCES_PATH
        url = URL(self._base + path, encoded=True)
        answer = await self._call("POST", url, path, body, _JSON_HEADERS, _Mode.NOT_SENT)
        try:
            raw = json.loads(answer.body)
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise self._unusable("POST", path, answer, 'an {"id": ...} object')
        source_id: str = raw["id"]
        return source_id

    def _unusable(self, method: str, path: str, answer: Answer, what: str) -> TransportError:
        # The body was redacted as it was read (see _attempt): no credential is left in it.
        shown = truncate(answer.body.decode("utf-8", "replace"), _SHOWN_DETAIL)
        rid = f", request_id {answer.request_id}" if answer.request_id else ""
        return TransportError(
            f"{method} {path}: HTTP {answer.status} from {self._base}, but the body is not "
            f"{what}{rid}: {shown!r}; check that the endpoint is the SMS API",
            attempts=answer.attempts,
        )

    # --- one call: attempts, and the decision to try again --------------------------------

    def _superseded(self, source_id: str | None, seq: int) -> bool:
        return source_id is not None and self._latest.get(source_id) != seq

    async def _call(
        self,
        method: str,
        url: URL,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        mode: _Mode,
        source_id: str | None = None,
        seq: int = 0,
    ) -> Answer:
        """Send one request, retrying per the policy; the answer of a 2xx, else raise."""
        session = self._session
        if session is None or session.closed:
            raise UsageError(
                "the SmsClient is not open, or its session was closed; use "
                "`async with SmsClient(...) as client:` (or `await client.open()`)"
            )
        deadline = time.monotonic() + self._retry.total_time
        attempt = 0
        maybe_applied = False
        while True:
            attempt += 1
            outcome = await self._attempt(
                session, method, url, path, body, headers, mode, attempt, deadline, source_id
            )
            if isinstance(outcome, Answer):
                return outcome
            # Whatever error ends the call speaks for every attempt it made.
            maybe_applied = maybe_applied or outcome.error.maybe_applied
            outcome.error.maybe_applied = maybe_applied
            delay = self._delay_or_raise(outcome, method, path, attempt, deadline, source_id, seq)
            await asyncio.sleep(delay)
            if self._superseded(source_id, seq):
                raise self._superseded_error(method, path, source_id, attempt)
            if outcome.cause is not None:  # always so: only those are retried
                self._retries[outcome.cause] += 1

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        mode: _Mode,
        attempt: int,
        deadline: float,
        source_id: str | None,
    ) -> Answer | _Failure:
        """One attempt, signed afresh: the answer of a 2xx, or what failed and if it may retry."""
        policy = self._retry
        remaining = deadline - time.monotonic()
        if remaining >= policy.timeout:
            timeout = self._timeout
            limit_s = policy.timeout
        else:
            limit_s = max(remaining, 0.001)
            timeout = aiohttp.ClientTimeout(total=limit_s)
        auth = self._auth
        sent = auth.sign(method, url, headers, body or b"") if auth is not None else headers
        redact = self._redact
        guard = send_guard()
        if guard is not None and method != "GET":
            guard()  # the last check before the request leaves (raises to stop it)
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=sent,
                timeout=timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                status = resp.status
                data = await _read_bounded(resp)
                if data is None:
                    return self._too_large(resp, method, path, attempt, sent)
                if 200 <= status < 300:
                    redact_answer = redact.bind(sent)
                    data = redact_answer(data)
                    request_id = resp.headers.get("X-Request-Id")
                    if request_id:
                        request_id = redact_answer(request_id)
                    if _log.enabled(logging.DEBUG):
                        _log.debug(
                            "sms.answer",
                            method=method,
                            path=path,
                            source_id=source_id,
                            attempt=attempt,
                            status=status,
                            request_id=request_id,
                        )
                    return Answer(status, data, request_id, attempt)
                error = api_error(
                    method=method,
                    path=path,
                    status=status,
                    headers=resp.headers,
                    data=data,
                    sent=sent,
                    attempt=attempt,
                    redactor=redact,
                )
        except TimeoutError:
            return self._transport_failure(
                RequestTimeoutError,
                f"{method} {path}: no answer from {self._base} within {limit_s:g} s "
                f"(after {_attempts(attempt)}); check the network path to the endpoint, "
                f"or raise RetryPolicy.timeout / total_time{_unsure(mode)}",
                attempt,
                retryable=mode is _Mode.IDEMPOTENT,
                reason="timeout",
                cause=_Cause.TIMEOUT,
                maybe_applied=True,
            )
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return self._transport_failure(
                ConnectError,
                f"{method} {path}: the TLS handshake with {self._base} failed "
                f"({_describe(exc, sent, redact)}); check the endpoint's certificate and ca_file "
                "(or the system CA store); verify_tls=False is for test endpoints only",
                attempt,
                retryable=False,
                reason="tls",
                cause=None,
                maybe_applied=False,  # the request is sent after the handshake
            )
        except aiohttp.ClientConnectorError as exc:
            return self._transport_failure(
                ConnectError,
                f"{method} {path}: cannot connect to {self._base} "
                f"({_describe(exc.os_error, sent, redact)}) "
                f"(after {_attempts(attempt)}); check the endpoint ({ENDPOINT_ENV} or "
                f"{REGION_ENV}), DNS, proxy and firewall",
                attempt,
                retryable=True,  # nothing was sent
                reason="connect failed",
                cause=_Cause.CONNECT,
                maybe_applied=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return self._transport_failure(
                ConnectError,
                f"{method} {path}: the connection to {self._base} broke before an "
                f"answer came ({_describe(exc, sent, redact)}) (after {_attempts(attempt)}); "
                f"check proxies and load balancers on the way, or retry later{_unsure(mode)}",
                attempt,
                retryable=mode is _Mode.IDEMPOTENT,
                reason="connection dropped",
                cause=_Cause.DROPPED,
                maybe_applied=True,
            )
        retryable = status in policy.retry_statuses and (mode is _Mode.IDEMPOTENT or status == 429)
        reason = f"HTTP {status} {error.error_code}" if error.error_code else f"HTTP {status}"
        cause = _Cause.THROTTLED if status == 429 else _Cause.SERVER if status >= 500 else None
        return _Failure(error, retryable, reason, error.request_id, cause)

    @staticmethod
    def _transport_failure(
        kind: type[TransportError],
        message: str,
        attempt: int,
        *,
        retryable: bool,
        reason: str,
        cause: _Cause | None,
        maybe_applied: bool,
    ) -> _Failure:
        error = kind(message, attempts=attempt, maybe_applied=maybe_applied)
        return _Failure(error, retryable, reason, None, cause)

    def _too_large(
        self,
        resp: aiohttp.ClientResponse,
        method: str,
        path: str,
        attempt: int,
        sent: Mapping[str, str],
    ) -> _Failure:
        """An answer over ANSWER_MAX_BYTES: its connection closed, the rest never read."""
        resp.close()
        status = resp.status
        request_id = resp.headers.get("X-Request-Id")
        if request_id:
            request_id = self._redact(request_id, sent)
        error = AnswerTooLargeError(
            limit=ANSWER_MAX_BYTES,
            endpoint=self._base,
            status=status,
            request_id=request_id,
            method=method,
            url=path,
            attempts=attempt,
            maybe_applied=200 <= status < 300 or status >= 500,
        )
        return _Failure(error, False, f"HTTP {status}, answer over {ANSWER_MAX_BYTES} bytes", None)

    def _delay_or_raise(
        self,
        failure: _Failure,
        method: str,
        path: str,
        attempt: int,
        deadline: float,
        source_id: str | None,
        seq: int,
    ) -> float:
        """After a failed attempt: the sleep before the next one, or raise.

        Raises the attempt's error when it may not be retried or a bound of the policy is
        reached, and :class:`~sms_flow.errors.SupersededError` when a newer change for the
        same source has started.
        """
        where = {"method": method, "path": path, "source_id": source_id, "attempt": attempt}
        _log.debug("sms.answer", **where, reason=failure.reason, request_id=failure.request_id)
        if not failure.retryable:
            raise failure.error
        error = failure.error
        delay, give_up = self._retry.decide(
            attempt,
            time_left=deadline - time.monotonic(),
            retry_after=error.retry_after if isinstance(error, ThrottledError) else None,
            rng=self._rng,
        )
        if give_up:
            _log.warning(
                "sms.give_up",
                **where,
                reason=failure.reason,
                request_id=failure.request_id,
                why=give_up,
            )
            raise error
        if self._superseded(source_id, seq):
            raise self._superseded_error(method, path, source_id, attempt)
        _log.info(
            "sms.retry",
            **where,
            reason=failure.reason,
            request_id=failure.request_id,
            delay=round(delay, 3),
        )
        return delay

    def _superseded_error(
        self, method: str, path: str, source_id: str | None, attempts: int
    ) -> SupersededError:
        _log.info("sms.superseded", method=method, path=path, source_id=source_id, attempt=attempts)
        return SupersededError(
            f"{method} {path}: stopped retrying source {source_id} after {_attempts(attempts)}: "
            "a newer change for the same source has started, and a retry must not overtake "
            "it; the newer call's outcome is the one to act on"
        )
