"""Rebuilding the exact prompt of each linear-history model call from its history."""

from __future__ import annotations

from typing import Any

from ._protocol import CompactResult, ModelRequest, ModelResponse
from .errors import TranscriptEntryMissing
from .messages import Message, chain_hash, message_hash
from .transcripts import TranscriptStore, load_prompt, load_tools

__all__ = ["PLACEHOLDER", "Prompts"]

PLACEHOLDER = "[ratchet: "
"""How the system notes start that stand in for messages the reader could not resolve."""


class Prompts:
    """Rebuilds the exact prompt of each linear-history model call.

    Every message the history records is indexed by its content hash, and every chain
    head by the prompt it names, so a reference resolves without the store unless the
    history cannot name it (then ``store`` is asked, when given).
    """

    def __init__(self, store: TranscriptStore | None, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.by_hash: dict[str, Message] = {}
        self.heads: dict[str, list[Message]] = {}
        self._tools: dict[str, Any] = {}
        self.resolved = True
        """Whether the latest prompt :meth:`of` built came whole (no placeholder for
        messages neither the history nor the store had)."""

    def learn(self, messages: list[Message]) -> None:
        for m in messages:
            self.by_hash.setdefault(message_hash(m), m)

    async def tools(self, ref: str) -> list[Any]:
        if ref in self._tools:
            return list(self._tools[ref])
        if self.store is None:
            return []
        try:
            tools = await load_tools(self.store, ref, run_id=self.run_id)
        except TranscriptEntryMissing:
            return []
        self._tools[ref] = tools
        return list(tools)

    async def of(self, req: ModelRequest) -> list[Message]:
        base: list[Message] = []
        self.resolved = True
        if req.transcript_ref is not None:
            known = self.heads.get(req.transcript_ref)
            if known is None and self.store is not None:
                try:
                    known = await load_prompt(
                        self.store, req.transcript_ref, [], run_id=self.run_id
                    )
                except TranscriptEntryMissing as e:
                    self.resolved = False
                    known = [Message.system(f"{PLACEHOLDER}earlier messages unavailable: {e}]")]
            self.resolved = self.resolved and known is not None
            base = known or [
                Message.system(
                    f"{PLACEHOLDER}earlier messages are in the transcript store under "
                    f"{req.transcript_ref}; pass a store to show them]"
                )
            ]
        new: list[Message] = []
        for entry in req.appended:
            if isinstance(entry, Message):
                new.append(entry)
            elif entry in self.by_hash:
                new.append(self.by_hash[entry])
            else:
                self.resolved = False
                new.append(Message.system(f"{PLACEHOLDER}message {entry} not in the history]"))
        prompt = base + new
        self.learn(prompt)
        head = req.transcript_ref
        for m in new:
            head = chain_hash(head, message_hash(m))
        if head is not None:
            self.heads[head] = prompt
        return prompt

    def responded(self, prompt: list[Message], resp: ModelResponse) -> None:
        self.learn([resp.message])
        if resp.transcript_ref is not None:
            self.heads[resp.transcript_ref] = [*prompt, resp.message]

    def known(self, head: str, prompt: list[Message]) -> None:
        """``head`` names ``prompt`` (e.g. a handoff stored it under new instructions)."""
        self.learn(prompt)
        self.heads[head] = prompt

    def compacted(self, result: CompactResult) -> None:
        if result.summary is not None:
            self.learn([result.summary])
        if all(h in self.by_hash for h in result.kept):
            self.heads[result.head] = [self.by_hash[h] for h in result.kept]
