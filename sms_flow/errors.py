"""Every exception sms-flow raises, drawn in one place.

::

    SmsFlowError
    ├── InputError (ValueError)         bad input from a user or caller; nothing was sent
    │   ├── UnknownValueError           a copystate, cycle or state not known
    │   ├── InvalidRequestError         breaks a documented limit (empty change, source_id, body size)
    │   └── ConfigError                 credentials, endpoint, wave or drill file not usable
    ├── ChartError                      a statechart file that does not load or is inconsistent
    ├── JournalError                    the journal cannot do what was asked (misuse, SQLite
    │                                   failure, a file deleted, replaced or damaged)
    ├── OwnedError                      another live driver owns the wave or source (carries the owner)
    │   ├── ClaimLostError              a source this run drove was taken over, or its claim lapsed
    │   └── LeaseLostError              this run's lease expired or it was taken over: it pushes nothing more
    ├── TransitionRejected              the local chart refuses the change (carries the verdict)
    ├── NotAppliedError                 the service answered, but the change did not take
    │   ├── IgnoredByServiceError       the source is in a state where the service ignores changestate
    │   ├── ReadBackMismatchError       reading the source back shows another state
    │   ├── ConflictError               before the push the source was not where the step starts; not sent
    │   ├── WaitTimeoutError            the service did not make an awaited move in time
    │   └── ActionNeededError           the next move is made by another API call (carries what to call)
    ├── UnverifiedError                 pushed, and nothing proves whether it landed (journalled unverified)
    ├── SupersededError                 a retry stopped: a newer change for the same source began
    ├── UsageError (RuntimeError)       an object used out of order (a client that is not open)
    ├── SignatureError                  an AK/SK signature does not verify (the verifier's verdict)
    ├── TransportError                  no usable HTTP answer
    │   ├── ConnectError                connection refused, reset or dropped
    │   └── RequestTimeoutError         no answer in time
    └── ApiError                        the service answered with an HTTP error
        ├── AuthError                   401 or 403 (bad token, bad signature, no permission)
        ├── NotFoundError               404 (unknown source)
        ├── ThrottledError              429 (API gateway throttling; carries retry_after)
        ├── ServerError                 5xx
        └── AnswerTooLargeError         an answer over the client's cap (wire.ANSWER_MAX_BYTES)

    WaitInterrupted (BaseException)     a wait cut short because the run is stopping

``WaitInterrupted`` is not an :class:`SmsFlowError`, and not even an :class:`Exception`: like
a cancellation it passes through ``except Exception``, and code that cleans up after a
cancelled step does the same for it (the engine leaves the step's journal intent open, to be
settled by reading the source back). It is not :class:`asyncio.CancelledError` itself, so
that this module imports no asyncio (``sms-flow check`` loads none).

Every message says what was wrong, with the offending value, and what to do. No message,
``repr`` or attribute shown by default ever holds a token, a secret key or a signature.

:class:`TransportError` and :class:`ApiError` carry ``maybe_applied``: whether any attempt of
the call may have been processed by the service (a 5xx answer, a timeout, a connection dropped
after the request was sent), or every attempt surely was not (the connection refused, a 4xx
other than 429, a 429 from the gateway). After a failed push, ``maybe_applied`` says whether
the source must be read back before the outcome is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sms_flow.journal import Run
    from sms_flow.planner import Verdict

__all__ = [
    "ActionNeededError",
    "AnswerTooLargeError",
    "ApiError",
    "AuthError",
    "ChartError",
    "ClaimLostError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "IgnoredByServiceError",
    "InputError",
    "InvalidRequestError",
    "JournalError",
    "LeaseLostError",
    "NotAppliedError",
    "NotFoundError",
    "OwnedError",
    "ReadBackMismatchError",
    "RequestTimeoutError",
    "ServerError",
    "SignatureError",
    "SmsFlowError",
    "SupersededError",
    "ThrottledError",
    "TransitionRejected",
    "TransportError",
    "UnknownValueError",
    "UnverifiedError",
    "UsageError",
    "WaitInterrupted",
    "WaitTimeoutError",
]

_SHOWN_BODY = 300


def truncate(text: str, limit: int = _SHOWN_BODY) -> str:
    """Shorten ``text`` for a message, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` naming the closest of ``choices`` to ``word`` (difflib,
    ignoring case), or ``""`` when none is close; for a message about a mistyped value."""
    import difflib  # only when a message needs it: sms-flow check starts without it

    by_folded = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(word.casefold(), by_folded, n=1, cutoff=0.6)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""


class SmsFlowError(Exception):
    """The root of every error sms-flow raises."""


class InputError(SmsFlowError, ValueError):
    """Input from a user or a caller is not usable; nothing was sent."""


class UnknownValueError(InputError):
    """A copystate, migration cycle or state that sms-flow does not know."""

    def __init__(self, field: str, value: str, valid: str, *, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.valid = valid
        super().__init__(f"unknown {field} {value!r}{hint}; valid: {valid}")


class InvalidRequestError(InputError):
    """A request that breaks a documented limit of the API; ``field`` names the part, if known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class ConfigError(InputError):
    """Configuration that cannot be used: credentials, endpoint, wave or drill file."""


class ChartError(SmsFlowError):
    """A statechart that does not load or is inconsistent.

    ``source`` is the file (or ``<string>``); ``problems`` lists each offending entry, such as
    ``transitions[3] (trigger 'start')``, with what is wrong with it. ``entry`` and
    ``problem`` are the first of them.
    """

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems) or [("", "the chart is not usable")]
        self.entry, self.problem = self.problems[0]
        lines = [
            f"{source}: {entry}: {problem}" if entry else f"{source}: {problem}"
            for entry, problem in self.problems
        ]
        if len(lines) > 1:
            lines.insert(0, f"{source}: {len(lines)} problems")
        super().__init__("\n".join(lines))


class JournalError(SmsFlowError):
    """The journal cannot do what was asked: a caller's mistake or an I/O failure.

    Raised for settling an unknown or already settled entry, for use before ``open`` or
    after ``close``, (wrapping the :mod:`sqlite3` error) when SQLite fails, for a journal
    file deleted or replaced while open (every later call fails: nothing more may be pushed
    unrecorded), and for a file whose pages are damaged.
    """


class OwnedError(SmsFlowError):
    """Another live driver owns what was asked for: a wave (a second run of it), or a source.

    ``owner`` is the journal's record of that driver (:class:`~sms_flow.journal.Run`: kind,
    name, host, pid, actor, when it started, its last heartbeat), or ``None`` when the
    journal no longer knows it. The message names it and says what to do.
    """

    def __init__(self, message: str, *, owner: Run | None = None) -> None:
        self.owner = owner
        super().__init__(message)


class ClaimLostError(OwnedError):
    """A source this run was driving is no longer its own: taken over (``set --force``) or lapsed.

    Nothing was written or pushed for it; the run stops driving that source. ``owner`` is
    the run that holds it now (with the reason it gave, in ``reason``), when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        source_id: str,
        owner: Run | None = None,
        reason: str | None = None,
    ) -> None:
        self.source_id = source_id
        self.reason = reason
        super().__init__(message, owner=owner)


class LeaseLostError(OwnedError):
    """This run's lease on the journal expired (a long pause) or it was taken over.

    A run whose lease lapsed may already have been replaced by another: it pushes nothing
    more and stops. Run it again to resume (a new run settles what this one left open).
    """


class TransitionRejected(SmsFlowError):
    """The local statechart refuses the requested change; nothing was sent.

    ``verdict`` holds every reason and, when one exists, the shortest legal path.
    """

    def __init__(self, source_id: str | None, verdict: Verdict) -> None:
        self.source_id = source_id
        self.verdict = verdict
        who = f"source {source_id}: " if source_id else ""
        super().__init__(f"{who}{verdict.explain()}")


class NotAppliedError(SmsFlowError):
    """The service answered, but the change did not take; the local state is unchanged."""

    def __init__(self, message: str, *, source_id: str, request_id: str | None = None) -> None:
        self.source_id = source_id
        self.request_id = request_id
        super().__init__(message)


class IgnoredByServiceError(NotAppliedError):
    """The source is in a state in which the service ignores changestate (it answers 200)."""


class ReadBackMismatchError(NotAppliedError):
    """Reading the source back after a push shows a state other than the one pushed."""

    def __init__(
        self,
        message: str,
        *,
        source_id: str,
        expected: str,
        observed: str,
        request_id: str | None = None,
    ) -> None:
        self.expected = expected
        self.observed = observed
        super().__init__(message, source_id=source_id, request_id=request_id)


class ConflictError(NotAppliedError):
    """Looking before the push, the source was not in the state the step starts from; not sent.

    Someone else moved it (``observed``) since the engine last knew it (``expected``); the
    step is journalled as a conflict and the source is left as it is.
    """

    def __init__(
        self,
        message: str,
        *,
        source_id: str,
        expected: str,
        observed: str,
    ) -> None:
        self.expected = expected
        self.observed = observed
        super().__init__(message, source_id=source_id)


class UnverifiedError(SmsFlowError):
    """A push may have landed, but nothing proves it either way.

    The service answered 2xx and reading the source back failed, or the push failed in a way
    that may have been carried out (a 5xx, a timeout, a dropped connection) and reading it
    back failed too. The journal keeps the entry open as ``unverified``; the next read of
    the source settles it (the next step, a wait, recovery, ``sms-flow recover``).
    ``entry_id`` is that entry (``None`` without a journal).
    """

    def __init__(self, message: str, *, source_id: str, entry_id: int | None = None) -> None:
        self.source_id = source_id
        self.entry_id = entry_id
        super().__init__(message)


class WaitTimeoutError(NotAppliedError):
    """The service did not make a move sms-flow waits for (a ``by: service`` edge) in time."""


class ActionNeededError(NotAppliedError):
    """The next move is made by the service when another API is called (a ``by: action`` edge).

    Raised at once instead of waiting, when the caller did not ask to wait for such moves:
    ``trigger`` is the move, ``state`` where the source is, ``call`` what makes the move (the
    chart's ``call``, ``None`` when the chart does not say). Nothing was sent.
    """

    def __init__(
        self, message: str, *, source_id: str, trigger: str, state: str, call: str | None
    ) -> None:
        self.trigger = trigger
        self.state = state
        self.call = call
        super().__init__(message, source_id=source_id)


class SupersededError(SmsFlowError):
    """A retry was abandoned because a newer change for the same source has started."""


class UsageError(SmsFlowError, RuntimeError):
    """An object was used out of order; nothing was sent.

    Raised for an :class:`~sms_flow.client.SmsClient` that is not open, or whose session was
    closed; the message says what to call first. It is a :class:`RuntimeError` too, as it
    was before it had a class of its own.
    """


class SignatureError(SmsFlowError):
    """A request's AK/SK signature does not verify (a server-side verdict).

    Raised by the verifier (the simulator answers it with a 403). ``reason`` is short, fixed
    wording that is safe to log and to return to the caller, such as ``"signature
    mismatch"``; ``detail`` may add what exactly was wrong. Neither ever holds an SK, the
    received signature or the expected one.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class TransportError(SmsFlowError):
    """No usable HTTP answer came back (after every permitted retry).

    ``attempts`` is how many attempts the call made. ``maybe_applied`` is True unless every
    attempt surely was not processed (see the module docstring); the client sets it for the
    whole call, so a call whose first attempt timed out and whose last was refused says True.
    """

    def __init__(self, message: str, *, attempts: int = 1, maybe_applied: bool = True) -> None:
        self.attempts = attempts
        self.maybe_applied = maybe_applied
        super().__init__(message)


class ConnectError(TransportError):
    """The connection was refused, reset or dropped.

    Refused (nothing was sent): ``maybe_applied`` False; dropped once the request may have been
    sent: True.
    """


class RequestTimeoutError(TransportError):
    """No answer came back in time."""


class ApiError(SmsFlowError):
    """The service answered with an HTTP error.

    Carries everything the documented error body holds, plus the ``X-Request-Id`` that
    Huawei support asks for. ``body`` is the raw answer, truncated, credentials removed.
    ``maybe_applied`` (see the module docstring) defaults to True for a 5xx and False for any
    other status; the client sets it for the whole call (True when any attempt may have been
    processed, so a 429 after a 503 says True).
    """

    def __init__(
        self,
        *,
        status: int,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
        error_param: Sequence[str] | None = None,
        details: Sequence[dict[str, Any]] | None = None,
        encoded_authorization_message: str | None = None,
        body: str = "",
        method: str = "",
        url: str = "",
        attempts: int = 1,
        maybe_applied: bool | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.error_param = list(error_param or [])
        self.details = list(details or [])
        self.encoded_authorization_message = encoded_authorization_message
        self.body = truncate(body)
        self.method = method
        self.url = url
        self.attempts = attempts
        self.maybe_applied = status >= 500 if maybe_applied is None else maybe_applied
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.method and self.url:
            parts[0] = f"{self.method} {self.url}: HTTP {self.status}"
        if self.error_code:
            parts.append(self.error_code)
        if self.error_msg:
            parts.append(truncate(self.error_msg))
        elif self.body:
            parts.append(f"body: {self.body}")
        if self.error_param:
            parts.append(f"error_param: {', '.join(truncate(p, 80) for p in self.error_param)}")
        if self.request_id:
            parts.append(f"request_id {self.request_id}")
        hint = self.hint()
        if hint:
            parts.append(hint)
        return " · ".join(parts)

    def hint(self) -> str:
        """What to do about it, where something useful can be said."""
        return ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, error_code={self.error_code!r}, "
            f"request_id={self.request_id!r})"
        )


class AuthError(ApiError):
    """401 or 403: the token or the AK/SK signature was refused, or permission is missing."""

    def hint(self) -> str:
        return (
            "check the credentials (SMS_FLOW_TOKEN, or CLOUD_SDK_AK/CLOUD_SDK_SK/"
            "CLOUD_SDK_PROJECT_ID), the machine's clock, and the account's SMS permissions"
        )


class NotFoundError(ApiError):
    """404: the service does not know this source server (or path)."""

    def hint(self) -> str:
        return "check the source_id (sms-flow get SOURCE_ID, or GET /v3/sources)"


class ThrottledError(ApiError):
    """429: the API gateway throttled the call (``APIG.0308``)."""

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)

    def hint(self) -> str:
        return "lower the request rate (rate_limit in the wave file) or retry later"


class ServerError(ApiError):
    """5xx: the service failed; safe to retry later."""


class AnswerTooLargeError(ApiError):
    """An answer larger than the client reads (:data:`sms_flow.wire.ANSWER_MAX_BYTES`).

    ``limit`` is the cap in bytes, ``endpoint`` the service that sent it. The size is counted
    after decompression; the client stops reading at the cap, so the answer is never held
    whole. ``maybe_applied`` is True when the status was a 2xx or a 5xx.
    """

    def __init__(self, *, limit: int, endpoint: str, **kwargs: Any) -> None:
        self.limit = limit
        self.endpoint = endpoint
        super().__init__(**kwargs)

    def _message(self) -> str:
        where = f"{self.method} {self.url}: " if self.method and self.url else ""
        rid = f" · request_id {self.request_id}" if self.request_id else ""
        return (
            f"{where}the answer from {self.endpoint} (HTTP {self.status}) is over "
            f"{self.limit:,} bytes, the most sms-flow reads of one answer (SMS answers are far "
            f"smaller: a page of 200 source servers is under 1 MiB); it was not read further{rid}"
            f" · {self.hint()}"
        )

    def hint(self) -> str:
        return (
            "check that the endpoint is the SMS API and not a proxy or another service "
            "(SMS_FLOW_ENDPOINT, SMS_FLOW_REGION, --endpoint)"
        )


class WaitInterrupted(BaseException):
    """A wait (for a rate-limit slot) ended early because the run is stopping; nothing was
    sent by the call that waited. Like a cancellation (see the module docstring): the step it
    belongs to ends as if cancelled, and the next run takes the source on from its state.
    """
