"""Tool policies: which calls an agent may make alone, which need a person, which never.

Policies are pure data. They are snapshotted with the agent when a run starts and
evaluated inside the workflow, deterministically, before any tool runs::

    Policy(
        rules=[
            require_approval("refund_order", when=arg("amount") > 100,
                             reason="refunds over $100 need a manager"),
            deny("run_sql", when=arg("query").not_matches(r"(?i)^\\s*select\\b"),
                 reason="only SELECT statements"),
        ],
        side_effects="require_approval",   # any other side-effecting tool needs approval
    )

The first rule whose tool and condition match decides; otherwise a side-effecting
tool gets ``side_effects`` (when set), and every other call gets ``default``. Rules
fail closed: a ``deny`` or ``require_approval`` rule whose condition cannot be
evaluated (the argument is missing, or not comparable) applies.
"""

from __future__ import annotations

import re
from typing import Any, Literal, assert_never

from pydantic import BaseModel, ConfigDict

from ._older_readers import KeepsFieldsOlderReadersRequire

__all__ = [
    "Condition",
    "Decision",
    "Policy",
    "PolicyDecision",
    "Rule",
    "allow",
    "arg",
    "deny",
    "require_approval",
]

Decision = Literal["allow", "deny", "require_approval"]
Op = Literal["gt", "ge", "lt", "le", "eq", "ne", "in", "not_in", "matches", "not_matches"]


class Condition(KeepsFieldsOlderReadersRequire):
    """A test on one argument of the call (see :func:`arg`)."""

    model_config = ConfigDict(frozen=True)
    ALWAYS_WRITTEN = ("value",)

    arg: str
    op: Op
    value: Any = None
    """What the argument is compared with (None too: ``arg("x") == None``)."""

    def holds(self, arguments: dict[str, Any]) -> bool | None:
        """Whether the condition holds; None when it cannot tell (argument missing or of
        a type the comparison does not fit)."""
        if self.arg not in arguments:
            return None
        v = arguments[self.arg]
        try:
            match self.op:
                case "gt":
                    return bool(v > self.value)
                case "ge":
                    return bool(v >= self.value)
                case "lt":
                    return bool(v < self.value)
                case "le":
                    return bool(v <= self.value)
                case "eq":
                    return bool(v == self.value)
                case "ne":
                    return bool(v != self.value)
                case "in":
                    return v in self.value
                case "not_in":
                    return v not in self.value
                case "matches":
                    return re.search(self.value, v) is not None if isinstance(v, str) else None
                case "not_matches":
                    return re.search(self.value, v) is None if isinstance(v, str) else None
                case _:
                    assert_never(self.op)
        except TypeError:
            return None

    def describe(self) -> str:
        return f"{self.arg} {self.op} {self.value!r}"


class _Arg:
    """Builds conditions: ``arg("amount") > 100``, ``arg("query").matches(r"^select")``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __gt__(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="gt", value=value)

    def __ge__(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="ge", value=value)

    def __lt__(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="lt", value=value)

    def __le__(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="le", value=value)

    def eq(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="eq", value=value)

    def ne(self, value: Any) -> Condition:
        return Condition(arg=self.name, op="ne", value=value)

    def isin(self, values: list[Any]) -> Condition:
        return Condition(arg=self.name, op="in", value=list(values))

    def not_in(self, values: list[Any]) -> Condition:
        return Condition(arg=self.name, op="not_in", value=list(values))

    def matches(self, pattern: str) -> Condition:
        re.compile(pattern)  # fail at definition time, not in the workflow
        return Condition(arg=self.name, op="matches", value=pattern)

    def not_matches(self, pattern: str) -> Condition:
        re.compile(pattern)
        return Condition(arg=self.name, op="not_matches", value=pattern)


def arg(name: str) -> _Arg:
    """Refer to an argument of the tool call in a rule's condition."""
    return _Arg(name)


class Rule(BaseModel):
    """Decide calls of ``tool`` (``"*"``: any tool), optionally only when ``when`` holds."""

    model_config = ConfigDict(frozen=True)

    tool: str
    decision: Decision
    when: Condition | None = None
    reason: str = ""
    name: str = ""
    """Shown in the audit trail; defaults to a description of the rule."""

    def label(self) -> str:
        if self.name:
            return self.name
        cond = f" when {self.when.describe()}" if self.when else ""
        return f"{self.decision} {self.tool}{cond}"


def allow(tool: str, *, when: Condition | None = None, reason: str = "", name: str = "") -> Rule:
    return Rule(tool=tool, decision="allow", when=when, reason=reason, name=name)


def deny(tool: str, *, when: Condition | None = None, reason: str = "", name: str = "") -> Rule:
    return Rule(tool=tool, decision="deny", when=when, reason=reason, name=name)


def require_approval(
    tool: str, *, when: Condition | None = None, reason: str = "", name: str = ""
) -> Rule:
    return Rule(tool=tool, decision="require_approval", when=when, reason=reason, name=name)


class PolicyDecision(BaseModel):
    """What the policy decided for one call, and why (recorded for the audit trail)."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    rule: str
    reason: str = ""


class Policy(BaseModel):
    """An agent's tool policy."""

    model_config = ConfigDict(frozen=True)

    rules: list[Rule] = []
    default: Decision = "allow"
    side_effects: Decision | None = None
    """Decision for side-effecting tools no rule matched (e.g. ``"deny"``: deny by default)."""

    def decide(self, tool: str, arguments: dict[str, Any], *, side_effects: bool) -> PolicyDecision:
        """Evaluate the policy for one call (pure and deterministic)."""
        for rule in self.rules:
            if rule.tool not in (tool, "*"):
                continue
            holds = True if rule.when is None else rule.when.holds(arguments)
            # Fail closed: a deny or approval rule that cannot tell (the argument is
            # missing or of an unexpected type) applies; an allow rule does not.
            if holds or (holds is None and rule.decision != "allow"):
                return PolicyDecision(decision=rule.decision, rule=rule.label(), reason=rule.reason)
        if side_effects and self.side_effects is not None:
            return PolicyDecision(
                decision=self.side_effects,
                rule="policy.side_effects",
                reason=f"{tool} changes the world",
            )
        return PolicyDecision(decision=self.default, rule="policy.default")
