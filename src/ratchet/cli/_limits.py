"""`ratchet limits` and `limits set`: provider rate limits, shown and changed live."""

from __future__ import annotations

from typing import Annotated

import typer

from .._limiter_protocol import LimiterStatus
from .._worker_settings import describe_limit
from ..client import AgentClient
from ..errors import ConfigError
from ._common import Address, Namespace, _run, out

limits_app = typer.Typer(
    help="Provider rate limits shared by every worker: show them, change them live.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@limits_app.callback()
def limits_show(
    ctx: typer.Context,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show each provider's limits, the usage of its current window and its queue depth."""
    if ctx.invoked_subcommand is None:
        _run(_limits_show)(address, namespace)


async def _limits_show(address: str | None, namespace: str | None) -> None:
    client = await AgentClient.connect(address, namespace=namespace)
    statuses, unanswered = await client._all_limiters()
    print_limits(statuses, unanswered)


def print_limits(
    statuses: list[LimiterStatus], unanswered: list[tuple[str, str]] | None = None
) -> None:
    for provider, queue in unanswered or ():
        out.print(
            f"{provider}: its limiter runs on task queue {queue!r}, but no worker answered "
            "within 5 s; model calls to it wait until a worker polls that queue",
            markup=False,
        )
    if not statuses:
        if not unanswered:
            out.print(
                "no provider limiter is running (one starts with the first model call of a "
                "worker given --rate-limit)"
            )
        return
    out.print(
        f"{'PROVIDER':<16} {'WINDOW':>7} {'RPM':>13} {'TPM':>19} {'IN-FLIGHT':>9} {'QUEUED':>6} "
        f"{'GRANTED':>7} {'429s':>5}  PAUSED",
        markup=False,
    )
    for s in statuses:
        lim = s.limit
        rpm = f"{s.requests_in_window}/{lim.rpm if lim.rpm is not None else '-'}"
        tpm = f"{s.tokens_in_window}/{lim.tpm if lim.tpm is not None else '-'}"
        paused = f"until {s.paused_until:%H:%M:%S}" if s.paused_until else "-"
        out.print(
            f"{s.provider:<16} {lim.window_seconds:>6g}s {rpm:>13} {tpm:>19} {s.in_flight:>9} "
            f"{s.queued:>6} "
            f"{s.granted_total:>7} {s.pauses_total:>5}  {paused}",
            markup=False,
        )


@limits_app.command("set")
@_run
async def limits_set(
    provider: Annotated[str, typer.Argument(help="The provider, e.g. openai.")],
    rpm: Annotated[
        int | None, typer.Option(help="Requests per window (per minute); 0 removes the limit.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option(help="Tokens per window (per minute); 0 removes the limit.")
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Change a provider's limits live; every worker's next call uses them."""
    if rpm is None and tpm is None:
        raise ConfigError("nothing to change: give --rpm and/or --tpm")
    client = await AgentClient.connect(address, namespace=namespace)
    status = await client.set_limits(provider, rpm=rpm, tpm=tpm)
    out.print(f"limits of {provider}: {describe_limit(status.limit)}", markup=False)
