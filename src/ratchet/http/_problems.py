"""Errors as ``application/problem+json`` (RFC 9457), named by ratchet's error taxonomy.

Every error response of the API is a :class:`Problem`: ``type`` is a URN made of
``error_type``, the taxonomy name a client branches on (``RunNotFound``,
``ApprovalError``, ``Unauthorized``...), and ``detail`` says what to do.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from ..errors import (
    ApprovalError,
    ConfigError,
    ConnectionFailed,
    RatchetError,
    RunFailed,
    RunNotFound,
)
from ._schemas import PATTERN_MEANINGS

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_RESPONSES",
    "Problem",
    "ProblemError",
    "install_problem_handlers",
    "problem_of",
    "problem_response",
    "retry_after",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger("ratchet.http")


class Problem(BaseModel):
    """An error, as ``application/problem+json``."""

    type: str
    """``urn:ratchet:error:<error_type>``."""
    title: str
    """The HTTP status phrase."""
    status: int
    detail: str
    """What happened, and what to do about it."""
    error_type: str
    """ratchet's taxonomy name: ``RunNotFound``, ``ConfigError``, ``ApprovalError``,
    ``Unauthorized``, ``Forbidden``, ``CsrfRejected``, ``TooManyRequests``..."""


# Every operation documents its errors as one "default" response: FastAPI then adds no
# 422 of its own shape, and schema checkers accept any documented error status.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {
        "description": "An error (application/problem+json)",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raise in a route to answer with a problem; ``headers`` go on the response."""

    def __init__(
        self,
        status: int,
        error_type: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error_type = error_type
        self.detail = detail
        self.headers = headers or {}


def problem_response(
    status: int, error_type: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Problem(
        type=f"urn:ratchet:error:{error_type}",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        error_type=error_type,
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def problem_of(e: Exception) -> tuple[int, str, str, dict[str, str]]:
    """(status, error_type, detail, headers) for an exception a route let through."""
    match e:
        case ProblemError():
            return e.status, e.error_type, e.detail, e.headers
        case RunNotFound():
            return 404, "RunNotFound", str(e), {}
        case ApprovalError():
            return 409, "ApprovalError", str(e), {}
        case ConfigError():
            return 400, "ConfigError", str(e), {}
        case ConnectionFailed():
            return 503, "ConnectionFailed", str(e), {}
        case RunFailed():
            # The run ended (failed or cancelled) while answering, e.g. a chat message a
            # guardrail stopped: a conflict with the run's state, not a missing service.
            return 409, e.error_type, str(e), {}
        case RatchetError():
            # e.g. no worker accepted an update in time: the service behind is not there.
            return 503, type(e).__name__, str(e), {}
        case WorkflowQueryFailedError():
            return 409, "QueryFailed", f"the run could not answer: {e}", {}
        case RPCError() if e.status in _NO_WORKER:
            return (
                503,
                "NoWorker",
                "no worker answered for the run in time; is a worker running for its agent?",
                {"Retry-After": "5"},
            )
        case RPCError() if e.status == RPCStatusCode.INVALID_ARGUMENT:
            return 400, "ConfigError", f"the Temporal server refused the request: {e}", {}
        case RPCError() if e.status == RPCStatusCode.UNAVAILABLE:
            return 503, "ConnectionFailed", f"the Temporal server is unavailable: {e}", {}
        case RPCError():
            return 502, "TemporalError", f"the Temporal server refused: {e}", {}
    return 500, "InternalError", "an unexpected error; the server log has its traceback", {}


_NO_WORKER = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, ours and the framework's, as a problem."""

    async def on_error(request: Request, e: Exception) -> JSONResponse:
        status, error_type, detail, headers = problem_of(e)
        if status >= 500:
            _log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return problem_response(status, error_type, detail, headers)

    async def on_http(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        error_type = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status_code, "HTTPError")
        return problem_response(e.status_code, error_type, str(e.detail), dict(e.headers or {}))

    async def on_invalid(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        return problem_response(422, "ConfigError", _describe_invalid(e.errors()))

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    # Expected errors by class (answered, not logged as crashes); anything else is a
    # 500 that Starlette's outermost middleware logs with its traceback.
    for expected in (ProblemError, RatchetError, RPCError, WorkflowQueryFailedError):
        app.add_exception_handler(expected, on_error)
    app.add_exception_handler(Exception, on_error)


def _describe_invalid(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        kind, loc = error.get("type"), tuple(error.get("loc", ()))
        if kind == "json_invalid":
            where = f" at character {loc[-1]}" if len(loc) > 1 else ""
            problem = error.get("ctx", {}).get("error", "JSON decode error")
            return (
                f"invalid request: the body is not valid JSON ({problem}{where}); "
                "send a JSON object with Content-Type: application/json"
            )
        if loc == ("body",) and kind in _NOT_AN_OBJECT:
            return (
                "invalid request: the body must be a JSON object, "
                "sent with Content-Type: application/json"
            )
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        parts.append(f"{where}: {_explain(error)}")
    return "invalid request: " + "; ".join(parts)


# What FastAPI reports for a body that is no JSON object (a form, a list, a string...).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _explain(error: Any) -> str:
    """pydantic's message, or for a pattern of ours, what the value must be."""
    if error.get("type") == "string_pattern_mismatch":
        meaning = PATTERN_MEANINGS.get(error.get("ctx", {}).get("pattern"))
        if meaning is not None:
            value = error.get("input")
            shown = repr(value if len(value) <= 60 else value[:57] + "...")
            return f"{shown} {meaning}" if value.strip() else meaning
    return str(error.get("msg", "invalid"))


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header of whole seconds (at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
