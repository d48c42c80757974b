"""`ratchet pending`, `approve` and `deny`: answering tool calls that wait for a person."""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated

import typer

from ..approval_proof import secret_from_env, sign_approval
from ..client import AgentClient
from ..errors import ConfigError
from ._common import Address, Namespace, _run, out


@_run
async def pending(
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List the tool calls (and spent budgets) waiting for approval, across runs."""
    client = await AgentClient.connect(address, namespace=namespace)
    calls = await client.pending()
    if not calls:
        out.print("nothing is waiting for approval")
    for run_id, call in calls:
        args = json.dumps(call.arguments)
        why = f" ({call.reason})" if call.reason else ""
        parent = f" (sub-agent run of {call.parent_run})" if call.parent_run else ""
        out.print(
            f"{run_id}{parent} {call.call_id}: {call.tool}({args}) · rule {call.rule}{why} · "
            f"deadline {call.deadline:%Y-%m-%d %H:%M:%S %Z} (denied if nobody answers by then)",
            markup=False,
        )


Approver = Annotated[
    str | None, typer.Option("--as", help="Who answers (default: $RATCHET_APPROVER or $USER).")
]
Reason = Annotated[str, typer.Option(help="Why; shown to the model and in the audit trail.")]


RunArg = Annotated[str, typer.Argument(help="The run's id.")]
CallArg = Annotated[str, typer.Argument(help="The waiting call's id (see `ratchet pending`).")]


def _approver(name: str | None) -> str:
    if name:
        return name
    try:
        return os.environ.get("RATCHET_APPROVER") or getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        raise ConfigError("say who answers: --as NAME (or set RATCHET_APPROVER)") from None


async def _answer(
    approve: bool,
    run_id: str,
    call_id: str,
    reason: str,
    approver: str | None,
    address: str | None,
    namespace: str | None,
    raise_to: float | None = None,
) -> None:
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    who = _approver(approver)
    # An operator holding the deployment's approval secret is trusted to name the
    # approver; without it the answer goes unsigned (workers that require a proof
    # refuse it, and say so).
    secret = secret_from_env()
    proof = (
        sign_approval(
            secret,
            run_id=run_id,
            call_id=call_id,
            approve=approve,
            approver=who,
            raise_to=raise_to,
        )
        if secret is not None
        else None
    )
    if approve:
        record = await handle.approve(
            call_id, approver=who, reason=reason, raise_to=raise_to, proof=proof
        )
    else:
        record = await handle.deny(call_id, approver=who, reason=reason, proof=proof)
    verb = "approved" if approve else "denied"
    raised = f"; {record.rule} raised to {record.raise_to:g}" if record.raise_to is not None else ""
    out.print(f"{verb} {record.call_id} ({record.tool}) of {run_id} as {record.approver}{raised}")


@_run
async def approve(
    run_id: RunArg,
    call_id: CallArg,
    reason: Reason = "",
    approver: Approver = None,
    raise_to: Annotated[
        float | None,
        typer.Option(
            "--raise-to",
            help="For a spent budget (tool `budget`): its new limit. Default: raised by "
            "its configured amount beyond what the run used.",
        ),
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Approve a tool call (or a spent budget) that waits for approval; the agent goes on.

    With RATCHET_APPROVAL_SECRET set, the answer is signed with it (for workers that
    require authenticated approvals).
    """
    await _answer(True, run_id, call_id, reason, approver, address, namespace, raise_to)


@_run
async def deny(
    run_id: RunArg,
    call_id: CallArg,
    reason: Reason = "",
    approver: Approver = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Deny a tool call that waits for approval; the model is told why."""
    await _answer(False, run_id, call_id, reason, approver, address, namespace)
