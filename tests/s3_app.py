"""An agent whose tool returns 5 MB, hosted by a `ratchet worker` subprocess in the S3 tests."""

from __future__ import annotations

from ratchet import Agent, tool

RESULT_BYTES = 5_000_000


@tool(max_result_chars=6_000_000)
def export_everything(part: int) -> str:
    """Export everything (5 MB).

    Args:
        part: which part.
    """
    return "y" * RESULT_BYTES


def agents() -> list[Agent]:
    return [Agent("exporter", instructions="x", model="openai:m", tools=[export_everything])]
