"""Budgets: turns, tokens, cost and wall time, and the budgets a person raised."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .._protocol import AgentSpec, Carried, InheritedBudget

from ._approvals import Approvals
from ._status import Status

__all__ = ["Budgets", "inherit"]


def inherit(spec: AgentSpec, inherited: InheritedBudget | None) -> AgentSpec:
    """A sub-agent's snapshot with its budgets capped by what its parent had left."""
    if inherited is None:
        return spec
    limits = spec.limits
    capped: dict[str, float | int] = {}
    tokens, cost = inherited.max_total_tokens, inherited.max_cost_usd
    if tokens is not None and (limits.max_total_tokens is None or tokens < limits.max_total_tokens):
        capped["max_total_tokens"] = tokens
    if cost is not None and (limits.max_cost_usd is None or cost < limits.max_cost_usd):
        capped["max_cost_usd"] = cost
    if inherited.deadline is not None:
        left = (inherited.deadline - workflow.now()).total_seconds()
        if limits.max_wall_seconds is None or left < limits.max_wall_seconds:
            capped["max_wall_seconds"] = left
    if not capped:
        return spec
    # model_copy skips validation on purpose: a parent may have nothing left (a limit of
    # 0), and the child then stops at its first check, as the parent would have.
    return spec.model_copy(update={"limits": limits.model_copy(update=capped)})


class Budgets:
    """What the run may still spend: checked before each model call.

    A spent budget ends the run with ``BudgetExceeded``, or, with
    ``Limits(on_budget="ask")``, waits for a person who may raise it.
    """

    def __init__(
        self,
        status: Status,
        approvals: Approvals,
        carried: Carried | None,
        continue_as_new: Callable[[AgentSpec], NoReturn],
    ) -> None:
        self._status = status
        self._approvals = approvals
        self._continue_as_new = continue_as_new
        # Set here too, for an approve update that arrives before the run code resumes.
        self.started = carried.started if carried is not None else workflow.now()
        """When the run started: ``max_wall_seconds`` counts from here."""
        self.raised: dict[str, float] = dict(carried.budgets) if carried else {}
        """Budgets a person raised (``on_budget="ask"``), by name: the new limits."""
        self.turns_used = carried.turns_used if carried else 0
        """Model calls for the current user message (``max_turns`` counts them)."""

    def restart_clock(self) -> None:
        self.started = workflow.now()

    def turn_taken(self) -> None:
        self.turns_used += 1

    def message_answered(self) -> None:
        """The model answered a user message: ``max_turns`` counts afresh for the next."""
        self.turns_used = 0
        # max_turns is per user message: a raise was for this message only.
        self.raised.pop("max_turns", None)

    def used_now(self, budget: str, used_when_asked: float) -> float:
        """What a budget has used now: wall time goes on while a person decides."""
        return self._elapsed() if budget == "max_wall_seconds" else used_when_asked

    async def check_turns(self, spec: AgentSpec) -> None:
        """The ``max_turns`` budget: model calls for the current user message."""
        limit = self.raised.get("max_turns", spec.limits.max_turns)
        if self.turns_used >= limit:
            await self._spent(
                spec,
                "max_turns",
                self.turns_used,
                limit,
                spec.limits.max_turns,
                "turns",
                f"agent {spec.name!r} gave no final answer within Limits.max_turns={limit:g} "
                "turns; its transcript is kept (raise the limit or give it a simpler task)",
            )

    async def check_spending(self, spec: AgentSpec) -> None:
        """Tokens, cost and wall time."""
        limits = spec.limits
        s = self._status.current
        budgets: list[tuple[str, float, float | None, str]] = [
            ("max_total_tokens", s.usage.total_tokens, limits.max_total_tokens, "tokens"),
            ("max_cost_usd", s.cost_usd, limits.max_cost_usd, "USD"),
            ("max_wall_seconds", self._elapsed(), limits.max_wall_seconds, "seconds"),
        ]
        for name, used, configured, unit in budgets:
            if configured is None:
                continue
            limit = self.raised.get(name, configured)
            if used >= limit:
                await self._spent(
                    spec,
                    name,
                    used,
                    limit,
                    configured,
                    unit,
                    f"the run used {used:g} {unit}, reaching its budget Limits.{name}={limit:g}; "
                    "its transcript is kept (raise the budget to allow more)",
                )

    def left_for_child(
        self, spec: AgentSpec, parent_run: str, *, shares: int = 1
    ) -> InheritedBudget:
        """What a sub-agent called now may spend at most: this run's budgets left, split
        evenly between the ``shares`` sub-agents the turn calls at once (together they
        cannot spend more than the run has)."""
        limits = spec.limits
        s = self._status.current
        tokens = self.raised.get("max_total_tokens", limits.max_total_tokens)
        cost = self.raised.get("max_cost_usd", limits.max_cost_usd)
        wall = self.raised.get("max_wall_seconds", limits.max_wall_seconds)
        return InheritedBudget(
            max_total_tokens=(
                None if tokens is None else max(0, int(tokens) - s.usage.total_tokens) // shares
            ),
            max_cost_usd=None if cost is None else max(0.0, cost - s.cost_usd) / shares,
            deadline=None if wall is None else self.started + timedelta(seconds=wall),
            parent_run=parent_run,
        )

    def _elapsed(self) -> float:
        """Seconds the run has lasted (what ``max_wall_seconds`` counts)."""
        return (workflow.now() - self.started).total_seconds()

    async def _spent(
        self,
        spec: AgentSpec,
        name: str,
        used: float,
        limit: float,
        configured: float,
        unit: str,
        message: str,
    ) -> None:
        """End the run with ``BudgetExceeded``, or (``on_budget="ask"``) ask a person.

        Returns only when a person raised the budget: the run goes on.
        """
        details = {"budget": name, "used": used, "limit": limit}
        if spec.limits.on_budget == "ask":
            record = await self._approvals.wait(
                spec,
                f"turn{self._status.current.turn + 1}-budget-{name}",
                tool="budget",
                arguments={**details, "unit": unit, "configured": configured},
                rule=f"Limits.{name}",
                reason=f"used {used:g} of {limit:g} {unit}",
                kind="budget",
            )
            if record is None:
                # The history is long: the next execution asks again (same id, deadline).
                self._continue_as_new(spec)
            if record.approved and record.raise_to is not None:
                self.raised[name] = record.raise_to
                self._status.set_step(
                    f"{record.approver} raised Limits.{name} to {record.raise_to:g}"
                )
                return
            by = "nobody answered in time" if record.timed_out else f"{record.approver} denied"
            why = f": {record.reason}" if record.reason and not record.timed_out else ""
            message = f"{message}; asked to go on, {by}{why}"
        self._status.fail("BudgetExceeded", message, details=details)
