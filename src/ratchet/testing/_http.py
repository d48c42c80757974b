"""The HTTP layer of the scripted server: a threading HTTP/1.1 server on loopback.

It knows nothing about scripts: each request is handed to a ``respond`` callable
that returns an :class:`~ratchet.testing._wire.Answer`, which is then delivered
as JSON, as a server-sent event stream (paced, or stalled mid-stream), after a
delay, or not at all (a hang). While it holds an answer (a delay, a hang, a
pause between chunks, a stall) it watches the socket, so a client that hangs up
is noticed at once and reported to the answer's ``report`` callable. Only the
standard library is used, and it serves from daemon threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from ._wire import Answer, DeliveryReport, stream_chunks

__all__ = ["Responder", "ScriptedHTTPServer", "ScriptedRequestHandler"]

_log = logging.getLogger(__name__)

# How often a held answer re-checks for stop(); stop() also wakes it at once by
# shutting the socket down, so this only bounds the worst case.
_WATCH_INTERVAL = 0.05

_Held = Literal["elapsed", "stopped", "gone"]
"""How holding an answer ended: time is up, the server stops, or the client hung up."""

_LAST_CHUNK = b"0\r\n\r\n"


def _ignore_report(chunks_sent: int, client_disconnected: bool) -> None:
    pass


Responder = Callable[[str, str, dict[str, str], bytes], Answer]
"""Answers ``(method, path, headers, body)``; headers are lower-cased."""


class ScriptedHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that can drop its open keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5; bursts of concurrent clients
    # (many agent runs at once) would overflow it and get their connections reset.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], *, respond: Responder, stopping: threading.Event
    ) -> None:
        self.respond = respond
        # Set when the owner stops: releases hanging and delayed answers at once.
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, ScriptedRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shuts down all open client connections.

        Without this, handler threads parked on idle keep-alive connections
        (the openai client pools them) would outlive ``stop()``.
        """
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-request (timeouts, killed workers) are normal in
        # these tests; don't spray tracebacks over stderr.
        _log.debug("ScriptedModelServer connection error from %s", client_address, exc_info=True)


class ScriptedRequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like the real API, so client connection pooling is exercised.
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedModelServer/1.0"
    # Small writes (headers, then body; one SSE chunk at a time) must leave at
    # once: with Nagle's algorithm on, each could wait for the client's delayed
    # ACK (40 ms on Linux) and a paced stream would not keep its rate.
    disable_nagle_algorithm = True

    # Watches the client's socket while an answer is held; made on first use.
    _watch: selectors.BaseSelector | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._watch is not None:
                self._watch.close()

    @property
    def _server(self) -> ScriptedHTTPServer:
        return cast(ScriptedHTTPServer, self.server)

    def _headers_dict(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the blank line ending the body.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self._deliver(self._server.respond("GET", path, self._headers_dict(), b""))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        # Always drain the body so the keep-alive connection stays in sync.
        raw = self._read_body()
        self._deliver(self._server.respond("POST", path, self._headers_dict(), raw))

    def _deliver(self, answer: Answer) -> None:
        report = answer.report or _ignore_report
        try:
            if answer.delay > 0:
                held = self._hold(answer.delay)
                if held != "elapsed":
                    self._abandon(held, report, chunks_sent=0)  # no answer at all
                    return
            if answer.hang:
                # Close without writing a byte: the client sees the server vanish.
                self._abandon(self._hold(answer.hang_seconds), report, chunks_sent=0)
                return
            if answer.raw is not None:
                self._send_raw(answer)
            elif answer.stream and answer.status == 200 and answer.body is not None:
                self._send_stream(answer, report)
            else:
                self._send_json(answer)
        except ConnectionError:
            # The client gave up (timeout, killed worker) before its answer was out.
            self._abandon(self._gone_or_stopped(), report, chunks_sent=0)

    def _hold(self, seconds: float | None) -> _Held:
        """Waits ``seconds`` (``None``: until stop) while watching for the client to hang up.

        The socket turns readable when the client closes it; a zero-byte peek
        then tells a hang-up from bytes of a next (pipelined) request.
        """
        stopping = self._server.stopping
        deadline = None if seconds is None else time.monotonic() + seconds
        if self._watch is None:
            self._watch = selectors.DefaultSelector()
            self._watch.register(self.connection, selectors.EVENT_READ)
        while True:
            if stopping.is_set():
                return "stopped"
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return "elapsed"
            interval = _WATCH_INTERVAL if left is None else min(_WATCH_INTERVAL, left)
            if not self._watch.select(interval):
                continue
            if stopping.is_set():  # stop() shut the socket down: not the client's doing
                return "stopped"
            try:
                peeked = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return self._gone_or_stopped()
            if not peeked:
                return "gone"
            # The client is sending more; it is still there. Don't spin on it.
            stopping.wait(interval)

    def _gone_or_stopped(self) -> _Held:
        # A write fails both when the client hung up and when stop() shut the
        # socket down; only the first is the client's doing.
        return "stopped" if self._server.stopping.is_set() else "gone"

    def _abandon(self, held: _Held, report: DeliveryReport, *, chunks_sent: int) -> None:
        """Ends an answer that will not be finished; closes the connection."""
        self.close_connection = True
        if held == "gone":
            report(chunks_sent, True)

    def _send_json(self, answer: Answer) -> None:
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_raw(self, answer: Answer) -> None:
        assert answer.raw is not None
        self.send_response(answer.status)
        self._send_common_headers(answer)
        self.send_header("Content-Type", answer.content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(answer.raw)))
        self.end_headers()
        self.wfile.write(answer.raw)

    def _send_stream(self, answer: Answer, report: DeliveryReport) -> None:
        """Sends the answer as server-sent events, paced and possibly stalled.

        ``report`` is told each chunk sent and, if the client hangs up before
        ``data: [DONE]`` is out, the disconnect.
        """
        assert answer.body is not None
        self.send_response(200)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = stream_chunks(answer.body, answer.include_usage, answer.chunk_chars)
        stall = answer.stall_after_chunks
        if stall is not None:
            chunks = chunks[: stall + 1]  # the role chunk and `stall` more
        sent = 0
        try:
            for chunk in chunks:
                if sent > 0 and answer.chunk_delay > 0:
                    held = self._hold(answer.chunk_delay)
                    if held != "elapsed":
                        self._abandon(held, report, chunks_sent=sent)
                        return
                self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                sent += 1
                report(sent, False)
            if stall is not None:
                # Close unfinished (no [DONE], no last chunk) when the stall ends.
                self._abandon(self._hold(answer.hang_seconds), report, chunks_sent=sent)
                return
            # [DONE] and the last chunk in one write: once they are out the stream
            # is complete, whatever the client does with the connection next.
            self._write_chunk(b"data: [DONE]\n\n", _LAST_CHUNK)
        except ConnectionError:
            self._abandon(self._gone_or_stopped(), report, chunks_sent=sent)

    def _write_chunk(self, data: bytes, tail: bytes = b"") -> None:
        """Writes ``data`` as one HTTP chunk (then ``tail``) and flushes it."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" + tail)
        self.wfile.flush()

    def _send_common_headers(self, answer: Answer) -> None:
        names = {name.lower() for name, _ in answer.headers}
        if "x-request-id" not in names:
            body_id = (answer.body or {}).get("id")
            self.send_header("x-request-id", f"req_{body_id or 'scripted'}")
        for name, value in answer.headers:
            self.send_header(name, value)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("ScriptedModelServer: " + format, *args)
