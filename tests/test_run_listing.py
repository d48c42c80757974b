"""Listing and starting runs: statuses are one closed, validated set with one spelling;
runs come newest first; an id already in use is never silently reused for another task."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from ratchet import RUN_STATES, ConfigError, RunCancelled
from ratchet.testing import ScriptedModelServer, hang, reply

from .conftest import hosted
from .scenarios import AGENT


async def test_a_bad_status_is_refused_with_the_valid_ones(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [AGENT], model_server) as client:
        with pytest.raises(ConfigError, match=r"unknown status 'bogus'.*waiting-approval"):
            await client.list(status="bogus")
        with pytest.raises(ConfigError, match="spells it 'cancelled'"):
            await client.list(status="canceled")
    assert "cancelled" in RUN_STATES and "canceled" not in RUN_STATES


async def test_a_cancelled_run_is_listed_and_found_as_cancelled(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang(30))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start(AGENT.name, "wait for me")
        await model_server.wait_for_requests_async(1, timeout=30)
        await handle.cancel()
        with pytest.raises(RunCancelled):
            await handle.result()
        assert (await handle.info()).status == "cancelled"
        for _ in range(60):  # visibility is eventually consistent
            found = [r.id for r in await client.list(status="cancelled", limit=100)]
            if handle.id in found:
                break
            await asyncio.sleep(0.5)
        assert handle.id in found


async def test_runs_are_listed_newest_first(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("one"), hang(30))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        older = await client.start(AGENT.name, "first")
        await older.result()
        newer = await client.start(AGENT.name, "second")  # still running: listed first anyway
        await model_server.wait_for_requests_async(2, timeout=30)
        for _ in range(60):
            runs = [r for r in await client.list(agent=AGENT.name, limit=100)]
            ids = [r.id for r in runs]
            if older.id in ids and newer.id in ids:
                break
            await asyncio.sleep(0.5)
        starts = [r.started for r in runs]
        assert starts == sorted(starts, reverse=True)  # type: ignore[type-var]
        assert all(s is not None and s.tzinfo is not None for s in starts)
        assert ids.index(newer.id) < ids.index(older.id)
        await newer.cancel()


async def test_an_id_in_use_is_not_reused_for_another_prompt(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("done"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        first = await client.start(AGENT.name, "the first task", id="ticket-attach-1")
        await first.result()
        # The same task again: attaches (idempotent start), no second run.
        again = await client.start(AGENT.name, "the first task", id="ticket-attach-1")
        assert (await again.result()).output == "done"
        with pytest.raises(ConfigError, match=r"already exists.*attach=True"):
            await client.start(AGENT.name, "another task", id="ticket-attach-1")
        attached = await client.start(AGENT.name, "another task", id="ticket-attach-1", attach=True)
        assert (await attached.input()).prompt == "the first task"
