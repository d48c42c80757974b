"""`ratchet chat` and `send`: conversations with an agent."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .. import events as ev
from .._final_answer import answers_are_checked
from .._protocol import DEFAULT_TASK_QUEUE, ChatReply
from .._render import describe_event, describe_tool_start
from ..client import AgentClient, RunHandle
from ..errors import ConfigError
from ._common import Address, Namespace, Stream, TaskQueue, _run, out
from ._replies import ReplyPrinter

_CATCH_UP_SECONDS = 10.0
"""How long the reply's events may lag behind the answered ``send`` before the reply is
printed from the answer alone (a reply no model call wrote, say)."""


@_run
async def chat(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    id: Annotated[str | None, typer.Option("--id", help="Run id of the conversation.")] = None,
    model: Annotated[str | None, typer.Option(help="Override the model.")] = None,
    stream: Stream = True,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Talk with an agent: each line you type is a message; Ctrl-D or /exit ends.

    Replies print as they are written, and tool calls as they start and finish.
    """
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle: RunHandle | None = None
    follower: _Conversation | None = None
    while True:
        try:
            text = await asyncio.to_thread(input, "you> ")
        except EOFError:
            text = "/exit"
        if text.strip() in ("/exit", "/quit"):
            break
        if not text.strip():
            continue
        if handle is None or follower is None:
            handle = await client.start(
                agent, text, id=id, model=model, chat=True, check_hosted=True
            )
            out.print(f"(run {handle.id})", markup=False)
            follower = _Conversation(handle, agent, stream=stream)
            await follower.first_reply()
        else:
            await follower.reply_to(text)
    if handle is not None:
        await handle.end_chat()
        out.print(f"(chat ended; `ratchet trace {handle.id}` shows it)", markup=False)


class _Conversation:
    """Prints a chat run's replies (streamed, unless told not to) and the tool calls
    made for them, following the run's events from one reply to the next."""

    def __init__(self, handle: RunHandle, agent: str, *, stream: bool) -> None:
        self._handle = handle
        self._agent = agent
        self._stream = stream
        self._after = 0
        """The last recorded event printed or passed over."""
        self._replies = ReplyPrinter(out, lambda _: f"{agent}> ")
        self._checked = False
        """The agent's answers are checked (output type, validators): a reply counts once
        accepted (an ``output_checked`` event with the answer), not when written."""
        self._streamed: str | None = None
        """The text of a checked reply that streamed whole (not printed again)."""

    async def first_reply(self) -> None:
        """Print the answer to the opening message."""
        if not await self._follow_to_reply():
            # The run ended without answering: its result says why (RunFailed).
            self._print_reply((await self._handle.result()).output)

    async def reply_to(self, text: str) -> None:
        """Send a message; print the reply (and its tool calls) as it is written."""
        following = asyncio.create_task(self._follow_to_reply(text))
        try:
            answer: ChatReply = await self._handle.send(text)
            # The reply is recorded by now; its events may still be on their way.
            done, _ = await asyncio.wait({following}, timeout=_CATCH_UP_SECONDS)
            printed = following.result() if done else False
        finally:
            following.cancel()
        if not printed:
            self._replies.end_line()
            self._print_reply(answer.output)

    async def _follow_to_reply(self, message: str | None = None) -> bool:
        """Print events until the model answers without tool calls (True), or the run
        ends (False); with ``message``, only those after that message of the person
        (others may talk in the same chat: `ratchet send`)."""
        events = self._handle.events(after=self._after, tokens=self._stream)
        async for event in events:
            if not isinstance(event, ev.TokenDelta | ev.TokensSuperseded):
                self._after = event.seq
            if message is not None:
                if _says(event, message):
                    message = None
                continue
            match event:
                case ev.TokenDelta():
                    self._replies.token(event)
                case ev.TokensSuperseded():
                    self._replies.superseded(event)
                case ev.AgentSnapshotted():
                    self._checked = answers_are_checked(event.spec)
                case ev.ModelCallFinished() if self._checked:
                    # Written, not accepted yet: the answer prints once accepted, unless
                    # it is this reply and streamed whole.
                    whole = self._replies.finished(event)
                    self._streamed = event.response.content if whole and event.response else None
                    self._print(describe_event(event, self._handle.id) if event.error else None)
                case ev.OutputChecked() if event.answer is not None:
                    if event.answer != self._streamed:
                        self._print_reply(event.answer)
                    return True
                case ev.ModelCallFinished() if event.response and not event.response.tool_calls:
                    if not self._replies.finished(event):
                        self._print_reply(event.response.content or "")
                    return True
                case ev.ModelCallFinished():
                    self._replies.finished(event)  # a reply with calls: they print as they run
                    self._print(describe_event(event, self._handle.id) if event.error else None)
                case ev.ToolCallStarted():
                    self._print(describe_tool_start(event))
                case ev.MessageRecorded():
                    pass  # the person's own messages, and the replies printed above
                case ev.RunFinished():
                    return False
                case _:
                    self._print(describe_event(event, self._handle.id))
        return False

    def _print(self, line: str | None) -> None:
        if line:
            self._replies.end_line()
            out.print(line, markup=False)

    def _print_reply(self, text: str) -> None:
        out.print(f"{self._agent}> {text}", markup=False)


def _says(event: ev.RunEvent, text: str) -> bool:
    """Whether ``event`` records the person's message ``text``."""
    return (
        isinstance(event, ev.MessageRecorded)
        and event.message.role == "user"
        and event.message.content == text
    )


@_run
async def send(
    run_id: Annotated[str, typer.Argument(help="The chat run's id.")],
    message: Annotated[str, typer.Argument(help="The message.")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Send one message to a chat run and print the agent's reply."""
    if not message.strip():
        raise ConfigError("the message is empty")
    client = await AgentClient.connect(address, namespace=namespace)
    reply = await client.get(run_id).send(message)
    out.print(reply.output, markup=False)
