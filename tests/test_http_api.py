"""The HTTP API, endpoint by endpoint, over real HTTP: uvicorn on 127.0.0.1, a real dev
server, an in-process worker and the scripted model server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx2 as httpx
import pytest
from temporalio.client import Client

from ratchet import AgentClient, RateLimit
from ratchet.events import RunEventAdapter, cursor
from ratchet.http import AuthSettings, KeyStore, create_app
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls

from .conftest import eventually, hosted
from .http_kit import Served, agents, keys_of_every_role, read_sse, serve

ANSWER = "Order 1042 shipped on Monday and should arrive by Thursday at the latest."


@dataclass
class Api:
    served: Served
    client: AgentClient
    keys: dict[str, str]
    store: KeyStore

    def as_(self, role: str) -> httpx.AsyncClient:
        return self.served.client(self.keys[role])


@pytest.fixture
async def api(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> AsyncIterator[Api]:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = keys_of_every_role(store)
    async with hosted(temporal_client, agents(), model_server) as client:
        app = create_app(
            client,
            agents=agents(),
            auth=AuthSettings(keys=store),
            keepalive_seconds=0.3,
            temporal_ui_url="http://127.0.0.1:8233",
        )
        with serve(app) as served:
            yield Api(served, client, keys, store)
    store.close()


async def wait_for_status(http: httpx.AsyncClient, run_id: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = (await http.get(f"/v1/runs/{run_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {status}: {body}")


async def sse_events(http: httpx.AsyncClient, path: str, **kwargs: Any) -> list[Any]:
    async with http.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e async for e in read_sse(response)]


async def test_agents_are_listed_and_described(api: Api) -> None:
    async with api.as_("viewer") as http:
        listed = (await http.get("/v1/agents")).json()
        assert [a["name"] for a in listed] == ["guarded", "helper"]
        guarded = (await http.get("/v1/agents/guarded")).json()
        missing = await http.get("/v1/agents/nobody")
    assert guarded["instructions"] == "You are a support agent."
    assert guarded["model"] == "openai:gpt-4o-mini"
    [tool] = guarded["tools"]
    assert (tool["name"], tool["side_effects"]) == ("refund", True)
    assert tool["parameters"]["properties"]["amount"]["type"] == "integer"
    assert guarded["policy"]["rules"][0]["decision"] == "require_approval"
    assert guarded["limits"]["max_turns"] == 10
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    problem = missing.json()
    assert problem["error_type"] == "UnknownAgent"
    assert problem["type"] == "urn:ratchet:error:UnknownAgent"
    assert problem["status"] == 404 and "helper" in problem["detail"]


async def test_a_run_is_started_idempotently_read_traced_and_streamed(
    api: Api, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply(ANSWER))
    async with api.as_("operator") as http:
        body = {"agent": "helper", "prompt": "Where is order 1042?", "id": "http-run-1"}
        started = await http.post("/v1/runs", json=body)
        assert started.status_code == 201, started.text
        assert started.json() == {
            "id": "http-run-1",
            "existed": False,
            "agent": "helper",
            "status": "running",  # the start sets RatchetStatus (RunInput.version 2)
        }
        again = await http.post("/v1/runs", json=body)
        assert again.status_code == 200 and again.json()["existed"] is True
        other = await http.post("/v1/runs", json={**body, "prompt": "something else"})
        assert other.status_code == 400 and other.json()["error_type"] == "ConfigError"

        events = await sse_events(http, "/v1/runs/http-run-1/events")
        detail = (await http.get("/v1/runs/http-run-1")).json()
        trace = (await http.get("/v1/runs/http-run-1/trace")).json()
        transcript = (await http.get("/v1/runs/http-run-1/transcript")).json()

    # The stream: every run event once, each with its cursor as id; it ends with the run.
    types = [e.event for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    parsed = [RunEventAdapter.validate_json(e.data) for e in events]
    assert [e.id for e in events] == [cursor(p) for p in parsed]
    assert [p.type for p in parsed] == types
    recorded = [e async for e in api.client.get("http-run-1").events(follow=False)]
    assert [p.seq for p in parsed if p.type not in ("token", "tokens_superseded")] == [
        r.seq for r in recorded
    ]
    assert parsed[-1].output == ANSWER  # type: ignore[union-attr]

    assert detail["status"] == "completed" and detail["agent"] == "helper"
    assert detail["prompt"] == "Where is order 1042?" and detail["chat"] is False
    assert detail["tenant"] is None and detail["turns"] == 2
    assert detail["started"].endswith("+00:00") or detail["started"].endswith("Z")
    assert detail["temporal_ui_url"] == (
        "http://127.0.0.1:8233/namespaces/default/workflows/http-run-1"
    )
    # The trace holds the exact prompt (system instructions included) and the tool's arguments.
    model_steps = [s for s in trace["steps"] if s["kind"] == "model"]
    assert model_steps[0]["messages"][0] == {
        **model_steps[0]["messages"][0],
        "role": "system",
        "content": "You are a support agent. Be brief.",
    }
    [tool_step] = [s for s in trace["steps"] if s["kind"] == "tool"]
    assert tool_step["arguments"] == {"order_id": 1042}
    assert [m["role"] for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
    assert transcript[-1]["content"] == ANSWER


async def test_runs_are_listed_with_filters_and_pages(
    api: Api, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("one"), reply("two"), reply("three"))
    async with api.as_("operator") as http:
        ids = []
        for n in range(3):
            started = await http.post("/v1/runs", json={"agent": "helper", "prompt": f"n{n}"})
            ids.append(started.json()["id"])
            await wait_for_status(http, ids[-1], "completed")
        # The listing reads the visibility store, which lags the runs a little.
        await eventually(
            lambda: http.get("/v1/runs", params={"status": "completed", "agent": "helper"}),
            lambda listed: set(ids) <= {r["id"] for r in listed.json()["runs"]},
        )
        seen: list[str] = []
        token = None
        for _ in range(10):
            params: dict[str, Any] = {"agent": "helper", "page_size": 1}
            if token:
                params["page_token"] = token
            page = (await http.get("/v1/runs", params=params)).json()
            seen += [r["id"] for r in page["runs"]]
            token = page["next_page_token"]
            if token is None:
                break
        mine = [i for i in seen if i in ids]
        # Every run once, across pages of one.
        assert sorted(mine) == sorted(ids) and len(set(seen)) == len(seen)
        completed = (await http.get("/v1/runs", params={"status": "completed"})).json()
        assert set(ids) <= {r["id"] for r in completed["runs"]}
        failed = (await http.get("/v1/runs", params={"status": "failed", "agent": "helper"})).json()
        assert not set(ids) & {r["id"] for r in failed["runs"]}
        later = (
            await http.get("/v1/runs", params={"started_after": "2999-01-01T00:00:00+00:00"})
        ).json()
        assert later["runs"] == []
        bad = await http.get("/v1/runs", params={"status": "canceled"})
    assert bad.status_code == 422 and "'cancelled'" in bad.json()["detail"]
    listed = next(r for r in completed["runs"] if r["id"] == ids[0])
    assert listed["agent"] == "helper" and listed["turns"] == 1 and listed["tenant"] is None


async def test_a_chat_is_sent_messages_and_ended(
    api: Api, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Hello."), reply("It shipped."))
    async with api.as_("operator") as http:
        started = await http.post(
            "/v1/runs", json={"agent": "helper", "prompt": "hi", "chat": True}
        )
        run_id = started.json()["id"]
        await wait_for_status(http, run_id, "waiting-input")
        answer = await http.post(f"/v1/runs/{run_id}/messages", json={"text": "Where is 1042?"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"output": "It shipped.", "turn": 2}
        ended = await http.post(f"/v1/runs/{run_id}/end")
        assert ended.status_code == 202 and ended.json() == {"id": run_id, "action": "end"}
        await wait_for_status(http, run_id, "completed")
        again = await http.post(f"/v1/runs/{run_id}/end")
        not_chat = await http.post(f"/v1/runs/{run_id}/messages", json={"text": ""})
    assert again.status_code == 409
    assert not_chat.status_code == 422 and not_chat.json()["error_type"] == "ConfigError"


async def test_approvals_are_listed_and_answered_by_the_authenticated_principal(
    api: Api, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 250})),
        reply("Refunded."),
        tool_calls(call("refund", {"order_id": 8, "amount": 900})),
        reply("I could not refund it."),
    )
    async with api.as_("operator") as operator, api.as_("approver") as approver:
        first = (await operator.post("/v1/runs", json={"agent": "guarded", "prompt": "a"})).json()
        await wait_for_status(operator, first["id"], "waiting-approval")
        inbox = (await operator.get("/v1/approvals")).json()
        [pending] = [p for p in inbox if p["run_id"] == first["id"]]
        assert pending["tool"] == "refund" and pending["arguments"] == {
            "order_id": 7,
            "amount": 250,
        }
        assert pending["reason"] == "refunds need a person" and pending["kind"] == "tool"
        path = f"/v1/runs/{first['id']}/approvals/{pending['call_id']}"
        # The approver's name is the key's, whatever the body says.
        refused = await approver.post(f"{path}/approve", json={"approver": "mallory"})
        assert refused.status_code == 422
        record = await approver.post(f"{path}/approve", json={"reason": "customer is right"})
        assert record.status_code == 200, record.text
        assert record.json()["approver"] == "approver" and record.json()["approved"] is True
        twice = await approver.post(f"{path}/approve", json={})
        assert twice.status_code == 409 and twice.json()["error_type"] == "ApprovalError"
        assert (await wait_for_status(operator, first["id"], "completed"))["turns"] == 2

        second = (await operator.post("/v1/runs", json={"agent": "guarded", "prompt": "b"})).json()
        await wait_for_status(operator, second["id"], "waiting-approval")
        [pending] = [p for p in (await operator.get("/v1/approvals")).json()]
        no_reason = await approver.post(
            f"/v1/runs/{second['id']}/approvals/{pending['call_id']}/deny", json={}
        )
        assert no_reason.status_code == 422
        denied = await approver.post(
            f"/v1/runs/{second['id']}/approvals/{pending['call_id']}/deny",
            json={"reason": "too much"},
        )
        assert denied.json()["approved"] is False and denied.json()["reason"] == "too much"
        await wait_for_status(operator, second["id"], "completed")
        trace = (await operator.get(f"/v1/runs/{first['id']}/trace")).json()
    [step] = [s for s in trace["steps"] if s["kind"] == "tool"]
    assert step["approval"]["approver"] == "approver"
    assert step["approval"]["reason"] == "customer is right"


async def test_a_run_is_cancelled_once(api: Api, model_server: ScriptedModelServer) -> None:
    model_server.add(hang())
    async with api.as_("operator") as http:
        run_id = (await http.post("/v1/runs", json={"agent": "helper", "prompt": "x"})).json()["id"]
        await model_server.wait_for_requests_async(1, timeout=30)
        cancelled = await http.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json() == {"id": run_id, "action": "cancel"}
        await wait_for_status(http, run_id, "cancelled")
        again = await http.post(f"/v1/runs/{run_id}/cancel")
        missing = await http.post("/v1/runs/no-such-run/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"run {run_id!r} is already cancelled; only running runs can be cancelled"
    )
    assert missing.status_code == 404 and missing.json()["error_type"] == "RunNotFound"


async def test_limits_are_read_and_changed_live(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = keys_of_every_role(store)
    model_server.add(reply("ok"))
    async with hosted(
        temporal_client,
        agents(),
        model_server,
        rate_limits={"openai": RateLimit(rpm=100, window_seconds=60)},
    ) as client:
        await (await client.start("helper", "hi")).result()  # starts the limiter
        with serve(create_app(client, agents=agents(), auth=AuthSettings(keys=store))) as served:
            async with (
                served.client(keys["viewer"]) as viewer,
                served.client(keys["admin"]) as admin,
            ):
                board = (await viewer.get("/v1/limits")).json()
                forbidden = await viewer.put("/v1/limits/openai", json={"rpm": 5})
                changed = await admin.put("/v1/limits/openai", json={"rpm": 5, "tpm": 1000})
                unknown = await admin.put("/v1/limits/nobody", json={"rpm": 5})
                bad = await admin.put("/v1/limits/openai", json={"rpm": -1})
    [openai] = [s for s in board if s["provider"] == "openai"]
    assert openai["limit"]["rpm"] == 100 and openai["granted_total"] >= 1
    assert forbidden.status_code == 403 and forbidden.json()["error_type"] == "Forbidden"
    assert changed.status_code == 200, changed.text
    assert (changed.json()["limit"]["rpm"], changed.json()["limit"]["tpm"]) == (5, 1000)
    assert unknown.status_code == 404 and "no limiter" in unknown.json()["detail"]
    assert bad.status_code == 422
    store.close()


async def test_keys_are_created_listed_and_revoked_by_admins(api: Api) -> None:
    async with api.as_("admin") as admin:
        created = await admin.post("/v1/keys", json={"name": "ci-bot", "role": "operator"})
        assert created.status_code == 201, created.text
        key = created.json()
        assert key["key"].startswith("rk_") and key["role"] == "operator"
        async with api.served.client(key["key"]) as bot:
            assert (await bot.get("/v1/me")).json()["principal"] == "ci-bot"
            listed = (await admin.get("/v1/keys")).json()
            assert {"ci-bot", "admin", "viewer"} <= {k["name"] for k in listed}
            assert all("key" not in k for k in listed)
            revoked = await admin.delete(f"/v1/keys/{key['id']}")
            assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
            after = await bot.get("/v1/me")
        missing = await admin.delete("/v1/keys/nope")
        bad_role = await admin.post("/v1/keys", json={"name": "x", "role": "root"})
    assert after.status_code == 401 and after.headers["www-authenticate"] == "Bearer"
    assert missing.status_code == 404
    assert bad_role.status_code == 422
    # Stored as a hash only.
    assert key["key"].encode() not in (api.store.path).read_bytes()


async def test_the_event_stream_resumes_after_last_event_id_and_keeps_alive(
    api: Api, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER, chunk_chars=3, chunk_delay=0.05, delay=1.0))
    async with api.as_("viewer") as viewer, api.as_("operator") as operator:
        run_id = (await operator.post("/v1/runs", json={"agent": "helper", "prompt": "x"})).json()[
            "id"
        ]
        path = f"/v1/runs/{run_id}/events"

        async def cut_after_five_tokens() -> list[Any]:
            seen = []
            async with viewer.stream("GET", path) as response:
                async for event in read_sse(response):
                    seen.append(event)
                    if sum(e.event == "token" for e in seen) == 5:
                        return seen  # the connection drops mid-reply
            raise AssertionError("the stream ended before five tokens")

        comments: list[str] = []

        async def whole() -> list[Any]:
            async with viewer.stream("GET", path) as response:
                return [e async for e in read_sse(response, comments=comments)]

        everything, first = await asyncio.gather(whole(), cut_after_five_tokens())
        rest = await sse_events(viewer, path, headers={"Last-Event-ID": first[-1].id})
        # `after` names the same cursor; the header wins when both are given.
        tail = await sse_events(viewer, f"{path}?after=1", headers={"Last-Event-ID": first[-1].id})
        bad = await viewer.get(f"{path}?after=nonsense")

    assert first[-1].id.count(":") == 2  # a token's cursor
    resumed = first + rest
    # Nothing lost, nothing twice.
    assert [(e.id, e.data) for e in resumed] == [(e.id, e.data) for e in everything]
    assert [e.id for e in tail] == [e.id for e in rest]
    text = "".join(e.json()["text"] for e in everything if e.event == "token")
    assert text == ANSWER
    assert everything[-1].event == "run_finished"
    # The model waited a second before answering: idle time was filled with keep-alives.
    assert comments and all(c.startswith(":") for c in comments)
    assert bad.status_code == 422 and "query.after" in bad.json()["detail"]


async def test_openapi_and_console_are_served(api: Api) -> None:
    async with api.served.client() as anonymous:
        schema = (await anonymous.get("/v1/openapi.json")).json()
        page = await anonymous.get("/")
        nothing = await anonymous.get("/v1/nothing-here")
        runs = await anonymous.get("/v1/runs")
    paths = schema["paths"]
    assert {"/v1/runs", "/v1/runs/{run_id}/events", "/v1/agui/{agent}", "/v1/keys"} <= set(paths)
    assert "Problem" in schema["components"]["schemas"]
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert page.headers["x-frame-options"] == "DENY"
    assert nothing.status_code == 404
    assert nothing.headers["content-type"] == "application/problem+json"
    assert runs.status_code == 401 and runs.json()["error_type"] == "Unauthorized"
    assert runs.headers["cache-control"] == "no-store"


async def test_bad_input_is_answered_in_words_that_say_what_to_send(api: Api) -> None:
    async with api.as_("operator") as http:
        blank = await http.post("/v1/runs", json={"agent": "helper", "prompt": "  "})
        model = await http.post(
            "/v1/runs", json={"agent": "helper", "prompt": "hi", "model": "gpt-4o"}
        )
        agent = await http.post("/v1/runs", json={"agent": "9lives", "prompt": "hi"})
        cursor = await http.get("/v1/runs/any/events", params={"after": "abc"})
        broken = await http.post(
            "/v1/runs", content=b'{"agent":', headers={"Content-Type": "application/json"}
        )
        form = await http.post("/v1/runs", data={"agent": "helper", "prompt": "hi"})
        slash = await http.post(
            "/v1/runs", json={"agent": "helper", "prompt": "hi", "id": "orders/1042"}
        )
    details = {
        name: (response.status_code, response.json()["detail"])
        for name, response in {
            "blank": blank,
            "model": model,
            "agent": agent,
            "cursor": cursor,
            "broken": broken,
            "form": form,
            "slash": slash,
        }.items()
    }
    assert all(status == 422 for status, _ in details.values()), details
    # No regular expressions: each says what the value must be, with an example.
    assert "pattern" not in str(details)
    assert details["blank"][1] == "invalid request: prompt: must not be empty or blank"
    assert "model: 'gpt-4o' must be 'local' or '<provider>:<model>'" in details["model"][1]
    assert "agent: '9lives' must be an agent name" in details["agent"][1]
    assert "query.after: 'abc' must be an event cursor" in details["cursor"][1]
    assert "e.g. '12:1:40'" in details["cursor"][1]
    assert "the body is not valid JSON" in details["broken"][1]
    assert "at character 9" in details["broken"][1]
    assert "Content-Type: application/json" in details["form"][1]
    # A run id with '/' could be started but never reached by its URLs: refused up front.
    assert "id: 'orders/1042' must be a run id without '/'" in details["slash"][1]


async def test_with_authenticated_approvals_the_api_vouches_for_its_approvers(
    temporal_client: Client,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ratchet import ApprovalError

    monkeypatch.setenv("RATCHET_APPROVAL_SECRET", "correct-horse-battery-staple-42")
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = keys_of_every_role(store)
    model_server.add(tool_calls(call("refund", {"order_id": 3, "amount": 300})), reply("Done."))
    async with hosted(temporal_client, agents(), model_server) as client:
        app = create_app(client, agents=agents(), auth=AuthSettings(keys=store))
        with serve(app) as served:
            async with served.client(keys["approver"]) as http:
                run_id = (
                    await http.post("/v1/runs", json={"agent": "guarded", "prompt": "refund"})
                ).json()["id"]
                await wait_for_status(http, run_id, "waiting-approval")
                [pending] = (await http.get("/v1/approvals")).json()
                # Straight through Temporal, without the API's proof: refused.
                with pytest.raises(ApprovalError):
                    await client.get(run_id).approve(pending["call_id"], approver="mallory")
                path = f"/v1/runs/{run_id}/approvals/{pending['call_id']}/approve"
                record = (await http.post(path, json={"reason": "ok"})).json()
                await wait_for_status(http, run_id, "completed")
    assert record["approver"] == "approver" and record["approved"] is True
    assert record.get("authenticated", True) is True
    store.close()


def test_the_schema_patterns_accept_only_what_ratchet_accepts() -> None:
    """What the schema allows, ratchet's own checks allow too (no schema-valid 400)."""
    from pydantic import Field, TypeAdapter, ValidationError

    from ratchet._runs import TENANT_RE
    from ratchet.agent import PROVIDER_RE, check_agent_name
    from ratchet.errors import ConfigError
    from ratchet.http import _schemas

    def agent_ok(value: str) -> bool:
        try:
            check_agent_name(value)
        except ConfigError:
            return False
        return True

    checks = {
        _schemas.AGENT_NAME: agent_ok,
        _schemas.TENANT: lambda v: TENANT_RE.match(v) is not None,
        _schemas.PROVIDER: lambda v: PROVIDER_RE.match(v) is not None,
    }
    samples = ["a", "A1", "acme", "a.b-c_d", "1a", "-a", "a b", "a\n", "", "é", "a" * 65]
    for pattern, ratchet_ok in checks.items():
        adapter: TypeAdapter[str] = TypeAdapter(Annotated[str, Field(pattern=pattern)])
        for sample in samples:
            try:
                adapter.validate_python(sample)
            except ValidationError:
                continue
            assert ratchet_ok(sample), (pattern, sample)
        assert ratchet_ok("acme") and adapter.validate_python("acme")
