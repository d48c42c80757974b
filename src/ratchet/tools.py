"""Tools: plain Python functions the model may call, turned into activities.

``@tool`` reads the function's signature and Google-style docstring to build the
JSON schema the model sees, and a pydantic model that validates (and coerces)
the arguments before the function runs. Tools run as the ``ratchet.run_tool``
activity, so they get Temporal's timeouts and retries.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, get_origin, get_type_hints, overload

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from .errors import ConfigError

__all__ = ["Tool", "ToolContext", "ToolSpec", "tool"]

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")

DepsT = TypeVar("DepsT", default=Any)
"""The type of a worker's dependencies for a tool (``ToolContext[MyDeps]``)."""


@dataclass(frozen=True)
class ToolContext(Generic[DepsT]):
    """Passed to a tool that declares a parameter annotated ``ToolContext`` (or
    ``ToolContext[MyDeps]``, to type ``deps``).

    It is not part of the schema the model sees.
    """

    idempotency_key: str
    """Stable across retries (workflow id + activity id): deduplicate side effects by it.
    A tool called on its own (``AgentClient.call_tool``) gets its activity id, or the
    key its caller gave."""
    run_id: str
    """The workflow id of the run ("" for a tool called on its own)."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, and so on."""
    # None when the worker was given none; typed by the tool's annotation, not checked.
    deps: DepsT = None  # type: ignore[assignment]
    """The worker's dependencies for this agent (``create_worker(deps=...)``): clients,
    pools, settings. They live in the worker process and never enter the history."""


class ToolSpec(BaseModel):
    """What a run records about a tool when it starts (pure data, replay-safe)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    side_effects: bool = False
    fatal: bool = False
    timeout_seconds: float = 60.0
    max_attempts: int = 3
    max_result_chars: int = 100_000
    agent: str | None = None
    """A sub-agent (:meth:`ratchet.Agent.as_tool`): a call runs this agent as a child
    workflow; None: a function tool."""
    handoff: str | None = None
    """A handoff (``Agent(handoffs=...)``): a call hands the conversation to this agent,
    recorded in the run's snapshot (``AgentSpec.team``); None: not a handoff."""
    mcp_server: str | None = None
    """An MCP tool: the name of the MCP server (``ratchet.mcp.MCPServer``) it is called on."""
    mcp_tool: str | None = None
    """An MCP tool: its name on the server (without the server's prefix)."""
    mcp_stateful: bool = False
    """An MCP tool of a stateful server: a run's calls go to one session on one worker."""
    mcp_refresh: bool = False
    """An MCP tool whose server's tools are discovered again at each continue-as-new."""
    mcp_connect_seconds: float = 30.0
    """An MCP tool: its server's ``connect_timeout`` (for a stateful server, also how
    long a call waits for the worker holding the run's session)."""


class Tool:
    """A function the model can call. Create with :func:`tool`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = False,
        fatal: bool = False,
        timeout: float = 60.0,
        max_attempts: int = 3,
        max_result_chars: int = 100_000,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_RE.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} is invalid: use letters, digits, '_' or '-' "
                "(at most 64 characters, not starting with a digit)"
            )
        if timeout <= 0 or max_attempts < 1:
            raise ConfigError(f"tool {self.name!r}: timeout must be > 0 and max_attempts >= 1")
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
        self.description = description or summary or self.name
        self.side_effects = side_effects
        self.fatal = fatal
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_result_chars = max_result_chars
        self.is_async = inspect.iscoroutinefunction(fn)
        self._context_param: str | None = None
        self.args_model = self._build_args_model(arg_docs)
        self._parameters: dict[str, Any] | None = None

    def _build_args_model(self, arg_docs: dict[str, str]) -> type[BaseModel]:
        try:
            # include_extras keeps Annotated[int, Field(ge=1)] constraints.
            hints = get_type_hints(self.fn, include_extras=True)
        except Exception as e:  # unresolvable forward references
            raise ConfigError(f"tool {self.name!r}: cannot resolve type hints: {e}") from e
        fields: dict[str, Any] = {}
        for p in inspect.signature(self.fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ConfigError(f"tool {self.name!r}: *args/**kwargs are not supported")
            annotation = hints.get(p.name, Any)
            if annotation is ToolContext or get_origin(annotation) is ToolContext:
                self._context_param = p.name
                continue
            if p.name not in hints:
                raise ConfigError(
                    f"tool {self.name!r}: parameter {p.name!r} needs a type annotation "
                    "(the model's JSON schema is built from it)"
                )
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (
                annotation,
                pydantic.Field(default, description=arg_docs.get(p.name)),
            )
        model: type[BaseModel] = pydantic.create_model(
            f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields
        )
        return model

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments object, as the model sees it (a copy)."""
        # Built once: pydantic's schema generation was ~2 % of a worker's CPU, as every
        # run's snapshot asks for it.
        if self._parameters is None:
            schema = self.args_model.model_json_schema()
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                prop.pop("title", None)
            self._parameters = schema
        return copy.deepcopy(self._parameters)

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            side_effects=self.side_effects,
            fatal=self.fatal,
            timeout_seconds=self.timeout,
            max_attempts=self.max_attempts,
            max_result_chars=self.max_result_chars,
        )

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce arguments; raises ``pydantic.ValidationError``."""
        model = self.args_model.model_validate(arguments)
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def invoke(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> str:
        """Validate the arguments, call the function and render its result as text."""
        kwargs = self.validate(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = ctx
        if self.is_async:
            result = await self.fn(**kwargs)
        else:
            # Sync tools may block; a thread keeps the worker's event loop responsive.
            result = await in_tool_thread(self.fn, **kwargs)
        return render_result(result)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in unit tests)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


_TOOL_THREADS = ThreadPoolExecutor(thread_name_prefix="ratchet-tool")
"""Sync tools' threads: not the event loop's default executor, which ``asyncio.run`` waits
for when it ends. A serverless invocation that must end while a sync tool still runs
(its call is retried elsewhere) would otherwise overrun its deadline by the tool's time."""


_busy_lock = threading.Lock()
_busy_threads = 0


def busy_tool_threads() -> int:
    """How many sync tools (and validators, guardrails) are running in their threads now,
    including calls whose activity was cancelled: a thread cannot be interrupted, so a
    stopping worker can only leave them behind (``ratchet worker`` then exits at once)."""
    return _busy_threads


async def in_tool_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in ratchet's tool threads, with the caller's context
    variables (the activity's info, tracing spans), as ``asyncio.to_thread`` does."""
    context = contextvars.copy_context()

    def call() -> Any:
        global _busy_threads
        with _busy_lock:
            _busy_threads += 1
        try:
            return context.run(fn, *args, **kwargs)
        finally:
            with _busy_lock:
                _busy_threads -= 1

    return await asyncio.get_running_loop().run_in_executor(_TOOL_THREADS, call)


def render_result(result: Any) -> str:
    """Turn a tool's return value into the text the model reads."""
    if isinstance(result, str):
        return result
    return json.dumps(pydantic_core.to_jsonable_python(result), ensure_ascii=False)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool = False,
    fatal: bool = False,
    timeout: float = 60.0,
    max_attempts: int = 3,
    max_result_chars: int = 100_000,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool = False,
    fatal: bool = False,
    timeout: float = 60.0,
    max_attempts: int = 3,
    max_result_chars: int = 100_000,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a tool.

    Args:
        fn: the function; its docstring's first paragraph describes the tool and
            its ``Args:`` section describes each parameter to the model.
        name: tool name shown to the model (default: the function name).
        description: overrides the docstring summary.
        side_effects: the tool changes the world. Declare it so: it documents
            the risk, and such tools should take a ``ToolContext`` parameter and
            use ``ctx.idempotency_key`` to apply their effect at most once,
            since activities are retried after crashes (at-least-once).
        fatal: if the tool raises, fail the whole run instead of telling the model.
        timeout: seconds one attempt may take.
        max_attempts: attempts for :class:`~ratchet.RetryableToolError` and timeouts.
        max_result_chars: longer results are cut to this many characters, with a
            notice to the model (a huge result would blow the model's context and
            Temporal's 2 MB payload limit).

    Example::

        @tool(side_effects=True)
        def issue_refund(order_id: int, ctx: ToolContext) -> str:
            \"\"\"Refund an order.

            Args:
                order_id: the order to refund.
            \"\"\"
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            side_effects=side_effects,
            fatal=fatal,
            timeout=timeout,
            max_attempts=max_attempts,
            max_result_chars=max_result_chars,
        )

    return wrap(fn) if fn is not None else wrap


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and per-argument descriptions."""
    paragraphs = doc.split("\n\n")
    summary = (
        " ".join(paragraphs[0].split()) if paragraphs and not _is_section(paragraphs[0]) else ""
    )
    args: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if _is_section(stripped):
            in_args = stripped.rstrip(":").lower() in ("args", "arguments", "parameters")
            current = None
            continue
        if not in_args or not stripped:
            continue
        m = re.match(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", stripped)
        if m and line.startswith((" ", "\t")) and _indent(line) <= 4:
            current = m.group(1)
            args[current] = m.group(2)
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return summary, args


def _is_section(text: str) -> bool:
    return bool(
        re.match(
            r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Example|Examples|Note|Notes):\s*$",
            text.strip(),
        )
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
