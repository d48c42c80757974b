"""A worker's dependencies for tools: what ``create_worker(deps=...)`` accepts, resolved
to one object per hosted agent.

Deps live in the worker process only: the tool activity looks up its agent's deps
when it runs, so they are never part of an activity's input or result, and never
enter a run's history.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConfigError

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["Deps", "resolve_deps"]

Deps: TypeAlias = Any
"""Any object (shared by every agent), a mapping of agent name to object, or a
function ``(Agent) -> object`` called once per hosted agent when the worker is built."""


def resolve_deps(deps: Deps, agents: Mapping[str, Agent]) -> dict[str, object]:
    """Each hosted agent's deps (agents without any are left out).

    Raises:
        ConfigError: a mapping names an agent the worker does not host, or a factory raised.
    """
    if deps is None:
        return {}
    if isinstance(deps, Mapping):
        unknown = sorted(str(name) for name in deps if name not in agents)
        if unknown:
            hosted = ", ".join(sorted(agents)) or "(none)"
            raise ConfigError(
                f"deps names agent(s) {', '.join(map(repr, unknown))} that this worker does "
                f"not host (hosted: {hosted}); a mapping given as deps is read as agent "
                "name -> deps (wrap a plain dict in an object to share it)"
            )
        return {name: value for name, value in deps.items() if value is not None}
    if _is_factory(deps):
        factory: Callable[[Agent], object] = deps
        built: dict[str, object] = {}
        for name, agent in agents.items():
            try:
                value = factory(agent)
            except Exception as e:
                raise ConfigError(
                    f"the deps factory {_name_of(factory)} raised {type(e).__name__} for agent "
                    f"{name!r}: {e}"
                ) from e
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise ConfigError(
                    f"the deps factory {_name_of(factory)} is async; give a plain function "
                    "(create async clients lazily, or before building the worker)"
                )
            if value is not None:
                built[name] = value
        return built
    return dict.fromkeys(agents, deps)


def _is_factory(deps: object) -> bool:
    """Plain functions, lambdas, bound methods and partials are factories; any other
    object (an instance, even a callable one, or a class) is the deps itself."""
    return inspect.isfunction(deps) or inspect.ismethod(deps) or isinstance(deps, functools.partial)


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
