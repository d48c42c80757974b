"""The run's status: what the status query returns, the Web UI's current-details line,
and the search attributes a namespace may index (state, turn, tokens, cost)."""

from __future__ import annotations

from typing import Any, NoReturn, assert_never

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from .._protocol import ApprovalRecord, Carried, PendingApproval, RunResult, RunStatus
    from .._search import COST, STATUS, TOKENS, TURNS
    from ..agent import IncompleteAnswerAction
    from ..errors import RunErrorType
    from ..messages import Usage

from ._failures import ActivityFailure
from ._patches import LEAN_VERSION

__all__ = ["Status"]


class Status:
    """The run's ``RunStatus`` and every change to it that others can see."""

    def __init__(
        self, search_attributes: bool, carried: Carried | None, *, run_version: int
    ) -> None:
        self._search_attributes = search_attributes
        self.run_version = run_version
        """``RunInput.version``: the behaviour this run replays (``_patches``)."""
        self._published: str | None = workflow.info().typed_search_attributes.get(STATUS)
        """The state the search attributes show: the start's, then the last upsert's."""
        parent = workflow.info().parent
        self.parent_run = parent.workflow_id if parent is not None else None
        """The calling run's id, for a sub-agent's run."""
        # Restored here, before any handler runs: an approval answer may arrive in the
        # first workflow task of a continued execution.
        self.current = (
            carried.status.model_copy()
            if carried is not None
            else RunStatus(agent="", state="starting", step="starting")
        )

    def start(self, agent: str) -> None:
        self.current = RunStatus(agent=agent, state="starting", step="loading agent")

    def forked(self, agent: str, turn: int, active_agent: str | None) -> None:
        """A fork: its first model call is ``turn`` (numbers go on from the parent's), by
        ``active_agent`` when the parent had handed the conversation off by then."""
        self.start(agent)
        self.current.turn = turn - 1
        self.current.active_agent = active_agent

    def queued(self) -> None:
        """Waiting for a concurrency cap's slot."""
        self.current.state = "queued"

    def running(self) -> None:
        self.current.state = "running"
        self.publish()

    def waiting_for_message(self) -> None:
        """A chat waits for the next user message."""
        self.current.state = "waiting-input"
        self.set_step("waiting for the next message")
        self.publish()

    def show_approvals(self, pending: list[PendingApproval]) -> None:
        """The requests waiting for a person; the run waits while there are any."""
        s = self.current
        s.pending_approvals = pending
        if pending:
            s.state = "waiting-approval"
            self.set_step(f"waiting for approval of {', '.join(p.call_id for p in pending)}")
        elif s.state == "waiting-approval":
            s.state = "running"
        self.publish()

    def approval_ended(self, record: ApprovalRecord) -> None:
        self.current.approvals.append(record)

    def continued(self, waiting_for_input: bool) -> None:
        """A new execution of the run took over (continue-as-new)."""
        s = self.current
        s.execution += 1
        s.state = "waiting-input" if waiting_for_input else "running"
        self.set_step(f"continued as new (execution {s.execution})")

    def next_turn(self) -> int:
        # Turn numbers run on across a chat's messages: activity ids stay unique.
        self.current.turn += 1
        self.set_step(f"model call (turn {self.current.turn})")
        return self.current.turn

    def account(self, usage: Usage, cost_usd: float | None) -> None:
        """Add a model call's tokens and cost to the run's totals."""
        s = self.current
        s.usage = s.usage + usage
        if cost_usd is None:
            s.unpriced_calls += 1
        else:
            s.cost_usd += cost_usd

    def subagent_finished(self, usage: Usage, cost_usd: float, unpriced_calls: int) -> None:
        """Add a sub-agent run's totals (over its whole tree) to this run's."""
        s = self.current
        s.usage = s.usage + usage
        s.cost_usd += cost_usd
        s.unpriced_calls += unpriced_calls
        s.subagent_runs += 1
        self.publish()

    def handed_off(self, agent: str) -> None:
        """The conversation went to ``agent`` (a handoff)."""
        self.current.active_agent = agent
        self.set_step(f"handed off to {agent}")

    def tools_called(self, count: int) -> None:
        self.current.tool_calls += count

    def compacted(self) -> None:
        """Older turns were dropped or summarized to fit the context window."""
        self.current.compactions += 1

    def complete(
        self, output: str, *, output_type: str | None = None, data: Any = None
    ) -> RunResult:
        """The run's result: the answer's text, and for a structured answer its type's
        name and its parsed JSON."""
        s = self.current
        s.state = "completed"
        s.output = output
        self.set_step("completed")
        self.publish()
        return RunResult(
            output=output,
            turns=s.turn,
            usage=s.usage,
            tool_calls=s.tool_calls,
            cost_usd=s.cost_usd,
            unpriced_calls=s.unpriced_calls,
            warnings=list(s.warnings),
            output_type=output_type,
            data=data,
        )

    def incomplete_answer(self, problem: str, how: IncompleteAnswerAction) -> None:
        """A final answer that may not be whole: a warning, or (``fail``) the run's end."""
        match how:
            case "warn":
                self.current.warnings.append(problem)
            case "fail":
                self.fail("IncompleteAnswer", problem)
            case _:
                assert_never(how)

    def cancelled(self) -> None:
        self.current.state = "cancelled"
        self.current.pending_approvals = []
        self.set_step("cancelled")
        self.publish()

    def fail(
        self, error_type: RunErrorType, message: str, *, details: dict[str, Any] | None = None
    ) -> NoReturn:
        """End the run with a failure of the taxonomy."""
        self._fail(error_type, message, details)

    def fail_from(self, failure: ActivityFailure, context: str = "") -> NoReturn:
        """End the run with an activity's failure, under the type the activity gave it."""
        self._fail(failure.type, context + failure.message, None)

    def _fail(self, error_type: str, message: str, details: dict[str, Any] | None) -> NoReturn:
        self.current.state = "failed"
        self.current.error = f"{error_type}: {message}"
        self.set_step("failed")
        self.publish()
        if self.parent_run is not None:
            # A sub-agent's parent reads what the child spent from its failure, and
            # which run in the tree spent a budget (the deepest one says first).
            s = self.current
            details = {
                "run_id": workflow.info().workflow_id,
                **(details or {}),
                "spent": {
                    "usage": s.usage.model_dump(),
                    "cost_usd": s.cost_usd,
                    "unpriced_calls": s.unpriced_calls,
                },
            }
        raise ApplicationError(
            message, *([details] if details else []), type=error_type, non_retryable=True
        )

    def publish(self) -> None:
        """Mirror the status into search attributes (when the namespace has them).

        Each upsert is a history event and a visibility write. Since version 2 a run
        upserts only when its state changes (waiting for approval, completed...), with
        the turn, tokens and cost of that moment; ``RunStatus`` (the status query) has
        them live. Runs recorded before upserted after every model call, and replay so.
        """
        if not self._search_attributes:
            return
        s = self.current
        if self.run_version >= LEAN_VERSION:
            if s.state == self._published:
                return
            self._published = s.state
        workflow.upsert_search_attributes(
            [
                STATUS.value_set(s.state),
                TURNS.value_set(s.turn),
                TOKENS.value_set(s.usage.total_tokens),
                COST.value_set(round(s.cost_usd, 6)),
            ]
        )

    def set_step(self, step: str) -> None:
        self.current.step = step
        workflow.set_current_details(
            f"**{self.current.agent}** · turn {self.current.turn} · {step}"
        )
