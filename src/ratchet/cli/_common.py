"""What every command shares: the consoles, common options, and the error wrapper."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.service import RPCError

from .._connect import DEFAULT_ADDRESS
from ..errors import ConfigError, RatchetError, RunFailed

if TYPE_CHECKING:
    from ..agent import Agent

out = Console(highlight=False, soft_wrap=True)
# Errors stay on one line whatever the terminal width, so scripts can grep them.
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

Address = Annotated[
    str | None,
    typer.Option(help="Temporal address (default: TEMPORAL_ADDRESS, else 127.0.0.1:7233)."),
]
Namespace = Annotated[str | None, typer.Option(help="Temporal namespace (default: 'default').")]
TaskQueue = Annotated[str, typer.Option(help="Task queue the agent's workers poll.")]
Stream = Annotated[
    bool,
    typer.Option(
        "--stream/--no-stream",
        help="Print the model's replies as they are written (--no-stream: whole, once "
        "recorded). Streamed replies are read from the delta store beside "
        "RATCHET_TRANSCRIPT_STORE, the one the workers use.",
    ),
]
TranscriptStoreUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RATCHET_TRANSCRIPT_STORE",
        help="Transcript store: sqlite:///path.sqlite or postgresql://... "
        "(default: transcripts.sqlite in ratchet's data directory).",
    ),
]


def _run(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; turn every expected error into one line on stderr, exit 1."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except RunFailed as e:
            err.print(f"[red]error:[/] {escape(f'{e.error_type}: {e.message} (run {e.run_id})')}")
        except (RatchetError, RPCError) as e:
            err.print(f"[red]error:[/] {escape(str(e))}")
        except (RuntimeError, ValueError, FileNotFoundError) as e:
            message = _payload_store_problem(e)
            if message is None:
                raise
            err.print(f"[red]error:[/] {escape(message)}")
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        raise typer.Exit(1)

    return wrapper


def _payload_store_problem(e: BaseException) -> str | None:
    """What to do when a history's large payloads cannot be read here, or None."""
    text = str(e)
    same_store = (
        "set RATCHET_PAYLOAD_STORE to the store the run's workers use (a directory "
        "shared with them, or s3://BUCKET)"
    )
    if "TMPRL1105" in text:  # the SDK: a reference to external storage, none configured
        return (
            "this run keeps large payloads outside its history, but RATCHET_PAYLOAD_STORE "
            f"is off here: {same_store}"
        )
    if isinstance(e, ValueError) and text.startswith("No driver found with name"):
        # The run's workers used another kind of store (say S3, while this is local).
        return f"this run's large payloads are in a store not set up here ({text}): {same_store}"
    if isinstance(e, RuntimeError) and text.startswith("S3StorageDriver retrieve failed"):
        cause = f": {e.__cause__}" if e.__cause__ else ""
        return (
            f"cannot read this run's large payloads from S3 ({text}{cause}). Check the AWS "
            "credentials, region and AWS_ENDPOINT_URL_S3, and that the bucket's lifecycle "
            "rules did not expire the object"
        )
    if isinstance(e, FileNotFoundError) and "payload store" in text:
        return f"{text} (set RATCHET_PAYLOAD_STORE to the workers' store)"
    return None


def _ui_url(run_id: str, address: str | None, namespace: str | None) -> str | None:
    """The Web UI page of a run: ``$RATCHET_UI_URL``, else the embedded server's UI when
    the run is on the embedded server."""
    pages = ui_namespace_url(address, namespace)
    return f"{pages}/workflows/{run_id}" if pages else None


def ui_namespace_url(address: str | None, namespace: str | None) -> str | None:
    """The Web UI's pages of a namespace (``.../namespaces/NS``): ``$RATCHET_UI_URL``,
    else the embedded server's UI when ``address`` is the embedded server."""
    base = os.environ.get("RATCHET_UI_URL")
    if base is None:
        from ..local import services_status

        local = services_status().get("temporal", {})
        target = address or os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS
        if target != local.get("address"):
            return None
        base = local.get("ui_url")
    if not base:
        return None
    return f"{base.rstrip('/')}/namespaces/{namespace or 'default'}"


def agent_names(option: str | None) -> list[str] | None:
    """The agent names an ``--agents a,b`` option gives, in order; None when not given.

    Raises:
        ConfigError: the option names no agent, or an invalid name.
    """
    from ..agent import check_agent_name

    if option is None:
        return None
    names = list(dict.fromkeys(n.strip() for n in option.split(",") if n.strip()))
    if not names:
        raise ConfigError("--agents names no agent: give names, comma-separated")
    for name in names:
        check_agent_name(name)
    return names


def pick_agents(agents: Sequence[Agent], names: list[str], app: str) -> list[Agent]:
    """The agents of ``app`` that ``--agents`` names.

    Raises:
        ConfigError: a name the app does not define.
    """
    by_name = {a.name: a for a in agents}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(
            f"--agents names agents that {app} does not have: {', '.join(unknown)} "
            f"(it has: {', '.join(sorted(by_name))})"
        )
    return [by_name[name] for name in names]
