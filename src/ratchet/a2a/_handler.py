"""A2A requests mapped to ratchet runs: the request handler behind the A2A endpoint.

- ``SendMessage`` / ``SendStreamingMessage`` (``message/send``, ``message/stream`` in
  A2A 0.3) without a task start a run of the endpoint's agent with the message's
  text (a chat when its metadata says ``"chat": true``); the task id is the run id
  (``ratchet.a2a._ids``). With a task, the message continues it: an approval
  decision answers a waiting call, text is a chat's next message, ``end_chat`` ends a
  chat (``ratchet.a2a._incoming``). The answer streams, or (``message/send``) the
  request waits until the task is ``completed``, ``failed``, ``canceled`` or
  ``input-required`` and returns it.
- ``GetTask`` reads the run; ``SubscribeToTask`` follows it; ``CancelTask`` cancels
  the run and waits (a few seconds) for it to stop.

It keeps no state of its own: every answer is read from the run's events, so any
number of servers can answer for the same tasks and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass

from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    ExtendedAgentCardNotConfiguredError,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    InternalError,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    PushNotificationNotSupportedError,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    UnsupportedOperationError,
)
from a2a.utils.errors import A2AError
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import apply_history_length, validate_history_length

from .._protocol import ChatReply, RunInput
from ..client import AgentClient, RunHandle
from ..errors import RunNotFound
from ..http._context import run_visible_to, start_as
from ..transcripts import TranscriptStore
from ._caller import Caller, caller_of
from ._errors import a2a_error
from ._ids import new_task_id
from ._incoming import Decision, Incoming, read_message
from ._reading import TaskReader
from ._states import state_name
from ._view import TaskView

__all__ = ["RunTaskHandler"]

_log = logging.getLogger("ratchet.a2a")


@dataclass
class _Turn:
    """A message taken: the run, its task so far, and what is still under way."""

    handle: RunHandle
    view: TaskView
    sending: asyncio.Future[ChatReply] | None = None
    """A chat message on its way to the run (an update that returns with the reply)."""
    follow: bool = True
    """Whether the run's next events belong to this exchange (False: it waits for the
    client, or has ended)."""


class RunTaskHandler(RequestHandler):
    """The A2A request handler of ratchet agents (``a2a.server.request_handlers``).

    Args:
        client: starts and reads the runs.
        sign_approval: ``ratchet.approval_proof.sign_approval`` bound to the
            deployment's approval secret, when the workers require authenticated
            approvals (``RATCHET_APPROVAL_SECRET``).
        cancel_wait_seconds: how long ``tasks/cancel`` waits for the run to stop
            before it answers with the task as it is.
        transcript_store: the workers' transcript store, to read runs whose prompts
            the history alone cannot rebuild (after a compaction).
    """

    def __init__(
        self,
        client: AgentClient,
        *,
        sign_approval: Callable[..., str] | None = None,
        cancel_wait_seconds: float = 10.0,
        transcript_store: TranscriptStore | None = None,
    ) -> None:
        self._client = client
        self._sign_approval = sign_approval
        self._cancel_wait_seconds = cancel_wait_seconds
        self._reader = TaskReader(transcript_store)
        self._background: set[asyncio.Future[ChatReply]] = set()
        """Chat messages still on their way after their exchange ended: never cancelled
        (that could drop the message), kept here until they land."""

    # --- messages ----------------------------------------------------------------------

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        with _translated():
            validate_proto_required_fields(params)
            validate_history_length(params.configuration)
            turn = await self._open(params, context)
            if turn.follow and not params.configuration.return_immediately:
                async with aclosing(self._follow(turn)) as events:
                    async for _ in events:
                        pass
            else:
                self._detach(turn)
            return apply_history_length(turn.view.task(), params.configuration)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        with _translated():
            validate_proto_required_fields(params)
            validate_history_length(params.configuration)
            turn = await self._open(params, context)
            yield apply_history_length(turn.view.task(), params.configuration)
            if not turn.follow:
                self._detach(turn)
                return
            async with aclosing(self._follow(turn)) as events:
                async for event in events:
                    yield event

    async def _open(self, params: SendMessageRequest, context: ServerCallContext) -> _Turn:
        """Take a message: start a task, or act on the one it names."""
        caller = caller_of(context)
        message = params.message
        incoming = read_message(message)
        if message.task_id and message.context_id and message.task_id != message.context_id:
            raise InvalidParamsError(
                f"contextId {message.context_id!r} is not the context of task "
                f"{message.task_id!r} (a task's context id is its id)"
            )
        target = message.task_id or message.context_id
        if target:
            try:
                handle, run_input = await self._visible(caller, target)
            except TaskNotFoundError:
                if message.task_id:
                    raise
                # A context ratchet did not give out: the message starts a new task.
            else:
                return await self._continue(caller, handle, run_input, incoming)
        return await self._start(caller, message, incoming)

    async def _start(self, caller: Caller, message: Message, incoming: Incoming) -> _Turn:
        caller.require("operator", "starting a task")
        if incoming.decisions or incoming.end_chat:
            raise InvalidParamsError(
                "approval decisions and end_chat answer an existing task: set the "
                "message's taskId to the task's id"
            )
        if not incoming.text.strip():
            raise InvalidParamsError("the message has no text for the agent")
        run_id = new_task_id(
            caller.agent,
            message.message_id,
            tenant=caller.principal.tenant,
            context_id=message.context_id,
        )
        handle = await start_as(
            self._client,
            caller.principal,
            caller.agent,
            incoming.text,
            id=run_id,
            chat=incoming.chat,
        )
        if handle.existed:  # the same message again: its task as it is now
            view = await self._reader.fold(handle, caller.agent)
            return _Turn(handle, view, follow=not view.settled)
        view = TaskView(run_id, agent=caller.agent)
        view.open(incoming.text, chat=incoming.chat)
        return _Turn(handle, view)

    async def _continue(
        self, caller: Caller, handle: RunHandle, run_input: RunInput, incoming: Incoming
    ) -> _Turn:
        view = await self._reader.fold(handle, run_input.agent)
        ended = (
            f"task {handle.id!r} has ended ({state_name(view.state)}) and takes no more "
            "messages; send a message without a taskId to start a new task"
        )
        if incoming.decisions:
            caller.require("approver", "answering an approval")
            if view.final:
                raise UnsupportedOperationError(ended)
            for decision in incoming.decisions:
                await self._decide(caller, handle, view, decision, incoming.text)
            view.accepted()
            return _Turn(handle, view)
        caller.require("operator", "sending a task a message")
        if view.final:
            raise UnsupportedOperationError(ended)
        if incoming.end_chat:
            if not view.chat:
                raise InvalidParamsError(
                    f"task {handle.id!r} is not a chat; stop it with tasks/cancel instead"
                )
            await handle.end_chat()
            view.accepted()
            return _Turn(handle, view)
        if view.pending:
            raise InvalidParamsError(
                f"task {handle.id!r} waits for an approval, not a message: {view.approval_hint()}"
            )
        if not view.chat:
            raise InvalidParamsError(
                f"task {handle.id!r} is not a chat, so it takes no follow-up messages; start "
                'a task as a chat (message metadata {"chat": true}) to send it more'
            )
        if not view.awaiting_message:
            raise InvalidParamsError(
                f"task {handle.id!r} is still working on the previous message; send the next "
                "one once the task is input-required"
            )
        if not incoming.text.strip():
            raise InvalidParamsError("the message has no text for the agent")
        sending = asyncio.ensure_future(handle.send(incoming.text))
        view.accepted()
        return _Turn(handle, view, sending=sending)

    async def _decide(
        self, caller: Caller, handle: RunHandle, view: TaskView, decision: Decision, text: str
    ) -> None:
        call_id = decision.call_id
        if call_id is None:
            if len(view.pending) != 1:
                waiting = ", ".join(view.pending) or "none"
                raise InvalidParamsError(
                    f'name the call to answer with "call_id" (task {handle.id!r} has '
                    f"{len(view.pending)} waiting: {waiting})"
                )
            [call_id] = view.pending
        approver = caller.principal.name
        reason = decision.reason or text
        raise_to = decision.raise_to if decision.approve else None
        proof = None
        if self._sign_approval is not None:
            proof = self._sign_approval(
                run_id=handle.id,
                call_id=call_id,
                approve=decision.approve,
                approver=approver,
                raise_to=raise_to,
            )
        if decision.approve:
            await handle.approve(
                call_id, approver=approver, reason=reason, raise_to=raise_to, proof=proof
            )
        else:
            await handle.deny(call_id, approver=approver, reason=reason, proof=proof)

    # --- tasks -------------------------------------------------------------------------

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        with _translated():
            validate_proto_required_fields(params)
            validate_history_length(params)
            caller = caller_of(context)
            caller.require("viewer", "reading a task")
            handle, run_input = await self._visible(caller, params.id)
            view = await self._reader.fold(handle, run_input.agent)
            return apply_history_length(view.task(), params)

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        with _translated():
            validate_proto_required_fields(params)
            caller = caller_of(context)
            caller.require("operator", "canceling a task")
            handle, run_input = await self._visible(caller, params.id)
            view = await self._reader.fold(handle, run_input.agent)
            if view.final:
                raise TaskNotCancelableError(
                    f"task {handle.id!r} has already ended ({state_name(view.state)})"
                )
            await handle.cancel()
            # The run stops within moments (in-flight calls are cancelled); a task
            # still stopping after the wait is answered as it is.
            await self._reader.until_final(handle, view, self._cancel_wait_seconds)
            return view.task()

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        with _translated():
            validate_proto_required_fields(params)
            caller = caller_of(context)
            caller.require("viewer", "following a task")
            handle, run_input = await self._visible(caller, params.id)
            view = await self._reader.fold(handle, run_input.agent)
            if view.final:
                raise UnsupportedOperationError(
                    f"task {handle.id!r} has ended ({state_name(view.state)}); read it with GetTask"
                )
            yield view.task()
            if view.settled:
                return
            async with aclosing(self._follow(_Turn(handle, view))) as events:
                async for event in events:
                    yield event

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError(
            "listing tasks is not supported over A2A; GET /v1/runs?agent=NAME lists runs"
        )

    # --- reading runs ------------------------------------------------------------------

    async def _visible(self, caller: Caller, task_id: str) -> tuple[RunHandle, RunInput]:
        """The run behind ``task_id``, if it is a run of the caller's agent and tenant.

        Raises:
            TaskNotFoundError: no such run, another tenant's, or another agent's (the
                same answer, so no one learns which ids exist elsewhere).
        """
        try:
            handle, run_input = await run_visible_to(self._client, caller.principal, task_id)
        except RunNotFound:
            run_input = None
        if run_input is None or run_input.agent != caller.agent:
            raise TaskNotFoundError(f"agent {caller.agent} has no task {task_id!r}")
        return handle, run_input

    async def _follow(self, turn: _Turn) -> AsyncGenerator[Event]:
        """The A2A events of the run from where the turn took it, until the task ends or
        waits for the client; then a chat message still on its way is left to land."""
        try:
            async with aclosing(
                self._reader.follow(turn.handle, turn.view, turn.sending)
            ) as events:
                async for event in events:
                    yield event
        finally:
            self._detach(turn)

    def _detach(self, turn: _Turn) -> None:
        """Let a chat message still on its way land after its exchange has ended."""
        sending, turn.sending = turn.sending, None
        if sending is None or sending.done():
            return
        self._background.add(sending)
        sending.add_done_callback(self._landed)

    def _landed(self, sending: asyncio.Future[ChatReply]) -> None:
        self._background.discard(sending)
        if not sending.cancelled() and (error := sending.exception()) is not None:
            _log.warning("a chat message sent over A2A failed after its exchange: %s", error)

    # --- what ratchet does not offer over A2A -----------------------------------------

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError


@contextmanager
def _translated() -> Iterator[None]:
    """ratchet's errors as A2A errors; an unexpected one is logged with its traceback."""
    try:
        yield
    except A2AError:
        raise
    except Exception as e:
        error = a2a_error(e)
        if isinstance(error, InternalError):
            _log.error("an A2A request failed", exc_info=e)
        raise error from e
