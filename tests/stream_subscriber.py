"""A subscriber in its own process: prints a run's events as JSON lines, tokens included.

Run as ``python -m tests.stream_subscriber ADDRESS RUN_ID TRANSCRIPT_STORE_URL``; it
reads the deltas from the delta store beside that transcript store, as a client on
another machine reads them from the shared database.
"""

from __future__ import annotations

import asyncio
import os
import sys

from ratchet import AgentClient, connect
from ratchet.events import RunEventAdapter
from ratchet.streaming import delta_store_from_url


async def main(address: str, run_id: str, store_url: str) -> None:
    client = AgentClient(await connect(address), deltas=delta_store_from_url(store_url))
    print("ready", flush=True)
    async for event in client.get(run_id).events():
        print(RunEventAdapter.dump_json(event).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
    sys.stdout.flush()
    os._exit(0)  # the Temporal SDK can crash at interpreter exit in short scripts
