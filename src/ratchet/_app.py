"""Loading a user's app: ``module:attribute`` → the agents a worker hosts, or its deps."""

from __future__ import annotations

import importlib
import os
import sys

from .agent import Agent
from .errors import ConfigError

__all__ = ["load_agents", "load_object"]


def load_agents(spec: str) -> list[Agent]:
    """Resolve ``module:attr`` to agents: an Agent, a list, or a callable returning either.

    The current directory is importable, as it is for ``python -m``.

    Raises:
        ConfigError: the spec is malformed, the module does not import, or the
            attribute is not an Agent or a list of Agents.
    """
    obj = load_object(spec, what="app")
    if callable(obj) and not isinstance(obj, Agent):
        try:
            obj = obj()
        except Exception as e:
            raise ConfigError(f"calling {spec!r} raised {type(e).__name__}: {e}") from e
    agents = [obj] if isinstance(obj, Agent) else list(obj) if isinstance(obj, list | tuple) else []
    if not agents or not all(isinstance(a, Agent) for a in agents):
        raise ConfigError(f"{spec!r} is not an Agent or a list of Agents")
    return agents


def load_object(spec: str, *, what: str = "deps") -> object:
    """The attribute ``module:attr`` names (the current directory is importable).

    Raises:
        ConfigError: the spec is malformed, the module does not import, or has no
            such attribute.
    """
    example = "examples.support:agent" if what == "app" else "myapp.deps:make_deps"
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"bad {what} spec {spec!r}: expected 'module:attribute', e.g. {example}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import module {module_name!r} of {what} {spec!r}: {e}") from e
    except Exception as e:  # the app's own import-time error
        raise ConfigError(
            f"importing {module_name!r} of {what} {spec!r} raised {type(e).__name__}: {e}"
        ) from e
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
