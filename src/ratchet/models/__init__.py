"""Model providers: the public :class:`Provider` contract, the OpenAI-compatible
provider, the rendering of requests on the wire, and the mapping of provider errors
onto ratchet's taxonomy."""

from ._errors import classify_openai_error, model_error
from ._json_mode import envelope_schema, parse_envelope
from ._openai import OpenAICompatible
from ._provider import Provider, ProviderRequest, ProviderResponse
from ._wire import WIRE_REVISION, WireApi, WireFormat, render_wire_request

__all__ = [
    "WIRE_REVISION",
    "OpenAICompatible",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "WireApi",
    "WireFormat",
    "classify_openai_error",
    "envelope_schema",
    "model_error",
    "parse_envelope",
    "render_wire_request",
]
