"""The activities behind every run: snapshot the agent, call the model, run a tool,
check answers and input, compact a long prompt.

They are the only place where ratchet does I/O for a run. Each takes a single
versioned model (see ``ratchet._protocol``) and raises ``ApplicationError`` with a
taxonomy type, so Temporal knows what to retry. One module per concept; this class
puts them together for a worker.
"""

from __future__ import annotations

from ._agents import AgentSetupActivities
from ._checks import CheckActivities
from ._compaction import CompactionActivities
from ._model import ModelCallActivities
from ._tools import ToolCallActivities

__all__ = ["AgentActivities"]


class AgentActivities(
    AgentSetupActivities,
    ModelCallActivities,
    ToolCallActivities,
    CheckActivities,
    CompactionActivities,
):
    """Activity implementations bound to the agents and providers a worker hosts."""
