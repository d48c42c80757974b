"""The implementations compared, as the driver sees them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Impl:
    key: str
    """a-e, as in the issue."""
    name: str
    """The worker module: ``bench.impl_<name>``."""
    label: str
    requires: tuple[str, ...] = ()
    """Modules that must be importable, else the implementation is skipped."""
    workflow: str | None = None
    """The workflow type the driver starts (ratchet is started through AgentClient)."""
    install: str = ""

    @property
    def durable(self) -> bool:
        return self.key != "a"

    def missing(self) -> str | None:
        """Why the implementation cannot run here, or None."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError:
                found = False
            if not found:
                return f"`{module}` is not installed (pip install -e '.[bench]': {self.install})"
        return None


IMPLS = [
    Impl("a", "plain", "(a) plain asyncio + openai"),
    Impl("b", "bare", "(b) bare Temporal activities", workflow="bench.Bare"),
    Impl("c", "ratchet", "(c) ratchet"),
    Impl(
        "d",
        "openai_agents",
        "(d) OpenAI Agents SDK on Temporal",
        requires=("agents", "temporalio.openai_agents"),
        workflow="bench.OpenAIAgents",
        install="openai-agents, temporalio-openai-agents",
    ),
    Impl(
        "e",
        "pydantic_ai",
        "(e) Pydantic AI TemporalAgent",
        requires=("pydantic_ai",),
        workflow="bench.PydanticAI",
        install="pydantic-ai-slim[openai]",
    ),
]
BY_KEY = {i.key: i for i in IMPLS}
BASELINE = "b"
"""Every figure is also printed as a ratio to (b), except the durability tax (vs (a))."""
