"""(f) ratchet with the PostgreSQL transcript store: (c)'s agents and worker, whose model
calls keep and rebuild their prompts in PostgreSQL instead of the embedded SQLite file.

The driver starts the server (``bench/postgres.py``) and passes its URL in
``RATCHET_TRANSCRIPT_STORE``, the variable ratchet's own ``ratchet worker`` reads;
the store is built from it with ``ratchet.transcripts.store_from_url``, as there.
"""

from __future__ import annotations

import os

from bench import impl_ratchet
from temporalio.worker import Worker

from ratchet.transcripts import PostgresTranscriptStore, store_from_url

STORE_ENV = "RATCHET_TRANSCRIPT_STORE"

agents = impl_ratchet.agents


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    store = store_from_url(os.environ.get(STORE_ENV))
    if not isinstance(store, PostgresTranscriptStore):
        raise SystemExit(f"(f) needs {STORE_ENV}=postgresql://...; the driver sets it")
    return await impl_ratchet.make_worker(address, queue, base_url, transcript_store=store)
