"""Replies a provider should never send: fields of the wrong type, missing parts.

The ``openai`` SDK builds its response objects without validating them, so a broken
or hostile endpoint can put any JSON value in any field. Reading such a reply must end
in ratchet's taxonomy, never in an ``AttributeError`` or a pydantic error out of the
model activity: it is a retryable ``ModelServerError`` (a proxy's glitch may pass;
Temporal's retry policy bounds the attempts of one that does not).
"""

from __future__ import annotations

import json
from typing import Any

from temporalio.exceptions import ApplicationError

from ._errors import model_error

__all__ = ["MALFORMED", "arguments_text", "malformed_reply", "text_field", "token_count"]

MALFORMED: tuple[type[Exception], ...] = (
    AttributeError,
    TypeError,
    KeyError,
    IndexError,
    ValueError,  # pydantic's ValidationError and json's JSONDecodeError among them
)
"""What reading a reply of the wrong shape raises."""


def malformed_reply(e: Exception | str) -> ApplicationError:
    """The typed error for a reply that cannot be read."""
    detail = e if isinstance(e, str) else f"{type(e).__name__}: {e}"
    first_line = detail.strip().splitlines()[0] if detail.strip() else type(e).__name__
    return model_error("ModelServerError", f"the provider's reply is malformed: {first_line[:300]}")


def text_field(value: Any, name: str) -> str | None:
    """A text field of the reply (content, a name): a string or absent."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} is a {type(value).__name__}, not a string")


def arguments_text(value: Any) -> str:
    """A tool call's ``arguments``: the JSON text the model wrote.

    Some endpoints send the arguments as a JSON object instead of its text; the
    workflow checks the text either way, so an object is written back as JSON.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    raise TypeError(f"tool call arguments are a {type(value).__name__}, not JSON text")


def token_count(usage: Any, name: str) -> int:
    """A token count of the reply's usage; 0 when it is missing or no count at all.

    A negative or non-integer count would spend (or refund) the run's token budget
    wrongly, so it counts as missing.
    """
    value = getattr(usage, name, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value
