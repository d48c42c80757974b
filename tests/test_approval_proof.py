"""Authenticated approvals: a worker holding RATCHET_APPROVAL_SECRET records an answer only
with a valid proof that a trusted service vouched for the approver; a bare update sent
straight through Temporal (as the Temporal Web UI or CLI would) is refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from ratchet import ApprovalError, ConfigError, RunHandle
from ratchet._protocol import APPROVE_UPDATE
from ratchet.approval_proof import SECRET_ENV, sign_approval, verify_approval
from ratchet.testing import ScriptedModelServer, ScriptedUsage, call, reply, tool_calls
from ratchet.trace import build_trace

from .conftest import decoded_history_text, hosted
from .test_approvals import agent, refunds, told
from .test_budgets import budget_agent, looping_steps, waiting_budget
from .test_cli import address, ratchet

SECRET = "correct-horse-battery-staple-42"
OTHER_SECRET = "another-deployment-secret-0042"


# -- the proof itself -------------------------------------------------------------------

ANSWER: dict[str, Any] = {
    "run_id": "support-1",
    "call_id": "turn1-tool0",
    "approve": True,
    "approver": "alice@example.com",
    "raise_to": None,
}


def test_a_proof_verifies_for_exactly_the_answer_it_was_signed_for() -> None:
    proof = sign_approval(SECRET, **ANSWER)
    verify_approval(SECRET, proof, **ANSWER)
    verify_approval(SECRET.encode(), proof, **ANSWER)
    changed: list[dict[str, Any]] = [
        {"run_id": "support-2"},
        {"call_id": "turn1-tool1"},
        {"approve": False},
        {"approver": "mallory"},
        {"raise_to": 100.0},
    ]
    for change in changed:
        with pytest.raises(ApprovalError, match="does not match this answer"):
            verify_approval(SECRET, proof, **{**ANSWER, **change})
    with pytest.raises(ApprovalError, match="does not match this answer"):
        verify_approval(OTHER_SECRET, proof, **ANSWER)
    assert SECRET not in proof


def test_a_proof_expires_and_is_not_dated_ahead() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    old = sign_approval(SECRET, **ANSWER, issued_at=now - timedelta(minutes=11))
    with pytest.raises(ApprovalError, match="expired"):
        verify_approval(SECRET, old, **ANSWER, now=now)
    verify_approval(SECRET, old, **ANSWER, now=now, max_age=timedelta(minutes=12))
    ahead = sign_approval(SECRET, **ANSWER, issued_at=now + timedelta(minutes=5))
    with pytest.raises(ApprovalError, match="in the future"):
        verify_approval(SECRET, ahead, **ANSWER, now=now)
    with pytest.raises(ConfigError, match="time zone"):
        sign_approval(SECRET, **ANSWER, issued_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_a_budget_limit_signs_the_same_as_an_int_or_a_float() -> None:
    budget = {**ANSWER, "call_id": "turn4-budget-max_total_tokens", "raise_to": 20000}
    proof = sign_approval(SECRET, **budget)
    verify_approval(SECRET, proof, **{**budget, "raise_to": 20000.0})
    with pytest.raises(ApprovalError):
        verify_approval(SECRET, proof, **{**budget, "raise_to": 20001.0})


@pytest.mark.parametrize(
    "proof",
    ["", "v1", "v1.123", "v1.abc.AAAA", "v1.123.not base64!", "v1.1.2.3", "v1.\u0661\u0662.AAAA"],
)
def test_a_malformed_proof_is_refused(proof: str) -> None:
    with pytest.raises(ApprovalError, match="malformed"):
        verify_approval(SECRET, proof, **ANSWER)


def test_a_proof_of_another_version_or_a_short_secret_is_refused() -> None:
    proof = sign_approval(SECRET, **ANSWER)
    with pytest.raises(ApprovalError, match="version 'v2'"):
        verify_approval(SECRET, "v2" + proof[2:], **ANSWER)
    with pytest.raises(ConfigError, match="at least 16"):
        sign_approval("short", **ANSWER)


# -- a run whose worker requires proofs -------------------------------------------------


async def waiting_call(handle: RunHandle) -> str:
    for _ in range(400):
        if pending := await handle.pending():
            return pending[0].call_id
        await asyncio.sleep(0.05)
    raise AssertionError("no call is waiting for approval")


async def bare_update(client: Client, run_id: str, answer: dict[str, object]) -> str:
    """An answer sent straight through Temporal, as its Web UI or CLI sends one: the
    update's failure message."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await client.get_workflow_handle(run_id).execute_update(APPROVE_UPDATE, answer)
    assert isinstance(info.value.cause, ApplicationError)
    return info.value.cause.message


async def test_a_worker_with_the_secret_records_only_proven_answers(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    refunds.clear()
    model_server.add(
        tool_calls(call("refund", {"order_id": 77, "amount": 500})),
        reply("Refunded.").expecting(told("refunded $500 on order 77")),
    )
    # No workflow cache: every workflow task replays the run, answers refused included.
    async with hosted(temporal_client, [agent()], model_server, max_cached_workflows=0) as client:
        handle = await client.start("guarded", "refund $500 on 77")
        call_id = await waiting_call(handle)

        def proof(**change: Any) -> str:
            fields: dict[str, Any] = {
                "run_id": handle.id,
                "call_id": call_id,
                "approve": True,
                "approver": "alice",
                "raise_to": None,
                **change,
            }
            secret = str(fields.pop("secret", SECRET))
            return sign_approval(secret, **fields)

        bare = {"call_id": call_id, "approve": True, "approver": "mallory"}
        message = await bare_update(temporal_client, handle.id, bare)
        assert message.startswith("this deployment requires authenticated approvals")
        assert "HTTP API/console" in message
        with pytest.raises(ApprovalError, match="requires authenticated approvals"):
            await handle.approve(call_id, approver="mallory")
        refused = {
            "another secret": (proof(secret=OTHER_SECRET), "alice", "does not match"),
            "another call": (proof(call_id="turn1-tool1"), "alice", "does not match"),
            "another run": (proof(run_id="other-run"), "alice", "does not match"),
            "a denial's proof": (proof(approve=False), "alice", "does not match"),
            "another approver": (proof(), "mallory", "does not match"),
            "expired": (
                proof(issued_at=datetime.now(UTC) - timedelta(minutes=11)),
                "alice",
                "expired",
            ),
            "garbage": ("v1.0.AAAA", "alice", "does not match"),
        }
        for why, (forged, approver, error) in refused.items():
            with pytest.raises(ApprovalError, match=error):
                await handle.approve(call_id, approver=approver, proof=forged)
            assert await handle.pending(), f"{why}: the call no longer waits"
        # A valid proof sent straight through Temporal, under another name: refused too.
        unproven = {**bare, "proof": proof()}
        assert "does not match" in await bare_update(temporal_client, handle.id, unproven)
        assert refunds == []
        assert (await handle.status()).state == "waiting-approval"

        good = proof()
        record = await handle.approve(call_id, approver="alice", reason="ok", proof=good)
        assert (record.approver, record.approved, record.authenticated) == ("alice", True, True)
        assert (await handle.result()).output == "Refunded."
        status = await handle.status()
        history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    model_server.verify()
    assert refunds == [(77, 500)]
    assert [(a.approver, a.authenticated) for a in status.approvals] == [("alice", True)]
    trace = await build_trace(temporal_client, handle.id)
    assert [a.approver for a in trace.approvals] == ["alice"]
    # The proofs are in the history (they are HMACs); the secret never is.
    text = decoded_history_text(history.to_json_dict())
    assert good in text and SECRET not in text
    # The proof was checked by the recorded activity (a version-2 run asks no patch).
    assert "ratchet.verify_approval" in text and "ratchet.approval-proof" not in text


async def test_a_raised_budget_needs_a_proof_of_its_new_limit(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    model_server.add(
        *looping_steps(3),  # type: ignore[arg-type]
        reply("done", usage=ScriptedUsage(prompt_tokens=1000, completion_tokens=100)),
    )
    async with hosted(temporal_client, [budget_agent()], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        waiting = await waiting_budget(handle)
        proof = sign_approval(
            SECRET,
            run_id=handle.id,
            call_id=waiting.call_id,
            approve=True,
            approver="ana",
            raise_to=10_000,
        )
        with pytest.raises(ApprovalError, match="does not match"):
            await handle.approve(waiting.call_id, approver="ana", raise_to=50_000, proof=proof)
        with pytest.raises(ApprovalError, match="requires authenticated approvals"):
            await handle.approve(waiting.call_id, approver="ana", raise_to=10_000)
        record = await handle.approve(waiting.call_id, approver="ana", raise_to=10_000, proof=proof)
        assert (record.raise_to, record.authenticated) == (10_000, True)
        assert (await handle.result()).output == "done"
    model_server.verify()


async def test_without_a_secret_answers_are_taken_as_before(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    model_server.add(
        tool_calls(call("refund", {"order_id": 78, "amount": 900})),
        reply("Not refunded.").expecting(told("bob denied this call: too large")),
    )
    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $900 on 78")
        call_id = await waiting_call(handle)
        answer = {"call_id": call_id, "approve": False, "approver": "bob", "reason": "too large"}
        await temporal_client.get_workflow_handle(handle.id).execute_update(APPROVE_UPDATE, answer)
        assert (await handle.result()).output == "Not refunded."
        [record] = (await handle.status()).approvals
    assert (record.approver, record.approved, record.authenticated) == ("bob", False, False)


async def test_ratchet_approve_signs_with_the_secret_in_its_environment(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)  # the worker's (in this process)
    model_server.add(
        tool_calls(call("refund", {"order_id": 79, "amount": 300})),
        reply("Refunded.").expecting(told("refunded $300 on order 79")),
    )
    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $300 on 79")
        call_id = await waiting_call(handle)
        where = ("--address", address(temporal_client))
        unsigned = await ratchet(
            "deny", handle.id, call_id, "--as", "eve", *where, env={SECRET_ENV: ""}
        )
        assert unsigned.returncode == 1
        assert "requires authenticated approvals" in unsigned.stderr
        assert "Traceback" not in unsigned.stderr
        signed = await ratchet(
            "approve", handle.id, call_id, "--as", "dave", *where, env={SECRET_ENV: SECRET}
        )
        assert signed.returncode == 0, signed.stderr
        assert signed.stdout.strip() == f"approved {call_id} (refund) of {handle.id} as dave"
        assert (await handle.result()).output == "Refunded."
        [record] = (await handle.status()).approvals
    assert (record.approver, record.authenticated) == ("dave", True)
