"""ratchet: durable AI agents on Temporal."""
