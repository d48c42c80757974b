"""Input guardrails: checks of a user's message that run before any model sees it.

``Agent(input_guardrails=[...])`` takes functions and :class:`ModelGuardrail` s. They
run in order, in the ``ratchet.check_input`` activity (so user code may do I/O, and
a crashed worker's check is retried elsewhere), before the run's first model call
and before the model call of each chat message. The first one that trips stops the
run with :class:`ratchet.GuardrailTripped`, its message for the user; each verdict is
a ``guardrail_checked`` run event and a line in ``ratchet trace``.

A function takes the message's text and returns None to pass it, or a message to
reject it (raising :class:`ratchet.InputRejected` does the same). It may be async.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["InputGuardrail", "ModelGuardrail", "guardrail_name"]

InputGuardrail = Callable[[str], "str | Awaitable[str | None] | None"]
"""A code guardrail: the user's message in; None to pass it, or why it is rejected."""

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")

_VERDICT_FORMAT = (
    'Answer with JSON only, nothing else: {"allowed": true} when the message is '
    'acceptable, or {"allowed": false, "reason": "<one sentence for the user>"} when '
    "it is not."
)


@dataclass(frozen=True)
class ModelGuardrail:
    """A guardrail that asks a (cheap) model for a yes/no verdict on the message.

    The model gets ``instructions`` and a request for a JSON verdict
    ``{"allowed": bool, "reason": str}``, and the user's message. A reply that is not
    such a verdict counts as tripped (fail closed). Its tokens and cost count in the
    run's totals and budgets.

    Args:
        name: the check's name in the trace and in ``GuardrailTripped``.
        model: ``"local"`` or ``"<provider>:<model>"``, a provider of the worker.
        instructions: what is acceptable, e.g. "Only questions about our shop's orders."
    """

    name: str
    model: str
    instructions: str

    def __post_init__(self) -> None:
        from .agent import parse_model

        if not _NAME_RE.match(self.name):
            raise ConfigError(f"model guardrail name {self.name!r} is invalid")
        parse_model(self.model)

    def system_prompt(self) -> str:
        return f"{self.instructions.strip()}\n\n{_VERDICT_FORMAT}"


def guardrail_name(check: InputGuardrail | ModelGuardrail) -> str:
    """The name a guardrail is recorded by."""
    if isinstance(check, ModelGuardrail):
        return check.name
    name = getattr(check, "__name__", None)
    if not callable(check) or not name or name == "<lambda>":
        raise ConfigError(
            f"input guardrail {check!r} is not a named function or a ratchet.ModelGuardrail"
        )
    return str(name)


def parse_verdict(text: str) -> tuple[bool, str]:
    """(allowed, reason) from a model guardrail's reply; unreadable replies are refusals."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0) if match else text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("allowed"), bool):
        return False, f"the guardrail model gave no verdict: {text.strip()[:200]!r}"
    reason = data.get("reason")
    return data["allowed"], str(reason) if reason else ""
