"""``MCPServer``: an MCP server declared as a source of an agent's tools.

The declaration lives in the worker's code only. What a run records (in its agent
snapshot) is the server's name and the tools discovered on it: never its command,
URL, environment or headers, so secrets stay out of the event history.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["MCPServer", "Secrets"]

Secrets = Callable[[], Mapping[str, str]]
"""Called in the worker each time it connects: environment variables (stdio) or
HTTP headers (streamable HTTP), e.g. read from a secrets manager."""

_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,31}$")


@dataclass(frozen=True)
class MCPServer:
    """An MCP server whose tools an agent offers the model. Build with :meth:`stdio` or
    :meth:`http`, then pass it in ``Agent(tools=[...])``.

    Its tools are discovered when a run starts (in the snapshot activity) and recorded
    in the run's snapshot, so a replay never contacts the server. Each call is a
    ``ratchet.run_tool`` activity: timeouts, retries, the policy, approvals and the
    idempotency key (sent in the request's ``_meta`` as ``ratchet/idempotency-key``)
    apply as to any tool.
    """

    name: str
    transport: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_from: tuple[str, ...] = ()
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    secrets: Secrets | None = None
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    prefix: str = ""
    side_effects: bool | frozenset[str] = False
    timeout: float = 60.0
    max_attempts: int = 3
    connect_timeout: float = 30.0
    stateful: bool = False
    refresh_on_continue_as_new: bool = False

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Iterable[str] = (),
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        env_from: Iterable[str] = (),
        secrets: Secrets | None = None,
        cwd: str | Path | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
        prefix: str = "",
        side_effects: bool | Iterable[str] = False,
        timeout: float = 60.0,
        max_attempts: int = 3,
        connect_timeout: float = 30.0,
        stateful: bool = False,
        refresh_on_continue_as_new: bool = False,
    ) -> MCPServer:
        """A server the worker starts as a subprocess and talks to over stdin/stdout.

        Args:
            command: the executable (looked up on ``PATH``), e.g. ``mcp-server-time``.
            args: its arguments.
            name: how runs and traces name the server (default: the command's name).
            env: extra environment variables for the subprocess (kept in the worker).
            env_from: names of variables copied from the worker's environment when it
                connects (e.g. ``["GITHUB_TOKEN"]``): the way to pass secrets.
            secrets: called when the worker connects; its variables are added too.
            cwd: the subprocess's working directory.
            allow: offer only these tools (by the server's names); default: all.
            deny: never offer these tools.
            prefix: prepended to each tool's name the model sees (avoids clashes).
            side_effects: True if every tool changes the world, or the names of those
                that do (documents the risk; policies may match on it).
            timeout: seconds one call attempt may take.
            max_attempts: attempts per call for transport failures and timeouts.
            connect_timeout: seconds to start the server and list its tools.
            stateful: the server keeps state per session (a browser, a shell): each run
                gets a session of its own, pinned to one worker (through a task queue of
                that worker); if that worker goes away (no answer within
                ``connect_timeout``), the call fails with an error the model reads, and
                the next call starts a new session. Default: calls of every run share
                the worker's session, reconnecting after a failure.
            refresh_on_continue_as_new: discover the server's tools again each time a
                long run continues as new (recorded in the new execution's history);
                default: a run keeps the tools discovered when it started.
        """
        if not command.strip():
            raise ConfigError("MCPServer.stdio: the command is empty")
        return cls._checked(
            name=name or _name_of(Path(command).name),
            transport="stdio",
            command=command,
            args=tuple(args),
            cwd=str(cwd) if cwd is not None else None,
            env=dict(env or {}),
            env_from=tuple(env_from),
            secrets=secrets,
            allow=frozenset(allow) if allow is not None else None,
            deny=frozenset(deny),
            prefix=prefix,
            side_effects=side_effects
            if isinstance(side_effects, bool)
            else frozenset(side_effects),
            timeout=timeout,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            stateful=stateful,
            refresh_on_continue_as_new=refresh_on_continue_as_new,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Secrets | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
        prefix: str = "",
        side_effects: bool | Iterable[str] = False,
        timeout: float = 60.0,
        max_attempts: int = 3,
        connect_timeout: float = 30.0,
        stateful: bool = False,
        refresh_on_continue_as_new: bool = False,
    ) -> MCPServer:
        """A server reached over MCP's streamable HTTP transport.

        Args:
            url: the server's MCP endpoint, e.g. ``https://mcp.example.com/mcp``.
            name: how runs and traces name the server (default: the URL's host).
            headers: HTTP headers for every request (kept in the worker).
            secrets: called when the worker connects; its headers are added (e.g.
                ``lambda: {"Authorization": f"Bearer {vault.token()}"}``).
            allow, deny, prefix, side_effects, timeout, max_attempts, connect_timeout,
            stateful, refresh_on_continue_as_new: as for :meth:`stdio`.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"MCPServer.http: {url!r} is not an http(s) URL")
        return cls._checked(
            name=name or _name_of(parts.hostname),
            transport="http",
            url=url,
            headers=dict(headers or {}),
            secrets=secrets,
            allow=frozenset(allow) if allow is not None else None,
            deny=frozenset(deny),
            prefix=prefix,
            side_effects=side_effects
            if isinstance(side_effects, bool)
            else frozenset(side_effects),
            timeout=timeout,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            stateful=stateful,
            refresh_on_continue_as_new=refresh_on_continue_as_new,
        )

    @classmethod
    def _checked(cls, **fields: object) -> MCPServer:
        server = cls(**fields)  # type: ignore[arg-type]
        if not _NAME_RE.match(server.name):
            raise ConfigError(
                f"MCP server name {server.name!r} is invalid: start with a letter; use "
                "letters, digits, '_' or '-' (at most 32 characters); pass name=..."
            )
        if server.timeout <= 0 or server.connect_timeout <= 0 or server.max_attempts < 1:
            raise ConfigError(
                f"MCP server {server.name!r}: timeouts must be > 0 and max_attempts >= 1"
            )
        if server.prefix and not re.match(r"^[a-zA-Z_][a-zA-Z0-9_-]*$", server.prefix):
            raise ConfigError(
                f"MCP server {server.name!r}: prefix {server.prefix!r} must be letters, digits, "
                "'_' or '-' (not starting with a digit)"
            )
        return server

    def offers(self, tool: str) -> bool:
        """Whether the server's tool ``tool`` is offered to the model (allow/deny)."""
        return (self.allow is None or tool in self.allow) and tool not in self.deny

    def changes_world(self, tool: str) -> bool:
        if isinstance(self.side_effects, bool):
            return self.side_effects
        return tool in self.side_effects

    def environment(self) -> dict[str, str]:
        """The subprocess's extra variables, resolved now in the worker."""
        env = dict(self.env)
        missing = [n for n in self.env_from if n not in os.environ]
        if missing:
            raise ConfigError(
                f"MCP server {self.name!r}: the worker's environment lacks "
                f"{', '.join(missing)} (env_from); set it where the worker runs"
            )
        env.update({n: os.environ[n] for n in self.env_from})
        if self.secrets is not None:
            env.update(self.secrets())
        return env

    def request_headers(self) -> dict[str, str]:
        """HTTP headers, resolved now in the worker."""
        headers = dict(self.headers)
        if self.secrets is not None:
            headers.update(self.secrets())
        return headers

    def __repr__(self) -> str:
        # Never the environment, headers or URL query: they may hold secrets.
        where = self.command if self.transport == "stdio" else urlsplit(self.url).hostname
        return f"MCPServer({self.name!r}, {self.transport}, {where!r})"


def _name_of(text: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", text).strip("-_")[:32]
    return name if name and name[0].isalpha() else f"mcp-{name}"[:32]


def _names_or_flag(side_effects: bool | Iterable[str]) -> bool | frozenset[str]:
    return side_effects if isinstance(side_effects, bool) else frozenset(side_effects)
