"""The single error type raised by :mod:`ratchet.local`."""

from __future__ import annotations

__all__ = ["LocalServiceError"]


from ..errors import RatchetError


class LocalServiceError(RatchetError, RuntimeError):
    """An embedded service (Temporal dev server, local LLM) could not be found, built or run.

    The message always says what failed, which file/port/process was involved
    and what to do about it, so the CLI can print it as is.
    """
