"""The implementations compared, as the driver sees them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Impl:
    key: str
    """a-f, as in the issues (f: issue 18)."""
    name: str
    """The worker module: ``bench.impl_<name>``."""
    label: str
    requires: tuple[str, ...] = ()
    """Modules that must be importable, else the implementation is skipped."""
    workflow: str | None = None
    """The workflow type the driver starts (ratchet is started through AgentClient)."""
    install: str = ""
    extra: str = "bench"
    """The extra of ratchet's pyproject.toml that installs ``requires``."""

    @property
    def durable(self) -> bool:
        return self.key != "a"

    @property
    def ratchet(self) -> bool:
        """A ratchet worker: runs are started through ``AgentClient``."""
        return self.key in RATCHET_KEYS

    def missing(self) -> str | None:
        """Why the implementation cannot run here, or None."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError:
                found = False
            if not found:
                return (
                    f"`{module}` is not installed "
                    f"(pip install -e '.[{self.extra}]': {self.install})"
                )
        return None


IMPLS = [
    Impl("a", "plain", "(a) plain asyncio + openai"),
    Impl("b", "bare", "(b) bare Temporal activities", workflow="bench.Bare"),
    Impl("c", "ratchet", "(c) ratchet"),
    Impl(
        "f",
        "ratchet_postgres",
        "(f) ratchet, PostgreSQL transcripts",
        requires=("psycopg", "pgserver"),
        install="psycopg[binary], pgserver",
        extra="dev",
    ),
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
RATCHET_KEYS = ("c", "f")
BASELINE = "b"
"""Every figure is also printed as a ratio to (b), except the durability tax (vs (a))."""
