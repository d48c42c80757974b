"""The agents ``scripts/limits_bench.py`` runs: 50 of them, one model call per run.

The provider name comes from ``$BENCH_PROVIDER``; the worker registers it with
``--provider NAME=URL`` and limits it with ``--rate-limit``.
"""

from __future__ import annotations

import os

from ratchet import Agent, Limits

AGENTS = 50
MAX_TOKENS = 50
"""Completion tokens reserved per call; the scripted answers use about 41."""


def agents() -> list[Agent]:
    provider = os.environ["BENCH_PROVIDER"]
    return [
        Agent(
            f"bench-{i:02d}",
            instructions="You are a product copywriter.",
            model=f"{provider}:m",
            max_tokens=MAX_TOKENS,
            limits=Limits(model_retry_initial_seconds=0.2, model_queue_seconds=600),
        )
        for i in range(AGENTS)
    ]
