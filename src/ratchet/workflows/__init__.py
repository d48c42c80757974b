"""ratchet's workflows: the agent loop, and the limiter and slots workflows it relies on.

Everything in this package is workflow code. It runs in Temporal's sandbox and must
stay deterministic: no I/O, no clock, no randomness, only imports that are safe
(definition modules, passed through the sandbox).
"""

from ._agent import AgentWorkflow
from ._eval import EvalWorkflow
from ._limiter import LimiterWorkflow
from ._slots import SlotsWorkflow

__all__ = ["AgentWorkflow", "EvalWorkflow", "LimiterWorkflow", "SlotsWorkflow"]
