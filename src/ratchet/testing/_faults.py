"""A TCP fault proxy: put it between two processes and break the network on purpose.

:class:`FaultProxy` listens on a free port of 127.0.0.1 and forwards every connection
to a target (the Temporal server, a model server). While it runs, a test injects
faults into the link and takes them back:

- :meth:`FaultProxy.latency` delays every chunk of bytes, in each direction;
- :meth:`FaultProxy.reset` resets every open connection (TCP RST to both ends);
- :meth:`FaultProxy.half_open` leaves the open connections half-open: nothing moves on
  them again, nobody is told, until :meth:`FaultProxy.heal` resets them (as a peer
  that lost the connection answers the next segment);
- :meth:`FaultProxy.blackhole` holds every byte, on open and new connections alike,
  for N seconds or until :meth:`FaultProxy.heal`.

A blackhole behaves like a partition that TCP rides out: the bytes held are delivered
when it ends, in order, unless the connection's client gave up meanwhile (closed or
reset it): such a connection is reset on heal and its held bytes are dropped, so a
request its sender abandoned never arrives late. Connections accepted during the
blackhole reach the target only when it ends (a SYN retried until it gets through).

Example::

    with ScriptedModelServer([reply("Hi.")]) as model:
        link = FaultProxy(f"127.0.0.1:{model.port}", name="model").start()
        provider = OpenAICompatible(base_url=link.url("/v1"), api_key="k")
        link.blackhole(3.0)  # calls time out for 3 s, then go through
        ...
        assert link.counts.blackholes == 1
        link.stop()

The proxy serves from a daemon thread with its own event loop, so sync tests, async
tests (from any event loop) and subprocesses all reach it; every control method is
thread-safe and returns once the fault is in place. :attr:`FaultProxy.counts` says
which faults landed (connections reset, bytes held, dropped, delayed), for tests and
soak reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self, TypeVar

__all__ = ["FaultCounts", "FaultProxy"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Reading from a side stops while this many bytes wait to go to the other side
# (latency, a blackhole, a slow reader) and resumes below the low mark: memory stays
# bounded and the sender feels the back-pressure, as on a real link.
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
_CONNECT_TIMEOUT = 10.0

Side = Literal["client", "target"]


@dataclasses.dataclass(frozen=True)
class FaultCounts:
    """What a :class:`FaultProxy` forwarded and which of its faults landed."""

    connections: int = 0
    """Connections accepted from clients."""
    open: int = 0
    """Connections open now (half-open ones included)."""
    bytes_forwarded: int = 0
    """Bytes delivered, both directions."""
    delayed_chunks: int = 0
    """Chunks of bytes delivered late because of :meth:`FaultProxy.latency`."""
    resets: int = 0
    """Connections reset by :meth:`FaultProxy.reset`."""
    half_opened: int = 0
    """Connections left half-open by :meth:`FaultProxy.half_open`."""
    blackholes: int = 0
    """Calls of :meth:`FaultProxy.blackhole`."""
    blackholed_connections: int = 0
    """Connections that had bytes to move while a blackhole held them."""
    bytes_held: int = 0
    """Bytes a blackhole held, delivered late or dropped."""
    dropped_connections: int = 0
    """Connections reset on heal because their client gave up during the blackhole."""
    bytes_dropped: int = 0
    """Held bytes of those connections, never delivered."""
    target_unreachable: int = 0
    """Connections closed because the target refused or did not answer the connect."""


class _End(asyncio.Protocol):
    """One socket of a proxied connection; hands everything to its :class:`_Link`."""

    def __init__(self, link: _Link, side: Side) -> None:
        self.link = link
        self.side = side
        self.transport: asyncio.Transport | None = None
        self.eof = False  # the peer sent FIN or the socket closed
        self.lost = False
        self.write_paused = False
        self.read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.link.received(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.link.ended(self)
        return True  # keep the socket open: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.link.ended(self, reset=exc is not None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.link.pump()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.read_paused and not self.lost:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.read_paused and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), not a FIN."""
        transport = self.transport
        if transport is None or self.lost:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class _Direction:
    """Bytes read from one end, waiting (latency, blackhole) to be written to the other."""

    def __init__(self, source: _End, sink: _End) -> None:
        self.source = source
        self.sink = sink
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.last_due = 0.0
        self.closed = False  # the source's EOF was passed on


class _Link:
    """One proxied connection: a client's socket and the socket to the target."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _End(self, "client")
        self.target = _End(self, "target")
        self.up = _Direction(self.client, self.target)
        self.down = _Direction(self.target, self.client)
        self.connected = False
        self.half_open = False
        self.held = False  # counted once in blackholed_connections
        self.gave_up_while_held = False
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # -- events from the ends ------------------------------------------------ #

    def received(self, end: _End, data: bytes) -> None:
        if self.closed:
            return
        proxy = self.proxy
        direction = self.up if end is self.client else self.down
        loop = proxy.loop
        due = max(loop.time() + proxy.delay, direction.last_due)
        direction.last_due = due
        direction.queue.append((due, data))
        direction.queued += len(data)
        if proxy.delay > 0:
            proxy.count(delayed_chunks=1)
        if proxy.blackholed:
            proxy.count(bytes_held=len(data))
            if not self.held:
                self.held = True
                proxy.count(blackholed_connections=1)
        if direction.queued > _HIGH_WATER:
            end.pause_reading()
        self.pump()

    def ended(self, end: _End, *, reset: bool = False) -> None:
        if self.closed:
            return
        if end is self.client and self.proxy.blackholed:
            self.gave_up_while_held = True
            return  # decided on heal: dropped, never delivered late
        if reset:
            self.close(reset=True)
            return
        self.pump()

    # -- forwarding --------------------------------------------------------- #

    def pump(self) -> None:
        """Deliver what is due in both directions; close once both are done."""
        if self.closed or self.half_open or self.proxy.blackholed or not self.connected:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        loop = self.proxy.loop
        next_due: float | None = None
        for direction in (self.up, self.down):
            sink = direction.sink
            while direction.queue and not sink.write_paused and not sink.lost:
                due, data = direction.queue[0]
                if due > loop.time():
                    next_due = due if next_due is None else min(next_due, due)
                    break
                direction.queue.popleft()
                direction.queued -= len(data)
                assert sink.transport is not None
                sink.transport.write(data)
                self.proxy.count(bytes_forwarded=len(data))
            if direction.queued < _LOW_WATER:
                direction.source.resume_reading()
            if not direction.queue and direction.source.eof and not direction.closed:
                direction.closed = True
                transport = sink.transport
                if transport is not None and not sink.lost:
                    if transport.can_write_eof():
                        transport.write_eof()
                    else:
                        transport.close()
        if (self.up.closed and self.down.closed) or self.client.lost or self.target.lost:
            self.close()
        elif next_due is not None:
            self.timer = loop.call_at(next_due, self.pump)

    async def connect(self, host: str, port: int) -> None:
        """Open the target side; during a blackhole only once it ends."""
        proxy = self.proxy
        await proxy.flowing.wait()
        if self.closed or self.client.eof:
            self.close()
            return
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await proxy.loop.create_connection(lambda: self.target, host, port)
        except (OSError, TimeoutError) as e:
            _log.debug("FaultProxy: target %s:%d unreachable: %s", host, port, e)
            proxy.count(target_unreachable=1)
            self.close(reset=True)
            return
        if self.closed:  # stopped or reset while connecting
            self.target.abort()
            return
        self.connected = True
        self.pump()

    def heal(self) -> None:
        """The blackhole ended: drop the connection if its client gave up, else flow."""
        if self.closed:
            return
        if self.gave_up_while_held:
            self.proxy.count(dropped_connections=1, bytes_dropped=self.up.queued)
            self.close(reset=True)
            return
        self.pump()

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        for end in (self.client, self.target):
            if reset:
                end.abort()
            elif end.transport is not None and not end.lost:
                end.transport.close()
        self.proxy.forget(self)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects latency, resets, half-open links and blackholes.

    Start it (``with FaultProxy(target) as proxy:`` or :meth:`start`), point a client at
    :attr:`address` instead of the target, and break the link from the test while the
    client works. Faults apply to every connection through the proxy; :meth:`heal`
    takes them all back. All methods are thread-safe.

    Args:
        target: Where to forward: ``"host:port"`` or ``(host, port)``.
        name: A label for logs and ``repr`` (e.g. ``"temporal"``, ``"model"``).
    """

    def __init__(self, target: str | tuple[str, int], *, name: str = "proxy") -> None:
        if isinstance(target, str):
            host, sep, port = target.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"FaultProxy target must be 'host:port', got {target!r}")
            target = (host or "127.0.0.1", int(port))
        self.target = target
        self.name = name
        self.delay = 0.0
        self.blackholed = False
        self._links: set[_Link] = set()
        self._counts = FaultCounts()
        self._counts_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._heal_timer: asyncio.TimerHandle | None = None
        self._flowing: asyncio.Event | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------- #

    def start(self) -> Self:
        """Binds a free port on 127.0.0.1 and starts forwarding, in a daemon thread.

        Returns:
            The proxy itself, for chaining.

        Raises:
            RuntimeError: If the proxy was already started.
        """
        if self._loop is not None:
            raise RuntimeError("FaultProxy can only be started once")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"FaultProxy:{self.name}", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
        _log.debug("FaultProxy %s: %s -> %s:%d", self.name, self.address, *self.target)
        return self

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await self.loop.create_server(self._accept, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Closes the listener and every connection (with a reset). Idempotent; never raises."""
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed():
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            loop.close()
        except Exception:  # stop() must never mask the test's own outcome
            _log.exception("error while stopping FaultProxy %s", self.name)

    async def _shutdown(self) -> None:
        if self._heal_timer is not None:
            self._heal_timer.cancel()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close(reset=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

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
    def loop(self) -> asyncio.AbstractEventLoop:
        """The proxy's own event loop (in its thread)."""
        if self._loop is None:
            raise RuntimeError("FaultProxy is not started")
        return self._loop

    @property
    def flowing(self) -> asyncio.Event:
        """Set while no blackhole holds the link (used on the proxy's loop only)."""
        assert self._flowing is not None, "FaultProxy is not started"
        return self._flowing

    @property
    def port(self) -> int:
        """The port the proxy listens on.

        Raises:
            RuntimeError: If the proxy is not started.
        """
        if self._port is None:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: give it to clients in place of the target's address."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "", scheme: str = "http") -> str:
        """``http://127.0.0.1:PORT`` plus ``path``: ``url("/v1")`` is an openai ``base_url``."""
        return f"{scheme}://{self.address}{path}"

    # -- faults -------------------------------------------------------------- #

    def latency(self, seconds: float) -> None:
        """Delays every chunk by ``seconds``, in each direction (0 takes it back).

        A round trip through the proxy takes ``2 * seconds`` more. Bytes keep their
        order; those already waiting keep their old delay.

        Args:
            seconds: One-way delay, >= 0.
        """
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds}")

        def apply() -> None:
            self.delay = seconds

        self._call(apply)

    def reset(self) -> int:
        """Resets every open connection: both ends get a TCP RST. New connections work.

        Returns:
            How many connections were reset.
        """

        def apply() -> int:
            links = [link for link in self._links if not link.closed]
            for link in links:
                link.close(reset=True)
            self.count(resets=len(links))
            return len(links)

        return self._call(apply)

    def half_open(self) -> int:
        """Leaves every open connection half-open; new connections work.

        Nothing is forwarded or read on them again and neither end is told: each
        believes the connection is up until its own timeouts say otherwise (a peer
        that vanished, a NAT that forgot the flow). :meth:`heal` resets them.

        Returns:
            How many connections were left half-open.
        """

        def apply() -> int:
            links = [link for link in self._links if not link.closed and not link.half_open]
            for link in links:
                link.half_open = True
                if link.timer is not None:
                    link.timer.cancel()
                link.client.pause_reading()
                link.target.pause_reading()
            self.count(half_opened=len(links))
            return len(links)

        return self._call(apply)

    def blackhole(self, seconds: float | None = None) -> None:
        """Holds every byte on every connection, open or new, until the blackhole ends.

        It ends after ``seconds`` (if given) or at :meth:`heal`. Then the held bytes
        flow on, except on connections whose client gave up meanwhile: those are
        reset and their bytes dropped. A connection accepted during the blackhole
        reaches the target only when it ends.

        Args:
            seconds: How long it lasts; None until :meth:`heal`.
        """
        if seconds is not None and seconds < 0:
            raise ValueError(f"blackhole seconds must be >= 0, got {seconds}")

        def apply() -> None:
            if self._heal_timer is not None:
                self._heal_timer.cancel()
                self._heal_timer = None
            self.blackholed = True
            self.flowing.clear()
            self.count(blackholes=1)
            for link in self._links:
                if link.timer is not None:
                    link.timer.cancel()
                    link.timer = None
            if seconds is not None:
                self._heal_timer = self.loop.call_later(seconds, self._end_blackhole)

        self._call(apply)

    def heal(self) -> None:
        """Takes every fault back: no latency, no blackhole, half-open connections reset."""

        def apply() -> None:
            self.delay = 0.0
            for link in [link for link in self._links if link.half_open]:
                link.close(reset=True)
            self._end_blackhole()

        self._call(apply)

    def _end_blackhole(self) -> None:
        if self._heal_timer is not None:
            self._heal_timer.cancel()
            self._heal_timer = None
        if not self.blackholed:
            return
        self.blackholed = False
        self.flowing.set()
        for link in list(self._links):
            link.heal()

    @property
    def is_blackholed(self) -> bool:
        """Whether a blackhole holds the link now."""
        return self._call(lambda: self.blackholed)

    # -- counters ------------------------------------------------------------ #

    @property
    def counts(self) -> FaultCounts:
        """A snapshot of what was forwarded and which faults landed."""
        with self._counts_lock:
            return dataclasses.replace(self._counts, open=len(self._links))

    def count(self, **increments: int) -> None:
        """Adds to the counters (called on the proxy's loop)."""
        with self._counts_lock:
            self._counts = dataclasses.replace(
                self._counts,
                **{k: getattr(self._counts, k) + v for k, v in increments.items()},
            )

    # -- connections (on the proxy's loop) ------------------------------------ #

    def _accept(self) -> _End:
        link = _Link(self)
        self._links.add(link)
        self.count(connections=1)
        task = self.loop.create_task(link.connect(*self.target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return link.client

    def forget(self, link: _Link) -> None:
        """A connection closed: stop tracking it."""
        self._links.discard(link)

    def _call(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the proxy's loop and returns its result (at once if already there)."""
        loop = self.loop
        if loop.is_closed():
            raise RuntimeError("FaultProxy is stopped")
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)

    def __repr__(self) -> str:
        where = self.address if self._port is not None else "not started"
        host, port = self.target
        return f"<FaultProxy {self.name} {where} -> {host}:{port}>"
