"""Map provider exceptions onto ratchet's model error taxonomy (see ``ratchet.errors``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import openai
from temporalio.exceptions import ApplicationError

from ..errors import MODEL_ERRORS

__all__ = ["classify_openai_error", "model_error"]

_MAX_RETRY_AFTER = timedelta(minutes=10)


def model_error(
    name: str, message: str, *, retry_after: timedelta | None = None
) -> ApplicationError:
    """Build the ApplicationError for taxonomy leaf ``name``."""
    kind = MODEL_ERRORS[name]
    return ApplicationError(
        f"{message} ({kind.description})",
        type=name,
        non_retryable=not kind.retryable,
        next_retry_delay=retry_after if kind.retryable else None,
    )


def classify_openai_error(e: Exception) -> ApplicationError:
    """Translate an ``openai`` SDK exception into a typed, retryable-or-not ApplicationError."""
    if isinstance(e, openai.APITimeoutError):
        return model_error("ModelTimeout", "the model request timed out")
    if isinstance(e, openai.APIConnectionError):
        return model_error("ModelConnectionError", f"cannot connect to the model provider: {e}")
    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        detail = _detail(e)
        if status == 429:
            return model_error(
                "ModelRateLimited", f"HTTP 429: {detail}", retry_after=_retry_after(e)
            )
        if status in (408, 409) or status >= 500:
            return model_error(
                "ModelServerError", f"HTTP {status}: {detail}", retry_after=_retry_after(e)
            )
        if status in (401, 403):
            return model_error("ModelAuthError", f"HTTP {status}: {detail}")
        if status == 404:
            return model_error("ModelNotFound", f"HTTP 404: {detail}")
        if _is_context_too_long(e):
            return model_error("ContextTooLong", f"HTTP {status}: {detail}")
        return model_error("ModelBadRequest", f"HTTP {status}: {detail}")
    if isinstance(e, openai.APIError) and not isinstance(e, openai.APIResponseValidationError):
        # An error event in the middle of a stream (``data: {"error": ...}``): the
        # provider failed while answering, as a 5xx would have said before it.
        return model_error("ModelServerError", f"the provider reported an error: {e.message}")
    if isinstance(e, openai.ContentFilterFinishReasonError):
        return model_error("ContentFiltered", str(e))
    # Unknown SDK or transport failure: retry it, Temporal's policy bounds the attempts.
    return model_error("ModelConnectionError", f"{type(e).__name__}: {e}")


def _detail(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error")
        msg = body.get("message") or (inner.get("message") if isinstance(inner, dict) else inner)
        if msg:
            return str(msg)
    return e.message


def _is_context_too_long(e: openai.APIStatusError) -> bool:
    code = getattr(e, "code", None)
    kind = getattr(e, "type", None)
    text = f"{code} {kind} {_detail(e)}".lower()
    return any(
        marker in text
        for marker in (
            "context_length_exceeded",  # OpenAI
            "context length",  # vLLM and many others
            "context size",  # llama.cpp: "exceeds the available context size"
            "exceed_context_size",
            "too many tokens",
        )
    )


def _retry_after(e: openai.APIStatusError) -> timedelta | None:
    """Honour ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), within 10 min."""
    headers = e.response.headers
    try:
        if ms := headers.get("retry-after-ms"):
            seconds = float(ms) / 1000
        elif value := headers.get("retry-after"):
            try:
                seconds = float(value)
            except ValueError:
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        else:
            return None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if math.isnan(seconds):
        return None
    return timedelta(seconds=min(max(seconds, 0.0), _MAX_RETRY_AFTER.total_seconds()))
