"""Approvals: tool calls and spent budgets waiting for a person's decision, and the answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, assert_never

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from .._protocol import (
        ASKED_MEMO,
        VERIFY_APPROVAL_ACTIVITY,
        AgentSpec,
        ApprovalAnswer,
        ApprovalCheck,
        ApprovalRecord,
        ApprovalVerdict,
        Carried,
        PendingApproval,
    )

from ._patches import patched
from ._status import Status

__all__ = ["Approvals", "BudgetUse"]

BUDGET_ASK_PATCH = "ratchet.budget-ask-memo"
"""Runs since this patch record a budget's request for a decision in their memo; only
runs that ask carry the marker."""

APPROVAL_PROOF_PATCH = "ratchet.approval-proof"
"""Runs since this patch check each answer's proof in an activity before recording it
(workers with ``RATCHET_APPROVAL_SECRET`` refuse answers without a valid one); answers
recorded before it replay as they were taken."""

BudgetUse = Callable[[str, float], float]
"""What a budget has used now, given its name and what it had used when it asked."""


class Approvals:
    """Requests waiting for an answer, the answers, and the waits a new execution takes over."""

    def __init__(
        self,
        status: Status,
        carried: Carried | None,
        can_continue_as_new: Callable[[AgentSpec], bool],
    ) -> None:
        self._status = status
        self._can_continue_as_new = can_continue_as_new
        self._pending: dict[str, PendingApproval] = {}
        self._answers: dict[str, ApprovalRecord] = {}
        self.deferred: dict[str, PendingApproval] = {}
        """Waits handed to the next execution (continue-as-new), same ids and deadlines."""
        if carried is not None:
            for p in carried.waiting:
                self._pending[p.call_id] = p

    def waiting(self) -> list[PendingApproval]:
        return list(self._pending.values())

    async def answer(self, answer: ApprovalAnswer, budget_use: BudgetUse) -> ApprovalRecord:
        """Record a person's answer (``check`` has accepted it), once its proof holds."""
        authenticated = False
        if patched(APPROVAL_PROOF_PATCH, self._status.run_version):
            authenticated = await _verify(answer)
            # While the proof was checked, the deadline may have passed or another
            # answer may have been recorded: the first recorded decision stands.
            self.check(answer, budget_use)
        pending = self._pending[answer.call_id]
        record = ApprovalRecord(
            call_id=answer.call_id,
            tool=pending.tool,
            rule=pending.rule,
            approved=answer.approve,
            approver=answer.approver,
            reason=answer.reason,
            at=workflow.now(),
            raise_to=_raise_to(pending, answer, budget_use),
            authenticated=authenticated,
        )
        self._answers[answer.call_id] = record
        return record

    def check(self, answer: ApprovalAnswer, budget_use: BudgetUse) -> None:
        """Refuse a bad answer (the approve update's validator)."""
        # Rejected updates leave no trace in history: a second answer or a wrong id is
        # refused without touching the run.
        if answer.call_id in self._answers:
            done = self._answers[answer.call_id]
            verb = "approved" if done.approved else "denied"
            by = "its timeout" if done.timed_out else done.approver
            raise ApplicationError(f"call {answer.call_id!r} was already {verb} by {by}")
        if answer.call_id not in self._pending:
            waiting = ", ".join(self._pending) or "none"
            raise ApplicationError(
                f"no call {answer.call_id!r} is waiting for approval in this run "
                f"(waiting: {waiting})"
            )
        if not answer.approver.strip():
            raise ApplicationError("say who approves: the approver is empty")
        if answer.raise_to is not None:
            pending = self._pending[answer.call_id]
            if pending.kind != "budget":
                raise ApplicationError(
                    f"{answer.call_id!r} is a tool call: raise_to is only for budget decisions"
                )
            if not answer.approve:
                raise ApplicationError("raise_to goes with approve: a denial ends the run")
            unit = pending.arguments["unit"]
            used = budget_use(pending.arguments["budget"], pending.arguments["used"])
            if answer.raise_to <= used:
                raise ApplicationError(
                    f"raise_to={answer.raise_to:g} is not above what the run used "
                    f"({used:g} {unit}); give a higher limit"
                )

    async def wait(
        self,
        spec: AgentSpec,
        approval_id: str,
        *,
        tool: str,
        arguments: dict[str, Any],
        rule: str,
        reason: str,
        kind: Literal["tool", "budget"] = "tool",
    ) -> ApprovalRecord | None:
        """Wait for a person's answer; None when the run continues as new meanwhile."""
        timeout = timedelta(seconds=spec.limits.approval_timeout_seconds)
        now = workflow.now()
        if approval_id in self._pending:
            # Carried over from the previous execution: the same request, the same deadline.
            timeout = max(self._pending[approval_id].deadline - now, timedelta(0))
        else:
            self._pending[approval_id] = PendingApproval(
                call_id=approval_id,
                tool=tool,
                arguments=arguments,
                rule=rule,
                reason=reason,
                requested_at=now,
                deadline=now + timeout,
                kind=kind,
                parent_run=self._status.parent_run,
            )
            if kind == "budget" and patched(BUDGET_ASK_PATCH, self._status.run_version):
                # The history shows what waits: readers cannot derive a budget's request
                # from the snapshot, as they do a tool call's.
                workflow.upsert_memo({ASKED_MEMO: self._pending[approval_id]})
        self.sync()
        try:
            # A durable timer: the wait costs no worker memory and survives restarts. A
            # long history hands the wait to a new execution (a safe boundary: nothing
            # runs for this call yet).
            await workflow.wait_condition(
                lambda: approval_id in self._answers or self._can_continue_as_new(spec),
                timeout=timeout,
            )
            if approval_id not in self._answers:
                self.deferred[approval_id] = self._pending[approval_id]
                return None
        except asyncio.TimeoutError:  # noqa: UP041 (TimeoutError here is temporalio's)
            # An answer that landed in the same workflow task as the deadline wins: the
            # approver was told it was accepted.
            self._answers.setdefault(
                approval_id,
                ApprovalRecord(
                    call_id=approval_id,
                    tool=tool,
                    rule=rule,
                    approved=False,
                    approver="ratchet",
                    reason=f"nobody answered within {timeout} (Limits.approval_timeout_seconds)",
                    at=workflow.now(),
                    timed_out=True,
                ),
            )
        record = self._answers[approval_id]
        del self._pending[approval_id]
        self._status.approval_ended(record)
        self.sync()
        return record

    def sync(self) -> None:
        """Show the waiting requests in the status (and its state)."""
        self._status.show_approvals(list(self._pending.values()))

    def cancel(self) -> None:
        """The run is cancelled: nothing waits any more."""
        self._pending.clear()


async def _verify(answer: ApprovalAnswer) -> bool:
    """Whether the worker authenticated the answer's proof; refuses the answer (the
    update fails, the call keeps waiting) when the worker requires a valid proof.

    A local activity: the secret is in the worker's environment, which workflow code
    must not read, and the check takes microseconds. Only its verdict is recorded.
    """
    try:
        verdict: ApprovalVerdict = await workflow.execute_local_activity(
            VERIFY_APPROVAL_ACTIVITY,
            ApprovalCheck(run_id=workflow.info().workflow_id, answer=answer),
            result_type=ApprovalVerdict,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                maximum_attempts=3, non_retryable_error_types=["ApprovalError"]
            ),
            summary=f"check the proof of {answer.approver}'s answer to {answer.call_id}",
        )
    except ActivityError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type == "ApprovalError":
            raise ApplicationError(
                cause.message, type="ApprovalError", non_retryable=True
            ) from None
        raise ApplicationError(
            f"the worker could not check the answer's proof ({cause or e}); answer again",
            type="ApprovalError",
            non_retryable=True,
        ) from None
    return verdict.authenticated


def _raise_to(
    pending: PendingApproval, answer: ApprovalAnswer, budget_use: BudgetUse
) -> float | None:
    """The new limit of an approved budget (tool calls have none)."""
    match pending.kind:
        case "tool":
            return None
        case "budget":
            if not answer.approve:
                return None
            # Default: one more configured budget beyond what the run has used.
            a = pending.arguments
            used = budget_use(a["budget"], a["used"])
            return answer.raise_to or max(used, a["limit"]) + a["configured"]
        case _:
            assert_never(pending.kind)
