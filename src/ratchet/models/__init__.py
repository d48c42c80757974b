"""Model providers and the mapping of their errors onto ratchet's taxonomy."""

from ._base import Provider
from ._errors import classify_openai_error, model_error
from ._openai import OpenAICompatible, envelope_schema, parse_envelope

__all__ = [
    "OpenAICompatible",
    "Provider",
    "classify_openai_error",
    "envelope_schema",
    "model_error",
    "parse_envelope",
]
