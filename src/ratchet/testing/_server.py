"""The scripted model server: an OpenAI-compatible endpoint that answers from a script.

The server is the only stand-in in ratchet's test strategy: agents talk to it
with the real ``openai`` client over real loopback HTTP, so everything between
the agent and the wire (client retries, timeouts, parsing, streaming) is
exercised exactly as in production.

Each chat-completion request consumes the next :class:`~ratchet.testing.Step`.
Like the fake model in openai-agents, the server fails loudly instead of
hanging or passing vacuously: a request beyond the script is answered with a
non-retryable HTTP 400 and recorded, and :meth:`ScriptedModelServer.verify`
raises for unexpected calls, failed expectations and unconsumed steps.

Example::

    from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

    with ScriptedModelServer([
        tool_calls(call("get_weather", {"city": "Oslo"})),
        reply("It is sunny in Oslo."),
    ]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...  # run the agent against `client`
        server.verify()

Streamed answers (``stream: true``) are sent as server-sent events like the
OpenAI API's; steps can pace them (``chunk_delay``, ``chunk_chars``) or stall
them mid-stream (``stall_after_chunks``), and the server records how many
chunks went out and whether the client hung up first
(:meth:`ScriptedModelServer.wait_for_disconnect`). ``streaming=False`` makes a
server that refuses ``stream`` like a provider without streaming.

This module decides what to answer (under one lock, so concurrent requests get
a consistent order); ``_wire`` shapes the JSON and ``_http`` serves it
from a daemon thread, so it serves sync tests, async tests and worker
subprocesses (over loopback) alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from ._http import ScriptedHTTPServer
from ._recording import Problem, RecordedRequest
from ._steps import Step, StepHandler, shorten
from ._wire import (
    Answer,
    completion_body,
    error_body,
    estimate_usage,
    mask_key,
    model_body,
    reject,
    wants_usage_chunk,
)

__all__ = ["ScriptedModelServer"]

_log = logging.getLogger(__name__)

_CHAT_PATH = "/v1/chat/completions"
# How often the serving loop checks for shutdown; small so stop() is quick.
_POLL_INTERVAL = 0.05


class ScriptedModelServer:
    """An OpenAI-compatible chat-completions server answering from a script.

    Endpoints: ``POST /v1/chat/completions`` (plain and ``stream: true``),
    ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``. It binds a
    free port on 127.0.0.1 and serves from a daemon thread. All methods are
    thread-safe.

    A streamed answer is a ``text/event-stream`` of ``chat.completion.chunk``
    objects ending with ``data: [DONE]`` (and a usage chunk before it when the
    request sets ``stream_options.include_usage``). While the server sends or
    holds an answer it notices a client that hangs up, and records it in
    :attr:`RecordedRequest.client_disconnected`.

    Each chat-completion request consumes the next scripted step; once the
    script is exhausted, ``handler`` (if given) computes the step. Without a
    handler, an extra request is answered with a non-retryable HTTP 400 and
    recorded as a failure. :meth:`stop` never raises so fixtures can always
    clean up; call :meth:`verify` to assert the script played out exactly.

    Args:
        steps: The script, consumed in order.
        handler: Computes a step for requests beyond the script. It is called
            under the server lock, one request at a time, so it need not be
            thread-safe but must be quick.
        expected_api_key: If set, requests whose bearer token differs are
            answered 401 ``invalid_api_key`` without consuming a step.
        model: Model id listed by ``GET /v1/models`` and echoed in responses
            when a request names no model.
        rpm_limit: Like a real provider, answer 429 (with ``Retry-After``) to a
            request that would exceed this many successful requests in any
            ``limit_window_seconds`` window. The step is not consumed.
        tpm_limit: Likewise for the tokens (prompt + completion) of successful requests.
        limit_window_seconds: The window of ``rpm_limit`` and ``tpm_limit`` (60 s
            like a real provider; scale it down in tests).
        streaming: ``False`` makes a provider that does not stream: a request
            with ``"stream": true`` is answered HTTP 400 with OpenAI's
            ``unsupported_parameter`` error (``param: "stream"``) without
            consuming a step, and recorded with ``rejected_stream`` set, so a
            client's plain retry gets the step.
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        handler: StepHandler | None = None,
        expected_api_key: str | None = None,
        model: str = "scripted-model",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        limit_window_seconds: float = 60.0,
        streaming: bool = True,
    ) -> None:
        self._handler = handler
        self._streaming = streaming
        self._rpm_limit = rpm_limit
        self._tpm_limit = tpm_limit
        self._limit_window = limit_window_seconds
        self._expected_api_key = expected_api_key
        self._model = model
        # RLock: user callbacks (handler/expect) run under the lock and may
        # legitimately read server state such as `requests`.
        self._cond = threading.Condition(threading.RLock())
        self._steps: deque[Step] = deque()
        self._total_steps = 0
        self._consumed = 0
        self._requests: list[RecordedRequest] = []
        self._problems: list[Problem] = []
        # Indexes of requests whose client hung up, in the order they did.
        self._disconnects: list[int] = []
        self._call_ids = 0
        # Set on stop() to release hanging/delayed requests immediately.
        self._stopping = threading.Event()
        self._httpd: ScriptedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add(*steps)

    # -- lifecycle ----------------------------------------------------------- #

    def start(self) -> Self:
        """Binds 127.0.0.1 on a free port and starts serving in a daemon thread.

        Returns:
            The server itself, for chaining.

        Raises:
            RuntimeError: If the server was already started.
        """
        with self._cond:
            if self._httpd is not None or self._stopping.is_set():
                raise RuntimeError("ScriptedModelServer can only be started once")
            self._httpd = ScriptedHTTPServer(
                ("127.0.0.1", 0), respond=self._answer, stopping=self._stopping
            )
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"ScriptedModelServer:{self.port}",
                daemon=True,
            )
            self._thread.start()
        _log.debug("ScriptedModelServer listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stops serving and drops open connections. Idempotent; never raises.

        Hanging or delayed requests are released and their connections closed
        without a response.
        """
        self._stopping.set()
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        try:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
            if thread is not None:
                thread.join(timeout=5)
        except Exception:  # stop() must never mask the test's own outcome
            _log.exception("error while stopping ScriptedModelServer")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: If the server is not started.
        """
        if self._httpd is None:
            raise RuntimeError("ScriptedModelServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The ``base_url`` for the openai client, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def expected_api_key(self) -> str | None:
        """The bearer token requests must carry, if the server checks one."""
        return self._expected_api_key

    # -- script -------------------------------------------------------------- #

    @property
    def handler(self) -> StepHandler | None:
        """Computes the step for requests beyond the script; settable while running."""
        return self._handler

    @handler.setter
    def handler(self, handler: StepHandler | None) -> None:
        with self._cond:
            self._handler = handler

    def add(self, *steps: Step) -> None:
        """Appends steps to the script; allowed while running.

        Args:
            *steps: Steps to append.

        Raises:
            TypeError: If something other than a :class:`Step` is given.
        """
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"expected a Step, got {step!r}")
        with self._cond:
            self._steps.extend(steps)
            self._total_steps += len(steps)

    @property
    def remaining(self) -> int:
        """Number of scripted steps not consumed yet."""
        with self._cond:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the chat-completion requests received so far, in order."""
        with self._cond:
            return list(self._requests)

    def peak_in_window(self, seconds: float, *, since: float = 0.0) -> tuple[int, int]:
        """The most successful requests, and the most tokens, any sliding window held.

        Windows of ``seconds`` are anchored at every request's arrival (where a
        sliding window's count can peak), over requests answered with HTTP 200
        that arrived at ``since`` (a ``time.time()``) or later.

        Returns:
            ``(requests, tokens)``: the peak of each (each from its own window).
        """
        ok = [
            (r.received_at, r.tokens)
            for r in self.requests
            if r.status == 200 and r.received_at >= since
        ]
        peak_requests = peak_tokens = 0
        for i, (start, _) in enumerate(ok):
            inside = [tokens for at, tokens in ok[i:] if at < start + seconds]
            peak_requests = max(peak_requests, len(inside))
            peak_tokens = max(peak_tokens, sum(inside))
        return peak_requests, peak_tokens

    @property
    def rate_limited(self) -> int:
        """How many requests were answered 429."""
        return sum(1 for r in self.requests if r.status == 429)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> RecordedRequest:
        """Blocks until at least ``n`` chat-completion requests have arrived.

        A request counts as soon as it is received, before it is answered, so
        this returns while e.g. a :func:`hang` step holds the call in flight.

        Args:
            n: Number of requests to wait for (1-based).
            timeout: Seconds to wait.

        Returns:
            The ``n``-th request.

        Raises:
            TimeoutError: If fewer than ``n`` requests arrive in time.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                got = len(self._requests)
                raise TimeoutError(
                    f"ScriptedModelServer: expected at least {n} chat-completion "
                    f"request(s) within {timeout}s, got {got}"
                )
            return self._requests[n - 1]

    async def wait_for_requests_async(
        self,
        n: int,
        timeout: float = 10.0,  # noqa: ASYNC109 - see docstring
    ) -> RecordedRequest:
        """Like :meth:`wait_for_requests`, without blocking the event loop.

        ``timeout`` is a parameter (rather than ``asyncio.timeout``) because the
        wait runs in a worker thread that cancellation cannot interrupt; the
        timeout bounds that thread too.

        Args:
            n: Number of requests to wait for (1-based).
            timeout: Seconds to wait.

        Returns:
            The ``n``-th request.

        Raises:
            TimeoutError: If fewer than ``n`` requests arrive in time.
        """
        return await asyncio.to_thread(self.wait_for_requests, n, timeout)

    def wait_for_disconnect(self, timeout: float = 10.0, *, n: int = 1) -> RecordedRequest:
        """Blocks until the client of ``n`` requests hung up before their answer was complete.

        A hang-up counts while the server sends or holds the answer: during its
        ``delay``, a :func:`hang`, a stream before ``data: [DONE]``, or a stall
        (``stall_after_chunks``). A stream read to its end does not count,
        whatever the client does with the connection afterwards.

        Args:
            timeout: Seconds to wait.
            n: Which hang-up to wait for (1-based, in the order they happened).

        Returns:
            The ``n``-th request whose client hung up, with its ``chunks_sent``.

        Raises:
            TimeoutError: If fewer than ``n`` clients hang up in time; the
                message lists what each request received.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._disconnects) >= n, timeout):
                seen = [self._describe_delivery(r) for r in self._requests]
                raise TimeoutError(
                    f"ScriptedModelServer: expected {n} client disconnect(s) within "
                    f"{timeout}s, saw {len(self._disconnects)}; requests: "
                    f"{'; '.join(seen) or 'none'}. A hang-up is only seen while the "
                    "answer is still being sent or held: pace the stream with "
                    "chunk_delay or stall it with stall_after_chunks."
                )
            return self._requests[self._disconnects[n - 1]]

    async def wait_for_disconnect_async(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109 - see wait_for_requests_async
        *,
        n: int = 1,
    ) -> RecordedRequest:
        """Like :meth:`wait_for_disconnect`, without blocking the event loop.

        Args:
            timeout: Seconds to wait.
            n: Which hang-up to wait for (1-based, in the order they happened).

        Returns:
            The ``n``-th request whose client hung up.

        Raises:
            TimeoutError: If fewer than ``n`` clients hang up in time.
        """
        return await asyncio.to_thread(functools.partial(self.wait_for_disconnect, timeout, n=n))

    def verify(self) -> None:
        """Asserts the script played out exactly.

        Raises:
            AssertionError: Listing unexpected calls, failed expectations,
                other rejected requests and unconsumed steps. It is chained
                to the first failed expectation's exception, if any.
        """
        with self._cond:
            problems = list(self._problems)
            unconsumed = list(self._steps)
        lines = [f"- {p.message}" for p in problems]
        if unconsumed:
            described = ", ".join(s.describe() for s in unconsumed)
            lines.append(f"- {len(unconsumed)} unconsumed step(s): {described}")
        if not lines:
            return
        cause = next((p.exc for p in problems if p.exc is not None), None)
        raise AssertionError("ScriptedModelServer.verify() failed:\n" + "\n".join(lines)) from cause

    # -- request handling (called from server threads) ------------------------ #

    def _record_delivery(self, index: int, chunks_sent: int, client_disconnected: bool) -> None:
        """Updates request ``index``'s record as its answer goes out (a :data:`DeliveryReport`)."""
        now = time.monotonic()
        with self._cond:
            record = self._requests[index]
            new_chunks = max(0, chunks_sent - len(record.chunk_times))
            self._requests[index] = dataclasses.replace(
                record,
                chunks_sent=chunks_sent,
                chunk_times=(*record.chunk_times, *(now,) * new_chunks),
                client_disconnected=client_disconnected,
            )
            if client_disconnected:
                self._disconnects.append(index)
            self._cond.notify_all()

    @staticmethod
    def _describe_delivery(request: RecordedRequest) -> str:
        """``#1 stream: 5 chunks sent`` and the like, for timeout messages."""
        what = "stream" if request.stream else "plain"
        if request.rejected_stream:
            return f"#{request.index + 1} stream: refused (streaming=False)"
        sent = f", {request.chunks_sent} chunk(s) sent" if request.stream else ""
        status = "held" if request.status is None else f"HTTP {request.status}"
        gone = ", client hung up" if request.client_disconnected else ""
        return f"#{request.index + 1} {what}: {status}{sent}{gone}"

    def _record_problem(self, message: str, exc: BaseException | None = None) -> None:
        with self._cond:
            self._problems.append(Problem(message, exc))

    def _check_api_key(self, headers: Mapping[str, str]) -> Answer | None:
        """Returns a 401 answer if ``expected_api_key`` is set and not matched."""
        if self._expected_api_key is None:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token == self._expected_api_key:
            return None
        message = (
            f"Incorrect API key provided: {mask_key(token)}."
            if token
            else "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return Answer(
            status=401,
            body=error_body(message, "invalid_request_error", "invalid_api_key"),
        )

    def _answer_chat(
        self, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> Answer:
        """Resolves a chat-completion request to an answer and records it.

        Everything (step selection, user callbacks, id assignment, recording)
        happens under one lock so concurrent requests get a consistent order
        and deterministic tool call ids.
        """
        try:
            parsed: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}

        with self._cond:
            request = RecordedRequest(
                index=len(self._requests),
                method=method,
                path=path,
                headers=headers,
                body=body,
                received_at=time.time(),
            )
            scripted_before = len(self._steps)
            # Refusals before the script: not script failures, and no step consumed.
            refused = self._check_api_key(headers)
            rejected_stream = refused is None and request.stream and not self._streaming
            if rejected_stream:
                refused = _refuse_stream()
            if refused is not None:
                answer, step, problem = refused, None, None
            else:
                answer, step, problem = self._resolve(request, parsed)
            if step is not None and answer.status == 200 and answer.body is not None:
                over = self._over_limit(request.received_at, answer.body)
                if over is not None:
                    if len(self._steps) < scripted_before:
                        self._steps.appendleft(step)  # not consumed: the retry gets it
                    self._consumed -= 1
                    answer, step = over, None
            if problem is not None:
                self._problems.append(problem)
            self._requests.append(
                dataclasses.replace(
                    request,
                    step=step,
                    status=None if answer.hang else answer.status,
                    response=answer.body,
                    error=problem.message if problem is not None else None,
                    rejected_stream=rejected_stream,
                )
            )
            self._cond.notify_all()
        return dataclasses.replace(
            answer, report=functools.partial(self._record_delivery, request.index)
        )

    def _over_limit(self, now: float, body: Mapping[str, Any]) -> Answer | None:
        """A 429 if answering would break ``rpm_limit``/``tpm_limit``. Caller holds the lock."""
        if self._rpm_limit is None and self._tpm_limit is None:
            return None
        usage = body.get("usage")
        tokens = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
        start = now - self._limit_window
        inside = [r for r in self._requests if r.status == 200 and r.received_at > start]
        over_requests = self._rpm_limit is not None and len(inside) + 1 > self._rpm_limit
        used = sum(r.tokens for r in inside)
        over_tokens = self._tpm_limit is not None and used + tokens > self._tpm_limit
        if not (over_requests or over_tokens):
            return None
        # Retry once enough of the window has passed (whole seconds, as providers send).
        what = "requests" if over_requests else "tokens"
        free_at, count, left = now, len(inside), used
        for r in inside:
            if (self._rpm_limit is None or count + 1 <= self._rpm_limit) and (
                self._tpm_limit is None or left + tokens <= self._tpm_limit
            ):
                break
            free_at = r.received_at + self._limit_window
            count, left = count - 1, left - r.tokens
        retry_after = max(1, math.ceil(free_at - now))
        return Answer(
            status=429,
            body=error_body(
                f"Rate limit reached for {what} per {self._limit_window:g} s "
                f"(ScriptedModelServer rpm_limit={self._rpm_limit}, tpm_limit={self._tpm_limit}).",
                what,
                "rate_limit_exceeded",
            ),
            headers=(("Retry-After", str(retry_after)),),
        )

    def _resolve(
        self, request: RecordedRequest, parsed: Any
    ) -> tuple[Answer, Step | None, Problem | None]:
        """Picks the step for ``request`` and renders the answer. Caller holds the lock."""
        if not isinstance(parsed, dict):
            msg = f"ScriptedModelServer: request #{request.index + 1} body is not a JSON object"
            return (
                reject(400, msg, "invalid_body", error_type="invalid_request_error"),
                None,
                Problem(msg),
            )

        self._consumed += 1
        call_no = self._consumed
        if self._steps:
            step = self._steps.popleft()
        elif self._handler is not None:
            try:
                step = self._handler(request)
                if not isinstance(step, Step):
                    raise TypeError(f"handler returned {step!r}, not a Step")
            except Exception as exc:
                msg = f"ScriptedModelServer: handler failed on call #{call_no}: {exc!r}"
                return (
                    reject(400, msg, "handler_failed", error_type="server_error"),
                    None,
                    Problem(msg, exc),
                )
        else:
            msg = (
                f"ScriptedModelServer: unexpected call #{call_no}; "
                f"the script had {self._total_steps} steps"
            )
            last = request.last_message
            detail = f"{msg} (last message: {shorten(json.dumps(last), 120)})" if last else msg
            return (
                reject(400, msg, "unexpected_call", error_type="invalid_request_error"),
                None,
                Problem(detail),
            )

        if step.expect is not None:
            failure: BaseException | None = None
            try:
                if step.expect(dataclasses.replace(request, step=step)) is False:
                    failure = AssertionError("expectation returned False")
            except Exception as exc:
                failure = exc
            if failure is not None:
                reason = str(failure) or type(failure).__name__
                msg = (
                    f"ScriptedModelServer: expectation failed on call #{call_no} "
                    f"({step.describe()}): {reason}"
                )
                return (
                    reject(400, msg, "expectation_failed", error_type="invalid_request_error"),
                    step,
                    Problem(msg, failure),
                )

        return self._render(step, request), step, None

    def _render(self, step: Step, request: RecordedRequest) -> Answer:
        """Builds the wire answer for a successful step match. Caller holds the lock."""
        if step.kind == "hang":
            return Answer(hang=True, hang_seconds=step.hang_seconds, delay=step.delay)
        if step.kind == "raw":
            return Answer(
                status=step.status,
                raw=step.raw_body,
                content_type=step.content_type,
                headers=step.headers,
                delay=step.delay,
            )
        if step.kind == "error":
            return Answer(
                status=step.status,
                body=error_body(
                    step.error_message or "", step.error_type, step.error_code, step.error_param
                ),
                headers=step.headers,
                delay=step.delay,
            )
        if step.stall_after_chunks is not None and not request.stream:
            # The model never finishes this answer; unstreamed, nothing of it shows.
            return Answer(hang=True, hang_seconds=step.hang_seconds, delay=step.delay)
        call_ids = []
        for tc in step.tool_calls:
            if tc.id is None:
                self._call_ids += 1
            call_ids.append(tc.id if tc.id is not None else f"call_{self._call_ids}")
        completion = completion_body(
            step,
            completion_id=f"chatcmpl-scripted{request.index + 1}",
            model=request.model or self._model,
            tool_call_ids=call_ids,
            usage=step.usage if step.usage is not None else estimate_usage(request.body, step),
        )
        return Answer(
            body=completion,
            headers=step.headers,
            delay=step.delay,
            stream=request.stream,
            include_usage=wants_usage_chunk(request.body),
            chunk_delay=step.chunk_delay,
            chunk_chars=step.chunk_chars,
            stall_after_chunks=step.stall_after_chunks,
            hang_seconds=step.hang_seconds,
        )

    def _answer(self, method: str, path: str, headers: dict[str, str], raw_body: bytes) -> Answer:
        """Routes one HTTP request to its answer (called from the HTTP layer's threads)."""
        if method == "GET":
            return self._answer_get(path, headers)
        if path.rstrip("/") == _CHAT_PATH:
            return self._answer_chat(method, path, headers, raw_body)
        rejected = self._check_api_key(headers)
        return rejected if rejected is not None else self._not_found(method, path)

    def _answer_get(self, path: str, headers: Mapping[str, str]) -> Answer:
        if path == "/health":
            return Answer(body={"status": "ok"})
        rejected = self._check_api_key(headers)
        if rejected is not None:
            return rejected
        model = model_body(self._model)
        if path == "/v1/models":
            return Answer(body={"object": "list", "data": [model]})
        if path == f"/v1/models/{self._model}":
            return Answer(body=model)
        return self._not_found("GET", path)

    def _not_found(self, method: str, path: str) -> Answer:
        # Recorded as a problem: code under test calling e.g. the Responses API
        # instead of chat completions is a bug the test should report.
        msg = f"ScriptedModelServer: unknown request URL: {method} {path}"
        self._record_problem(msg)
        return Answer(status=404, body=error_body(msg, "invalid_request_error", "unknown_url"))

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "not started"
        return (
            f"<ScriptedModelServer {where} steps={self._total_steps} "
            f"remaining={self.remaining} requests={len(self.requests)}>"
        )


def _refuse_stream() -> Answer:
    """What an OpenAI-compatible server without streaming answers ``"stream": true``."""
    return Answer(
        status=400,
        body=error_body(
            "Unrecognized request argument supplied: stream",
            "invalid_request_error",
            "unsupported_parameter",
            param="stream",
        ),
    )
