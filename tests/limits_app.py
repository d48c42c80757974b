"""Agents for the rate-limit tests, hosted by `ratchet worker` subprocesses.

The provider name comes from ``$LIMITS_PROVIDER`` (each test uses its own, so each
gets a fresh limiter workflow on the shared test server); the worker registers it
with ``--provider NAME=URL``. ``$LIMITS_MODEL_QUEUE`` sends model calls to a
provider queue served by ``--model-queue`` workers.
"""

from __future__ import annotations

import os

from ratchet import Agent, Limits, tool


@tool
def search(q: str) -> str:
    """Search the catalogue."""
    return f"results for {q}"


def agents() -> list[Agent]:
    provider = os.environ["LIMITS_PROVIDER"]
    return [
        Agent(
            "limited",
            instructions="You are a shop assistant.",
            model=f"{provider}:m",
            tools=[search],
            max_tokens=20,
            model_task_queue=os.environ.get("LIMITS_MODEL_QUEUE") or None,
            # Calls wait long in the limiter's queue on busy test workers: a 5 s heartbeat
            # keeps a stalled worker from looking dead (a retry would add a request).
            limits=Limits(
                model_retry_initial_seconds=0.2,
                model_timeout_seconds=60,
                model_heartbeat_seconds=5,
            ),
        )
    ]
