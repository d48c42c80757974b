"""ratchet's errors as A2A errors (JSON-RPC error objects)."""

from __future__ import annotations

from a2a.types import InternalError, InvalidParamsError, TaskNotFoundError
from a2a.utils.errors import A2AError

from ..http._problems import problem_of

__all__ = ["a2a_error"]


def a2a_error(e: Exception) -> A2AError:
    """The A2A error for ``e``, classified as the HTTP API answers it; ``data`` carries
    ratchet's taxonomy name (``error_type``)."""
    if isinstance(e, A2AError):
        return e
    status, error_type, detail, _ = problem_of(e)
    data = {"error_type": error_type}
    if status == 404:
        return TaskNotFoundError(detail, data)
    if status in (400, 409, 422):
        return InvalidParamsError(detail, data)
    return InternalError(detail, data)
