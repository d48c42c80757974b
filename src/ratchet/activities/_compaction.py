"""Context windows: the prompt-size check, and the activity that compacts a prompt
that does not fit (drop or summarize older turns).
"""

from __future__ import annotations

from typing import assert_never

from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._heartbeat import counted_attempts
from .._protocol import COMPACT_ACTIVITY, CompactRequest, CompactResult, ModelRequest
from ..messages import Message, Usage, message_hash
from ..pricing import cost_of
from ..transcripts import save_messages
from ._base import ActivitiesBase

__all__ = ["CompactionActivities", "check_window"]


class CompactionActivities(ActivitiesBase):
    """Compaction of a prompt too long for the model's window."""

    @activity.defn(name=COMPACT_ACTIVITY)
    async def compact_transcript(self, request: CompactRequest) -> CompactResult:
        """Shrink a prompt that does not fit the context: drop or summarize older turns."""
        prompt = await self._prompt(request.head, [])
        keep, old = _split_for_compaction(prompt, request.context_window_tokens)
        if not old:
            raise ApplicationError(
                f"the prompt of turn {request.turn} (about {_tokens(prompt):,} tokens) does not "
                "fit the model's context window and nothing is left to drop: the system "
                "prompt, pinned messages and the latest turn alone are too long. Use a model "
                "with a larger window, or lower the tools' max_result_chars.",
                type="ContextTooLong",
                non_retryable=True,
            )
        summary: Message | None = None
        usage = Usage()
        cost: float | None = None
        match request.strategy:
            case "drop_oldest":
                pass
            case "summarize":
                summary, usage, cost = await self._summarize(request, old)
            case _:
                assert_never(request.strategy)
        kept = _merge(prompt, keep, summary)
        head = await save_messages(self.store, None, kept)
        assert head is not None
        return CompactResult(
            head=head,
            kept=[message_hash(m) for m in kept],
            dropped=len(old),
            summary=summary,
            usage=usage,
            cost_usd=cost,
        )

    async def _summarize(
        self, request: CompactRequest, old: list[Message]
    ) -> tuple[Message, Usage, float | None]:
        """Have the model summarize ``old``: the summary message, its usage and cost."""
        provider, model_name, key = self._provider_ref(request.model)
        ask = ModelRequest(
            agent=request.agent,
            model=request.model,
            turn=request.turn,
            messages=[
                Message.system(_SUMMARY_INSTRUCTIONS),
                Message.user("\n\n".join(_render_for_summary(m) for m in old)),
            ],
            timeout_seconds=request.timeout_seconds,
            heartbeat_seconds=request.heartbeat_seconds,
        )
        with counted_attempts() as summarizing:
            reply = await self._send(ask, provider, model_name, key)
        usage = summarizing.usage()
        summary = Message.system(
            f"Summary of {len(old)} earlier messages: {reply.message.content or ''}"
        )
        return summary, usage, cost_of(request.model, usage, self.prices)


_SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation below for the assistant who continues it: keep facts, "
    "decisions, open questions and tool results that matter. Be brief."
)


def _tokens(messages: list[Message]) -> int:
    """A rough token estimate (4 characters a token): no tokenizer for every model."""
    chars = 0
    for m in messages:
        chars += len(m.content or "") + 8
        for c in m.tool_calls or []:
            chars += len(c.arguments) + len(c.name)
    return chars // 4


def check_window(prompt: list[Message], window: int | None) -> None:
    """Fail a model call whose prompt is over the window before sending it: the
    workflow then compacts (``ContextTooLong``)."""
    if window is not None and (tokens := _tokens(prompt)) > window:
        raise ApplicationError(
            f"the prompt is about {tokens:,} tokens, over the model's context window of "
            f"{window:,} (Limits.context_window_tokens)",
            type="ContextTooLong",
            non_retryable=True,
        )


def _split_for_compaction(
    prompt: list[Message], window: int | None
) -> tuple[list[int], list[Message]]:
    """Which messages to keep (indices) and which older ones to drop or summarize.

    Kept always: system messages, pinned messages and the latest turn. The rest is cut
    in units (an assistant message with its tool results is one unit, never split),
    oldest first: until the estimate fits in 3/4 of the window, or half of the units
    when no window is configured (the provider said "too long" without a number).
    """
    units: list[list[int]] = []
    for i, m in enumerate(prompt):
        if m.role == "system" or m.pinned:
            continue
        if m.role == "tool" and units and prompt[units[-1][0]].tool_calls:
            units[-1].append(i)
        else:
            units.append([i])
    # The latest turn stays: from the last user message on (or the last unit).
    last_user = max((n for n, u in enumerate(units) if prompt[u[0]].role == "user"), default=-1)
    droppable = units[: max(last_user, len(units) - 1) if last_user < 0 else last_user]
    if window is None:
        cut = droppable[: max(1, len(droppable) // 2)] if droppable else []
    else:
        cut = []
        total = _tokens(prompt)
        target = window * 3 // 4
        for unit in droppable:
            if total <= target:
                break
            cut.append(unit)
            total -= _tokens([prompt[i] for i in unit])
        if not cut and droppable:
            cut = droppable[:1]
    dropped = {i for u in cut for i in u}
    keep = [i for i in range(len(prompt)) if i not in dropped]
    return keep, [prompt[i] for i in sorted(dropped)]


def _merge(prompt: list[Message], keep: list[int], summary: Message | None) -> list[Message]:
    """The kept messages in order, with the summary where the dropped ones were."""
    out = [prompt[i] for i in keep]
    if summary is not None:
        first_dropped = next((n for n, i in enumerate(keep) if i != n), len(keep))
        out.insert(first_dropped, summary)
    return out


def _render_for_summary(m: Message) -> str:
    calls = "".join(f" [calls {c.name}({c.arguments})]" for c in m.tool_calls or [])
    return f"{m.role}{f' ({m.name})' if m.name else ''}: {m.content or ''}{calls}"
