"""Failures as a person reads them: the taxonomy type and the real message."""

from __future__ import annotations

from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter

__all__ = ["failure_text", "readable"]

_SIZE_LIMIT_MESSAGE = "Failure exceeds size limit."


async def readable(converter: DataConverter, failure: Failure) -> Failure:
    """The failure with its messages decrypted (with payload encryption they are not)."""
    if converter.payload_codec is None:
        return failure
    from .codec import decrypt_failure

    return await decrypt_failure(converter, failure)


def failure_text(failure: Failure) -> tuple[str | None, str]:
    """The taxonomy type and the message of a failure (the real one of a truncated one).

    When a failure is over the server's size limit, the server replaces its message
    and keeps the original one level down. A typed failure's own message says what
    happened; the Python exceptions chained below it (the provider SDK's, with their
    stack traces) are left out.
    """
    while failure.message == _SIZE_LIMIT_MESSAGE and failure.HasField("cause"):
        failure = failure.cause
    if failure.HasField("application_failure_info") and failure.application_failure_info.type:
        return failure.application_failure_info.type, failure.message
    error_type: str | None = None
    if failure.HasField("timeout_failure_info"):
        error_type = "Timeout"
    elif failure.HasField("canceled_failure_info"):
        return "Cancelled", failure.message
    message = failure.message
    if failure.HasField("cause") and failure.cause.message:
        cause_type, cause_message = failure_text(failure.cause)
        error_type = error_type or cause_type
        message = f"{message}: {cause_message}" if message else cause_message
    return error_type, message
