"""Evals from recorded runs: 20 recorded runs replayed against an agent with new
instructions (no tool runs), the changed answers flagged, a seeded regression failing
the CLI, and the eval surviving a kill -9 of its worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient, ConfigError
from ratchet.evals import Checks, recorded_cases, recorded_runs, run_eval, score
from ratchet.testing import (
    SCRIPTED_API_KEY,
    RecordedRequest,
    ScriptedModelServer,
    Step,
    call,
    tool_calls,
)

from .conftest import _test_store, hosted
from .eval_app import CALLS_ANOTHER_ORDER, SEEDED_REGRESSION, SHOP, SHOP_V2, shop_model
from .test_cli import assert_clean_error, ratchet
from .workers import WorkerProcess

ORDERS = list(range(1, 21))


async def _record(
    client: Client, server: ScriptedModelServer, orders: list[int] = ORDERS
) -> list[str]:
    """Runs of ``shop`` with its real tool (one per order): the recorded runs."""
    async with hosted(client, [SHOP], server) as agents:
        handles = [
            await agents.start("shop", f"Where is order {n}?", id=f"rec-{uuid.uuid4().hex[:8]}-{n}")
            for n in orders
        ]
        results = await asyncio.gather(*(h.result() for h in handles))
    assert [r.output for r in results] == [f"Order {n} has shipped." for n in orders]
    return [h.id for h in handles]


async def test_eval_of_changed_instructions_flags_changed_answers_and_regressions(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    model_server.handler = shop_model
    run_ids = await _record(temporal_client, model_server)
    async with hosted(temporal_client, [SHOP, SHOP_V2], model_server) as agents:
        cases = await recorded_cases(agents, runs=run_ids)
        assert [c.fixtures.calls[0].content for c in cases] == [
            f"order {n}: shipped" for n in ORDERS
        ]
        report = await run_eval(agents, "shop-v2", cases, Checks(contains=("shipped",)))

        by_order = dict(zip(ORDERS, report.cases, strict=True))
        # No real tool ran: shop-v2's tool raises, and every case completed.
        assert all(c.error is None and not c.tools_ran for c in report.cases)
        changed = {n for n, c in by_order.items() if c.changed}
        assert changed == {n for n in ORDERS if n % 2 == 0} | {
            SEEDED_REGRESSION,
            CALLS_ANOTHER_ORDER,
        }
        assert by_order[4].answer == "Good news: order 4 has shipped!" and by_order[4].passed
        assert by_order[3].answer == "Order 3 has shipped." and not by_order[3].changed
        regressed = {n for n, c in by_order.items() if c.regression}
        assert regressed == {SEEDED_REGRESSION, CALLS_ANOTHER_ORDER}
        assert "contains 'shipped'" in (by_order[SEEDED_REGRESSION].regression or "")
        missed = by_order[CALLS_ANOTHER_ORDER]
        assert [c.arguments for c in missed.unrecorded_calls] == [{"order_id": 1300}]
        assert missed.checks["recorded results"] is False
        assert missed.checks["same tool calls"] is False

        # A case's run reads like any run: its replayed call, and no tool activity.
        events = [e async for e in agents.get(by_order[3].run_id).events(follow=False)]
        started = [e for e in events if e.type == "tool_call_started"]
        assert len(started) == 1 and started[0].replayed

        # The CLI: a table, JSON and JUnit XML, and exit code 1 on the regression.
        store = f"sqlite:///{_test_store().path}"
        common = ["--task-queue", agents.task_queue, "--address", _address(temporal_client)]
        ran = await ratchet(
            "eval",
            "--agent",
            "shop-v2",
            *[a for r in run_ids for a in ("--run", r)],
            "--contains",
            "shipped",
            "--json",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
            "--transcript-store",
            store,
            *common,
        )
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert "18/20 passed, 12 answer(s) changed, 2 regression(s)" in ran.stdout, ran.stdout
        assert f"regression: case {run_ids[SEEDED_REGRESSION - 1]}" in ran.stderr
        saved = json.loads((tmp_path / "r.json").read_text())
        assert sum(1 for c in saved["cases"] if c["regression"]) == 2
        suite = ET.parse(tmp_path / "r.xml").getroot()
        assert (suite.get("tests"), suite.get("failures")) == ("20", "2")

        # Against that report as the baseline, nothing regresses: exit code 0.
        again = await ratchet(
            "eval",
            "--agent",
            "shop-v2",
            *[a for r in run_ids for a in ("--run", r)],
            "--contains",
            "shipped",
            "--baseline",
            str(tmp_path / "r.json"),
            "--transcript-store",
            store,
            *common,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 regression(s)" in again.stdout

        # Two versions side by side on the same cases: the second regresses on order 7.
        compared = await ratchet(
            "eval",
            "--compare",
            "shop",
            "shop-v2",
            "--run",
            run_ids[2],
            "--run",
            run_ids[SEEDED_REGRESSION - 1],
            "--contains",
            "shipped",
            "--transcript-store",
            store,
            *common,
        )
        assert compared.returncode == 1, compared.stdout + compared.stderr
        assert "answer (shop)" in compared.stdout and "answer (shop-v2)" in compared.stdout
        assert "Sorry, I cannot find order 7." in compared.stdout
        assert "1 regression(s) against shop (eval eval-shop-" in compared.stdout
        assert "now fails: contains 'shipped'" in compared.stderr


def _address(client: Client) -> str:
    return client.service_client.config.target_host


async def test_eval_survives_kill9_of_its_worker(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    model_server.handler = shop_model
    run_ids = await _record(temporal_env.client, model_server)
    recorded = len(model_server.requests)
    queue = f"eval-crash-{uuid.uuid4().hex[:8]}"
    address = _address(temporal_env.client)
    workers.append(
        WorkerProcess(address, queue, model_server, tmp_path, app="tests.eval_app:agents")
    )
    client = AgentClient(temporal_env.client, task_queue=queue)
    cases = await recorded_cases(client, runs=run_ids)
    eval_id = f"eval-{uuid.uuid4().hex[:8]}"
    running = asyncio.create_task(
        run_eval(client, "shop-v2", cases, eval_id=eval_id, max_parallel=2)
    )
    # Mid-eval: a few cases done (two model calls each), most not started.
    await model_server.wait_for_requests_async(recorded + 8, timeout=60)
    ended = await temporal_env.client.get_workflow_handle(eval_id).query("ratchet.eval_progress")
    workers[0].kill9()
    assert ended < len(cases)
    workers.append(
        WorkerProcess(address, queue, model_server, tmp_path, app="tests.eval_app:agents")
    )
    report = await asyncio.wait_for(running, timeout=120)
    assert len(report.cases) == 20 and all(c.error is None for c in report.cases)
    assert {n for n, c in zip(ORDERS, report.cases, strict=True) if c.regression} == {
        CALLS_ANOTHER_ORDER
    }


def _judge_or_shop(request: RecordedRequest) -> Step:
    """The judge's requests (pydantic-ai asks for its ``final_result`` tool) pass an
    answer that gives the order's status; the agents' requests go to their model."""
    offered = [t["function"]["name"] for t in request.body.get("tools", [])]
    if "final_result" not in offered:
        return shop_model(request)
    ok = "has shipped" in json.dumps(request.body["messages"])
    verdict = {"reason": "gives the status" if ok else "no status", "pass": ok, "score": float(ok)}
    return tool_calls(call("final_result", verdict))


async def test_llm_judge_on_an_openai_compatible_model(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_server.handler = _judge_or_shop
    run_ids = await _record(temporal_client, model_server, orders=[1, 2])
    async with hosted(temporal_client, [SHOP], model_server) as agents:
        cases = await recorded_cases(agents, runs=run_ids)
    monkeypatch.setenv("OPENAI_BASE_URL", model_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SCRIPTED_API_KEY)
    checks = Checks(judge="openai:judge", rubric="The answer gives the order's status.")
    runs = recorded_runs(cases)
    runs[1] = runs[1].model_copy(update={"answer": "I do not know."})
    report = await score(cases, runs, checks, agent="judged")
    assert [c.checks["judge"] for c in report.cases] == [True, False]
    assert [c.scores["judge score"] for c in report.cases] == [1.0, 0.0]
    assert report.cases[1].reasons["judge"] == "no status"


async def test_eval_cli_refuses_what_it_cannot_do(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    no_agent = await ratchet("eval", "--from-agent", "shop")
    assert_clean_error(no_agent, "name the agent to evaluate (--agent NAME)")
    no_runs = await ratchet("eval", "--agent", "shop-v2", "--address", _address(temporal_client))
    assert_clean_error(no_runs, "choose the recorded runs to evaluate")
    model_server.handler = shop_model
    [recorded] = await _record(temporal_client, model_server, orders=[1])
    async with hosted(temporal_client, [SHOP_V2], model_server) as agents:
        cases = await recorded_cases(agents, runs=[recorded])
        with pytest.raises(ConfigError, match="shop-v3"):
            await run_eval(agents, "shop-v3", cases)
