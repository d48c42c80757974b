"""One run: its handle (RunHandle), its line in a listing (RunInfo) and its statuses."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, get_args, overload

import pydantic
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from ._final_answer import answers_are_checked
from ._history import read_run, run_input
from ._protocol import (
    APPROVE_UPDATE,
    END_CHAT_SIGNAL,
    PENDING_QUERY,
    SEND_UPDATE,
    STATUS_QUERY,
    ApprovalAnswer,
    ApprovalRecord,
    ChatMessage,
    ChatReply,
    PendingApproval,
    RunInput,
    RunResult,
    RunState,
    RunStatus,
)
from ._search import AGENT, COST, STATUS, TENANT, TOKENS, TURNS
from .errors import (
    ApprovalError,
    BudgetExceeded,
    ConfigError,
    GuardrailTripped,
    OutputValidationError,
    RatchetError,
    RunCancelled,
    RunFailed,
    RunNotFound,
)
from .events import (
    AgentSnapshotted,
    MessageRecorded,
    ModelCallFinished,
    OutputChecked,
    RunEvent,
    RunFinished,
    TokenDelta,
    TokensSuperseded,
)
from .messages import Message
from .output import TypedRunResult, type_name
from .streaming import DeltaStore, default_delta_store
from .transcripts import TranscriptStore

_log = logging.getLogger("ratchet.streaming")

__all__ = [
    "ACCEPT_TIMEOUT",
    "RUN_STATES",
    "TEMPORAL_ONLY_STATES",
    "TENANT_RE",
    "RunHandle",
    "RunInfo",
    "RunPage",
    "check_status",
    "check_tenant",
    "ratchet_spelling",
    "run_info",
    "typed_result",
]

T = TypeVar("T")


def typed_result(run_id: str, result: RunResult, output_type: type[T]) -> TypedRunResult[T]:
    """``result`` with its answer validated as ``output_type`` (pydantic).

    A structured answer is validated from its JSON; a text answer is the output itself
    for ``str``, else it is read as JSON (an agent told to answer in JSON).

    Raises:
        ConfigError: the answer is not an ``output_type``.
    """
    adapter: pydantic.TypeAdapter[T] = pydantic.TypeAdapter(output_type)
    try:
        if result.output_type is None and output_type is str:
            output = adapter.validate_python(result.output)
        else:
            output = adapter.validate_json(result.output)
    except pydantic.ValidationError as e:
        kind = f"a {result.output_type}" if result.output_type else "text"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(
            f"run {run_id}: its answer ({kind}) is not a valid {type_name(output_type)}: "
            f"{problems}. Ask for the agent's own output_type."
        ) from e
    return TypedRunResult(
        output=output,
        text=result.output,
        turns=result.turns,
        usage=result.usage,
        tool_calls=result.tool_calls,
        cost_usd=result.cost_usd,
        warnings=list(result.warnings),
    )


@dataclass(frozen=True)
class RunInfo:
    """One line of ``ratchet ls``."""

    id: str
    agent: str
    status: str
    """One of :data:`RUN_STATES`: ratchet's state (starting, queued, running,
    waiting-approval, waiting-input, completed, failed, cancelled), or Temporal's for a
    run it closed itself (terminated, timed_out)."""
    started: datetime | None
    closed: datetime | None
    turns: int | None = None
    """From search attributes, when the namespace has them."""
    tokens: int | None = None
    cost_usd: float | None = None
    tenant: str | None = None
    """Whose run it is (``AgentClient.start(tenant=...)``); None: no tenant."""


class RunPage(NamedTuple):
    """One page of :meth:`AgentClient.list_page`."""

    runs: list[RunInfo]
    next_page_token: str | None
    """Pass it as ``page_token`` for the next page; None: this was the last one."""


class RunHandle:
    """A handle to one run (a workflow execution), by its id."""

    def __init__(
        self,
        handle: WorkflowHandle[object, RunResult],
        client: Client,
        *,
        existed: bool = False,
        deltas: DeltaStore | None = None,
    ) -> None:
        self._handle = handle
        self._client = client
        self._existed = existed
        self._deltas = deltas

    @property
    def existed(self) -> bool:
        """Whether :meth:`AgentClient.start` found a run with this id and attached to it,
        instead of starting one."""
        return self._existed

    @property
    def id(self) -> str:
        """The run's workflow id."""
        return self._handle.id

    @overload
    async def result(self) -> RunResult: ...

    @overload
    async def result(self, output_type: type[T]) -> TypedRunResult[T]: ...

    async def result(self, output_type: Any = None) -> RunResult | TypedRunResult[Any]:
        """Wait for the run to finish.

        Args:
            output_type: the agent's output type (``Agent(output_type=...)``): the result
                then carries the answer as that type (a type checker follows it), in
                ``TypedRunResult.output``. Without it, ``RunResult.output`` is the
                answer's text (a structured answer's JSON; ``RunResult.data`` parsed).

        Raises:
            RunFailed: the run failed; ``error_type`` names the cause from the taxonomy
                (``OutputValidationError``, ``BudgetExceeded``... are subclasses).
            ConfigError: the answer is not an ``output_type`` (the agent has another).
        """
        result = await self._result()
        return result if output_type is None else typed_result(self.id, result, output_type)

    async def _result(self, run_id: str | None = None) -> RunResult:
        """The run's result (``run_id``: that execution's own, not following its
        continuations), raising its failure as ratchet's typed error."""
        handle = self._handle
        if run_id is not None:
            handle = self._client.get_workflow_handle(self.id, run_id=run_id, result_type=RunResult)
        try:
            return await handle.result(follow_runs=run_id is None)
        except WorkflowFailureError as e:
            if isinstance(e.cause, CancelledError):
                raise RunCancelled(self.id) from e
            cause = e.cause
            while cause.__cause__ is not None and not isinstance(cause, ApplicationError):
                cause = cause.__cause__
            if isinstance(cause, ApplicationError):
                if cause.type == "BudgetExceeded" and cause.details:
                    d = cause.details[0]
                    raise BudgetExceeded(
                        self.id,
                        cause.message,
                        d["budget"],
                        d["used"],
                        d["limit"],
                        spent_by=d.get("run_id"),
                    ) from e
                if cause.type == "GuardrailTripped":
                    d = cause.details[0] if cause.details else {}
                    d = d if isinstance(d, dict) else {}
                    raise GuardrailTripped(
                        self.id, cause.message, d.get("guardrail", ""), d.get("reason", "")
                    ) from e
                if cause.type == "OutputValidationError":
                    d = cause.details[0] if cause.details else {}
                    problem = d.get("problem", "") if isinstance(d, dict) else ""
                    raise OutputValidationError(self.id, cause.message, problem) from e
                raise RunFailed(self.id, cause.type or "ApplicationError", cause.message) from e
            raise RunFailed(self.id, type(cause).__name__, str(cause)) from e
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def status(self) -> RunStatus:
        """The run's live status (needs a worker to answer the query)."""
        status: RunStatus = await self._query(STATUS_QUERY, RunStatus)
        return status

    async def transcript(self, *, store: TranscriptStore | None = None) -> list[Message]:
        """Every message so far, the system instructions included, read from the event
        history of all the run's executions (no worker needed).

        A message enters the transcript when the workflow hands it to the model (tool
        results), or when the model answers; results recorded after the run's last
        model call close it. A fork's transcript opens with its parent's messages,
        which are in the transcript store: pass ``store`` to read them too.
        """
        messages: dict[int, Message] = {}
        async for event in self.events(follow=False, store=store):
            if isinstance(event, MessageRecorded):
                messages[event.index] = event.message
        return [messages[i] for i in sorted(messages)]

    async def events(
        self,
        after: int | str = 0,
        *,
        follow: bool = True,
        store: TranscriptStore | None = None,
        tokens: bool = True,
    ) -> AsyncIterator[RunEvent]:
        """The run's events (``ratchet.events``): the past ones, then the live ones.

        Each event comes once, in order. Past events are read from the event history;
        live ones arrive through the server's long poll on the history (one request
        waits until the run records something new), so following costs no polling.
        It ends after the run's final event (``run_finished``); across a
        continue-as-new it goes on with the next execution.

        While following, a model call that streams (``Agent(stream=True)``, the
        default) yields ``token`` events as its reply is written, read from the delta
        store (``ratchet.streaming``), and ``tokens_superseded`` when a retried attempt
        voids the earlier one's pieces. Its ``message`` event is authoritative.

        Args:
            after: resume after this cursor: an event's ``seq``, or a token's
                ``"seq:attempt:offset"`` (:func:`ratchet.events.cursor` gives both;
                0: from the start).
            follow: False stops at the end of what is recorded now (no tokens).
            store: a transcript store, to show prompts the history alone cannot
                resolve (see :func:`ratchet.events.events_of`).
            tokens: False leaves the token events out.

        Raises:
            RunNotFound: no run has that id.
            ValueError: ``after`` is not a cursor.
        """
        deltas = self._delta_store() if tokens and follow else None
        async for event in read_run(
            self._client, self.id, store=store, follow=follow, after=after, deltas=deltas
        ):
            yield event

    def _delta_store(self) -> DeltaStore | None:
        if self._deltas is None:
            # RATCHET_TRANSCRIPT_STORE's, else the embedded default: what workers use.
            try:
                self._deltas = default_delta_store()
            except Exception as e:
                # Tokens are a live view; the events themselves come from the history.
                _log.warning(
                    "no token events: the delta store cannot be opened (%s: %s)",
                    type(e).__name__,
                    e,
                )
        return self._deltas

    async def stream_text(self, *, delta: bool = False) -> AsyncIterator[str]:
        """The text of the run's model replies as it is written, until the run ends.

        By default each item is the whole text of the current reply so far: a UI
        replaces what it shows with it. A retried attempt starts over, and when a reply
        is recorded, its final text (authoritative; for a provider that did not
        stream, the only one) is yielded if it differs from what streamed. The next
        model call starts again from its first piece.

        With ``delta=True`` each item is only the new text: pieces of a superseded
        attempt cannot be taken back then (use :meth:`events` to see retries).
        """
        text = ""
        async for event in self.events():
            match event:
                case TokenDelta(kind="text"):
                    text += event.text
                    yield event.text if delta else text
                case TokensSuperseded():
                    text = ""
                case ModelCallFinished():
                    final = (event.response.content or "") if event.response else ""
                    if final and final != text:
                        yield final[len(text) :] if delta and final.startswith(text) else final
                    text = ""
                case _:
                    pass

    async def first_reply(self) -> str:
        """The agent's answer to the run's prompt: its first answer without tool calls
        (for an agent whose answers are checked, an output type's or output validators',
        the first accepted one: its text, a structured answer's JSON).

        For a chat run this returns as soon as the agent answers the opening message,
        while the run stays open for :meth:`send`.

        Raises:
            RunFailed: the run ended before answering.
        """
        checked = False
        async for event in self.events():
            match event:
                case AgentSnapshotted():
                    checked = answers_are_checked(event.spec)
                case OutputChecked() if event.answer is not None:
                    return event.answer
                case ModelCallFinished() if event.response is not None and not checked:
                    if not event.response.tool_calls:
                        return event.response.content or ""
                case RunFinished():
                    break
                case _:
                    pass
        return (await self.result()).output

    async def _query(self, name: str, result_type: Any) -> Any:
        try:
            # A query is answered by a worker; without one the server would hold it for
            # its full deadline, so fail fast and let callers say what is missing.
            return await self._handle.query(
                name, result_type=result_type, rpc_timeout=timedelta(seconds=5)
            )
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def input(self) -> RunInput:
        """What the run was started with (agent, prompt, model, chat, tenant)."""
        return await run_input(self._client, self.id)

    async def info(self) -> RunInfo:
        """The run's status as ``ratchet ls`` shows it, from the server (no worker needed):
        ratchet's state (``waiting-approval``, ``queued``, ``waiting-input``...) when
        the namespace has ratchet's search attributes, else Temporal's."""
        try:
            desc = await self._handle.describe()
        except RPCError as e:
            raise _not_found(self.id, e) from e
        info = await run_info(desc)
        assert info is not None  # describe() names the latest execution
        return info

    async def temporal_status(self) -> str:
        """Temporal's view of the execution: running, completed, failed, ..."""
        try:
            desc = await self._handle.describe()
        except RPCError as e:
            raise _not_found(self.id, e) from e
        return _status_name(desc.status)

    async def follow(self) -> AsyncIterator[Message]:
        """Yield each transcript message as it is recorded, until the run ends.

        Built on :meth:`events` (no polling). Call :meth:`result` afterwards for the
        outcome.
        """
        async for event in self.events():
            if isinstance(event, MessageRecorded):
                yield event.message

    async def pending(self) -> list[PendingApproval]:
        """Tool calls of this run waiting for approval."""
        pending: list[PendingApproval] = await self._query(PENDING_QUERY, list[PendingApproval])
        return pending

    async def approve(
        self,
        call_id: str,
        *,
        approver: str,
        reason: str = "",
        raise_to: float | None = None,
        proof: str | None = None,
    ) -> ApprovalRecord:
        """Approve a waiting tool call; it runs and the agent goes on.

        For a spent budget waiting for a decision (``Limits(on_budget="ask")``, tool
        ``budget``), approving lets the run go on with the budget raised to
        ``raise_to`` (default: by its configured amount beyond what the run used);
        the record's ``raise_to`` says to what.

        Args:
            call_id: the waiting call's id (:meth:`pending`).
            approver: who answers; the audit trail records this name.
            reason: why; shown to the model and in the audit trail.
            raise_to: budget decisions only: the budget's new limit.
            proof: :func:`ratchet.approval_proof.sign_approval` of this answer, by a
                service that authenticated ``approver``. Required when the workers
                have ``RATCHET_APPROVAL_SECRET`` set (authenticated approvals).

        Raises:
            ApprovalError: the call was answered already, or is not waiting, or
                ``raise_to`` is given for a tool call or is not above what was used,
                or the workers require a proof and ``proof`` is missing, expired or
                made for another answer (the call keeps waiting).
        """
        return await self._answer(call_id, True, approver, reason, raise_to, proof)

    async def deny(
        self, call_id: str, *, approver: str, reason: str = "", proof: str | None = None
    ) -> ApprovalRecord:
        """Deny a waiting tool call; the model is told who denied it and why.

        ``proof`` is as for :meth:`approve` (signed with ``approve=False``).
        """
        return await self._answer(call_id, False, approver, reason, None, proof)

    async def _answer(
        self,
        call_id: str,
        approve: bool,
        approver: str,
        reason: str,
        raise_to: float | None = None,
        proof: str | None = None,
    ) -> ApprovalRecord:
        answer = ApprovalAnswer(
            call_id=call_id,
            approve=approve,
            approver=approver,
            reason=reason,
            raise_to=raise_to,
            proof=proof,
        )
        record: ApprovalRecord = await self._update(
            APPROVE_UPDATE, answer, ApprovalRecord, ApprovalError
        )
        return record

    async def send(self, text: str) -> ChatReply:
        """Send a follow-up message to a chat run and wait for the agent's reply.

        Messages are answered in the order they arrive, one at a time.

        Raises:
            ConfigError: the run is not a chat, has ended, or the message is empty.
            RunFailed: the run failed while answering (e.g. ``GuardrailTripped``: a
                guardrail stopped this message).
        """
        reply: ChatReply = await self._update(
            SEND_UPDATE, ChatMessage(text=text), ChatReply, ConfigError, says_why_run_ended=True
        )
        return reply

    async def end_chat(self) -> None:
        """Close a chat run once the messages already sent are answered."""
        try:
            await self._handle.signal(END_CHAT_SIGNAL)
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def _update(
        self,
        name: str,
        arg: Any,
        result_type: type[Any],
        refused: type[RatchetError],
        *,
        says_why_run_ended: bool = False,
    ) -> Any:
        """Run an update: refused ones raise ``refused``; a run no worker picks up fails
        fast instead of hanging (the update needs a worker to be accepted).

        ``says_why_run_ended``: when the run fails before answering, raise its failure
        (a chat message a guardrail stopped raises ``GuardrailTripped``).
        """
        update = None
        try:
            update = await self._handle.start_update(
                name,
                arg,
                result_type=result_type,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=ACCEPT_TIMEOUT,
            )
            return await update.result()
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            ended_first = isinstance(cause, ApplicationError) and cause.type == _RUN_ENDED_FIRST
            if ended_first and says_why_run_ended and update is not None:
                await self._raise_failure_of(update.workflow_run_id)
            raise refused(f"run {self.id}: {message}") from e
        except WorkflowUpdateRPCTimeoutOrCancelledError as e:
            raise RatchetError(
                f"run {self.id}: no worker took the request within "
                f"{ACCEPT_TIMEOUT.total_seconds():.0f} s; is a worker running for its agent?"
            ) from e
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def _raise_failure_of(self, run_id: str | None) -> None:
        """Raise the failure of execution ``run_id``, if it failed; return if it completed
        or continued as new (its continuation does not answer the request either)."""
        try:
            described = await self._client.get_workflow_handle(self.id, run_id=run_id).describe()
        except RPCError:
            return
        if described.status in _FAILED_STATUSES:
            await self._result(run_id=described.run_id)

    async def cancel(self) -> None:
        """Ask the run to stop: in-flight model and tool calls are cancelled, the
        transcript is kept and :meth:`result` raises :class:`~ratchet.RunCancelled`."""
        try:
            await self._handle.cancel()
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def picked_up(self) -> bool:
        """Whether a worker has started working on the run (a workflow task started)."""
        try:
            async for event in self._handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    return True
        except RPCError as e:
            raise _not_found(self.id, e) from e
        return False


ACCEPT_TIMEOUT = timedelta(seconds=30)
_RUN_ENDED_FIRST = "AcceptedUpdateCompletedWorkflow"
"""The failure type the server gives an update whose run ended while it was running."""
_FAILED_STATUSES = (
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
)
TEMPORAL_ONLY_STATES = {"terminated": "Terminated", "timed_out": "TimedOut"}
TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
"""A tenant name: it goes into visibility queries, so no quotes, spaces or line breaks."""
_RATCHET_STATE = {"canceled": "cancelled"}


def ratchet_spelling(temporal_state: str) -> str:
    """Temporal's name of an execution state as ratchet writes it (``cancelled``)."""
    return _RATCHET_STATE.get(temporal_state, temporal_state)


RUN_STATES: tuple[str, ...] = (*get_args(RunState), "terminated", "timed_out")
"""Every status a run can have in ``ratchet ls``: ratchet's, and Temporal's own for runs
it closed itself (terminated, timed out)."""


def check_status(status: str) -> str:
    """``status`` if it is one of :data:`RUN_STATES`, else a ConfigError saying which are."""
    if status in RUN_STATES:
        return status
    hint = " (ratchet spells it 'cancelled')" if status == "canceled" else ""
    raise ConfigError(f"unknown status {status!r}{hint}; use one of: {', '.join(RUN_STATES)}")


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant name, else a ConfigError saying what is."""
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise ConfigError(
            f"bad tenant {tenant!r}: 1-64 letters, digits, '_', '-' or '.', e.g. acme"
        )
    return tenant


async def run_info(wf: WorkflowExecution) -> RunInfo | None:
    """One run as ``ratchet ls`` shows it; None for an earlier execution of a long run."""
    attrs = wf.typed_search_attributes
    temporal_state = _status_name(wf.status)
    if temporal_state == "continued_as_new":
        return None
    name = attrs.get(AGENT) or str(await _memo_field(wf, "agent") or "?")
    tenant = attrs.get(TENANT) or await _memo_field(wf, "tenant")
    # A run closed by Temporal itself (terminated, timed out) never reported it.
    state = (
        temporal_state
        if temporal_state in ("terminated", "timed_out")
        else attrs.get(STATUS) or _RATCHET_STATE.get(temporal_state, temporal_state)
    )
    return RunInfo(
        id=wf.id,
        agent=name,
        status=state,
        started=wf.start_time,
        closed=wf.close_time,
        turns=attrs.get(TURNS),
        tokens=attrs.get(TOKENS),
        cost_usd=attrs.get(COST),
        tenant=str(tenant) if tenant is not None else None,
    )


async def _memo_field(wf: WorkflowExecution, key: str) -> Any:
    """A start memo field: runs started without (some of) the search attributes keep
    their agent and tenant there too. Only fields present are decoded."""
    if key not in wf.raw_info.memo.fields:
        return None
    return await wf.memo_value(key, None)


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"


def _not_found(run_id: str, e: RPCError) -> Exception:
    if e.status == RPCStatusCode.NOT_FOUND and "already completed" in e.message:
        return ConfigError(f"run {run_id!r} has already ended")
    if e.status == RPCStatusCode.NOT_FOUND:
        return RunNotFound(f"no run with id {run_id!r}; list runs with `ratchet ls`")
    return e
