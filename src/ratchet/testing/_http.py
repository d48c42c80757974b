"""The HTTP layer of the scripted server: a threading HTTP/1.1 server on loopback.

It knows nothing about scripts: each request is handed to a ``respond`` callable
that returns an :class:`~ratchet.testing._wire.Answer`, which is then delivered
as JSON, as a server-sent event stream, after a delay, or not at all (a hang).
Only the standard library is used, and it serves from daemon threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from ._wire import Answer, stream_chunks

__all__ = ["Responder", "ScriptedHTTPServer", "ScriptedRequestHandler"]

_log = logging.getLogger(__name__)

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
        stopping = self._server.stopping
        try:
            if answer.delay > 0 and stopping.wait(answer.delay):
                self.close_connection = True  # stopped while delaying: no answer
                return
            if answer.hang:
                stopping.wait(answer.hang_seconds)
                # Close without writing a byte: the client sees the server vanish.
                self.close_connection = True
                return
            if answer.stream and answer.status == 200 and answer.body is not None:
                self._send_stream(answer)
            else:
                self._send_json(answer)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout, killed worker); nothing to answer.
            self.close_connection = True

    def _send_json(self, answer: Answer) -> None:
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_stream(self, answer: Answer) -> None:
        assert answer.body is not None
        self.send_response(200)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [
            f"data: {json.dumps(c)}\n\n" for c in stream_chunks(answer.body, answer.include_usage)
        ]
        events.append("data: [DONE]\n\n")
        for event in events:
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _send_common_headers(self, answer: Answer) -> None:
        names = {name.lower() for name, _ in answer.headers}
        if "x-request-id" not in names:
            body_id = (answer.body or {}).get("id")
            self.send_header("x-request-id", f"req_{body_id or 'scripted'}")
        for name, value in answer.headers:
            self.send_header(name, value)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("ScriptedModelServer: " + format, *args)
