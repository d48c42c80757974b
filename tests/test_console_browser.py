"""The web console in a real browser.

Playwright drives Debian's chromium (``make chromium`` installs it; Playwright cannot
download browsers here) against a real server: uvicorn serving ``create_app`` over
an in-process worker on the real Temporal dev server, with the scripted model
streaming its replies slowly enough to watch them arrive. Each test signs in with an
API key of some role, as a person would, and checks what the page shows.

Screenshots are kept as artifacts under pytest's temporary directory
(``console-screenshots*``; a failing test's captured output names it). With
``RATCHET_CONSOLE_SCREENSHOTS=DIR`` the ones the README shows are written there too
(``RATCHET_CONSOLE_SCREENSHOTS=docs/img``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError

from ratchet import Agent, AgentClient, Limits, Policy, RateLimit, require_approval, tool
from ratchet._limiter_protocol import limiter_id
from ratchet.local._proc import free_port
from ratchet.policy import arg
from ratchet.testing import ScriptedModelServer, call, error, reply, scripted_provider, tool_calls

from .conftest import ROOT, hosted

CONSOLE_DIR = ROOT / "src" / "ratchet" / "http" / "console"
# A zone without daylight saving time, far from UTC: every timestamp must say it.
TIME_ZONE = "Asia/Kolkata"
ZONE_OFFSET = "UTC+05:30"

TOOL_EVENTS = {"policy_decision", "tool_call_started", "tool_call_finished", "tool_call_rejected"}
INSTRUCTIONS = "You are Acme's support agent. Refunds over $100 need a person's approval."
ANSWER = (
    "Order 1042 left our warehouse on Monday and the carrier expects to deliver it on "
    "Thursday before noon; I will refund the shipping fee if it is late."
)


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped", "carrier": "ACME Post"}


@tool(side_effects=True)
def refund(order_id: int, amount: float) -> str:
    """Refund an order.

    Args:
        order_id: the order number.
        amount: dollars to refund.
    """
    return f"refunded ${amount:.2f} on order {order_id}"


SUPPORT = Agent(
    "console-support",
    instructions=INSTRUCTIONS,
    model="openai:gpt-4o-mini",
    tools=[lookup_order, refund],
    policy=Policy(
        rules=[require_approval("refund", when=arg("amount") > 100, reason="refunds over $100")]
    ),
    limits=Limits(max_cost_usd=5.0),
)

# Continues as new every ~20 history events: a short run crosses executions.
LONG = Agent(
    "console-long",
    instructions=INSTRUCTIONS,
    model="openai:gpt-4o-mini",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1, continue_as_new_after_events=20),
)


# --- the browser --------------------------------------------------------------------------


def chromium_executable() -> str | None:
    """``$RATCHET_CHROMIUM``, else Debian's chromium: the binary itself, else the
    launcher script on PATH."""
    if chosen := os.environ.get("RATCHET_CHROMIUM"):
        return chosen if Path(chosen).exists() else None
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _missing(what: str) -> None:
    message = (
        f"{what}: the console's browser tests need it (`make chromium` installs Debian's chromium)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI a missing browser fails, it does not skip")
    pytest.skip(message)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    executable = chromium_executable()
    if executable is None:
        _missing("chromium is not installed")
    from playwright.async_api import expect

    # The machines are shared and loaded (the whole suite runs beside these tests): a
    # poll of the server can take seconds. A wrong page still fails, only later.
    expect.set_options(timeout=20_000)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("console-screenshots")
    print(f"console screenshots: {directory}")
    return directory


@dataclass
class Shots:
    """Where a test's screenshots go: the artifacts directory, and the README's."""

    directory: Path
    readme: Path | None = None

    async def take(self, page: Any, name: str, *, readme: bool = False) -> Path:
        path = self.directory / f"{name}.png"
        await page.screenshot(path=str(path))
        if readme and self.readme is not None:
            self.readme.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.readme / f"{name}.png")
        return path


@pytest.fixture
def shots(screenshots: Path) -> Shots:
    readme = os.environ.get("RATCHET_CONSOLE_SCREENSHOTS")
    return Shots(screenshots, Path(readme) if readme else None)


@dataclass
class Tab:
    """A signed-in browser tab, and every error its console printed."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)

    async def go(self, hash_route: str) -> None:
        await self.page.goto(f"{self.base}/#{hash_route}")

    async def assert_clean(self) -> None:
        """No error in the browser console, and no "null" or "undefined" on the page
        (a value a view forgot to leave out)."""
        assert not self.errors, f"the browser console printed errors: {self.errors}"
        stray = await self.page.evaluate(STRAY_TEXT)
        assert not stray, f"the page shows stray values: {stray}"

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request with this tab's session cookie and CSRF token, as the page sends them."""
        token = await self.page.evaluate("() => sessionStorage.getItem('ratchet.csrf')")
        return await self.page.request.fetch(
            f"{self.base}{path}",
            method=method,
            headers={"X-CSRF-Token": token or "", "Content-Type": "application/json"},
            data=body,
        )


async def open_step(step: Any) -> None:
    """Open a timeline step (a <details>) by clicking its summary, unless it is open."""
    if await step.get_attribute("open") is None:
        await step.locator(":scope > summary").click()


# --- the server ---------------------------------------------------------------------------


@dataclass
class Console:
    """The running server: its address, the client its API uses, and a key per role."""

    base: str
    client: AgentClient
    keys: dict[str, str]
    browser: Any
    provider: str
    """A provider of this server's own, with rate limits (its limiter starts on first use)."""

    @asynccontextmanager
    async def tab(self, key_name: str) -> AsyncIterator[Tab]:
        """A fresh browser context, signed in through the login form with that key."""
        context = await self.browser.new_context(
            viewport={"width": 1440, "height": 900}, timezone_id=TIME_ZONE
        )
        page = await context.new_page()
        tab = Tab(page, self.base)
        page.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        try:
            await page.goto(f"{self.base}/")
            await page.fill("#api-key", self.keys[key_name])
            await page.click("form.login-form button[type=submit]")
            await page.wait_for_selector("#whoami .principal")
            yield tab
        finally:
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def console(
    temporal_client: Client, model_server: ScriptedModelServer, browser: Any, tmp_path: Path
) -> AsyncIterator[Console]:
    import uvicorn

    from ratchet.http import AuthSettings, KeyStore, create_app

    store = KeyStore(tmp_path / "api-keys.sqlite")
    keys = {
        name: store.create(name, role, tenant)[1]
        for name, role, tenant in [
            ("olga", "operator", None),
            ("alice", "approver", None),
            ("victor", "viewer", None),
            ("acme-ops", "operator", "acme"),
            ("ada", "admin", None),
        ]
    }
    # A provider name of its own: its limiter is this test's alone, and ended after it.
    provider = f"p{uuid.uuid4().hex[:8]}"
    limited = Agent("console-limited", instructions="Be brief.", model=f"{provider}:m")
    async with hosted(
        temporal_client,
        [SUPPORT, LONG, limited],
        model_server,
        providers={provider: scripted_provider(model_server)},
        rate_limits={provider: RateLimit(rpm=50, tpm=100_000)},
    ) as client:
        app = create_app(
            client,
            agents=[SUPPORT, LONG, limited],
            auth=AuthSettings(keys=store),
            temporal_ui_url="http://127.0.0.1:8233",
            keepalive_seconds=2.0,
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
            )
        )
        serving = asyncio.create_task(server.serve())
        deadline = time.monotonic() + 10
        while not server.started:
            assert not serving.done(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            await asyncio.sleep(0.05)
        try:
            yield Console(f"http://127.0.0.1:{port}", client, keys, browser, provider)
        finally:
            server.should_exit = True
            await serving
            # A limiter left running would make every later `client.limits()` wait on it.
            with contextlib.suppress(RPCError):
                await temporal_client.get_workflow_handle(limiter_id(provider)).terminate("over")


STRAY_TEXT = """() => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const stray = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (["null", "undefined", "NaN", "[object Object]"].includes(node.nodeValue.trim())) {
            stray.push(`${node.parentElement.className}: ${node.nodeValue}`);
        }
    }
    return stray;
}"""
SAMPLE_ANSWER = """() => [
    document.querySelector("[data-testid=live-answer]")?.textContent ?? null,
    Boolean(document.querySelector(".final-answer:not([hidden])")),
]"""


# --- scenarios ------------------------------------------------------------------------------


async def test_a_run_started_from_the_console_streams_its_answer(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    # About 4 s of streaming: long enough to see it grow on a loaded machine.
    model_server.add(reply(ANSWER, chunk_chars=3, chunk_delay=0.08))
    async with console.tab("olga") as tab:
        page = tab.page
        await expect(page.locator("#whoami")).to_contain_text("operator")
        await page.keyboard.press("g")
        await page.keyboard.press("n")  # the shortcut to the start form
        await page.select_option("#start-agent", SUPPORT.name)
        await expect(page.locator(".agent-about")).to_contain_text(INSTRUCTIONS)
        await page.fill("#start-prompt", "Where is order 1042?")
        await page.keyboard.press("Control+Enter")
        await page.wait_for_url(re.compile(r"#/runs/[^?]+"))
        run_id = page.url.split("#/runs/")[1].split("?")[0]

        # The answer grows while the run works: sample it until the run has finished.
        lengths: list[int] = []
        live = page.locator("[data-testid=live-answer]")
        shot_taken = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # One look at the page per sample: the streamed text, and whether it ended.
            text, done = await page.evaluate(SAMPLE_ANSWER)
            if done:
                break
            if text and (not lengths or len(text) != lengths[-1]):
                lengths.append(len(text))
                assert ANSWER.startswith(text), f"not the answer's start: {text!r}"
            if not shot_taken and len(text or "") > len(ANSWER) // 2:
                await shots.take(page, "console-streaming", readme=True)
                shot_taken = True
            await asyncio.sleep(0.05)
        assert len(lengths) >= 3 and lengths == sorted(lengths), (
            f"the answer should grow piece by piece before the run ends; lengths seen: {lengths}"
        )
        assert lengths[0] < len(ANSWER) // 2, f"the first piece seen was most of it: {lengths}"
        # Once recorded, the message from the history replaces the streamed text.
        await expect(page.locator(".final-answer .outcome")).to_contain_text("Run completed")
        await expect(page.locator(".messages .msg.assistant").last).to_contain_text(ANSWER)
        assert await live.count() == 0
        await expect(page.locator(".run-title .status")).to_have_text("completed")
        # Times say their zone, and the UTC instant on hover.
        started = page.locator(".run-facts time").first
        await expect(started).to_contain_text(ZONE_OFFSET)
        assert (await started.get_attribute("title") or "").endswith("UTC")
        await shots.take(page, "console-run-finished")
        # The run is in the list, completed.
        await tab.go("/runs")
        row = page.locator(f"tr.run-row[data-run='{run_id}']")
        await expect(row).to_contain_text("completed")
        await tab.assert_clean()


async def test_the_timeline_shows_the_exact_prompt_and_the_tool_arguments(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042}), chunk_chars=5, chunk_delay=0.02),
        reply("It shipped with ACME Post.", chunk_chars=4, chunk_delay=0.02),
    )
    handle = await console.client.start(SUPPORT.name, "Where is order 1042? <b>Fast</b>")
    await handle.result()
    async with console.tab("victor") as tab:
        page = tab.page
        await tab.go(f"/runs/{handle.id}")
        await expect(page.locator(".run-title .status")).to_have_text("completed")
        # What a run holds is text, never markup.
        question = page.locator(".messages .msg.user")
        await expect(question).to_contain_text("<b>Fast</b>")
        assert await question.locator("b").count() == 0
        # The run's page in the Temporal Web UI.
        temporal = page.locator(".run-title a", has_text="Temporal")
        assert (await temporal.get_attribute("href") or "").startswith(
            f"http://127.0.0.1:8233/namespaces/default/workflows/{handle.id}"
        )
        timeline = page.locator(".pane-timeline")
        # The first model call: its prompt as sent starts with the system instructions.
        model_call = timeline.locator("details.step-model").first
        await open_step(model_call)
        system = model_call.locator(".prompt-msg.role-system")
        await expect(system).to_contain_text("system instructions")
        await expect(system).to_contain_text(INSTRUCTIONS)
        await expect(model_call.locator(".tools-offered")).to_contain_text("lookup_order")
        await expect(model_call.locator(".request-body")).to_contain_text('"tools"')
        await expect(model_call.locator(".fork-button")).to_have_count(0)  # a viewer's view
        # The tool call: its arguments, its result.
        tool_step = timeline.locator("details.step-tool", has_text="lookup_order")
        await open_step(tool_step)
        await expect(tool_step.locator(".arguments")).to_contain_text('"order_id": 1042')
        await expect(tool_step.locator(".result")).to_contain_text("ACME Post")
        # The step is in the URL: a reload shows it again.
        assert "step=" in page.url
        # The event log: filter to tool events, then search.
        log = page.locator(".pane-log")
        await log.locator("button.filter", has_text="tools").click()
        await expect(log.locator(".log-row[data-type='model_call_started']")).to_have_count(0)
        types = {
            await row.get_attribute("data-type") for row in await log.locator(".log-row").all()
        }
        assert {"tool_call_started", "tool_call_finished"} <= types <= TOOL_EVENTS
        await page.keyboard.press("/")
        await page.keyboard.type("ACME Post")
        await expect(log.locator(".log-row[data-type='tool_call_finished']")).to_have_count(1)
        assert "q=ACME" in page.url and "log=tools" in page.url
        # The waterfall has a bar per call.
        await expect(page.locator(".wf-bar.bar-model")).to_have_count(2)
        await expect(page.locator(".wf-bar.bar-tool")).to_have_count(1)
        await page.keyboard.press("Escape")  # leaves the field (and empties a search field)
        await expect(log.locator(".log-row[data-type='tool_call_started']")).to_have_count(1)
        await model_call.evaluate("card => card.scrollIntoView({block: 'start'})")
        await shots.take(page, "console-timeline", readme=True)
        # Panes by keyboard, kept in the URL: hide the waterfall, show tokens and cost.
        await page.keyboard.press("4")
        await page.keyboard.press("5")
        await expect(page.locator(".pane-waterfall")).to_have_count(0)
        await expect(page.locator(".pane-usage .usage-totals")).to_contain_text("model calls")
        assert "panes=chat%2Ctimeline%2Clog%2Cusage" in page.url
        await page.reload()
        await expect(page.locator(".pane-usage")).to_be_visible()
        await expect(page.locator(".pane-waterfall")).to_have_count(0)
        await tab.assert_clean()


async def test_a_long_run_shows_its_executions_and_a_retried_calls_error(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1})),
        tool_calls(call("lookup_order", {"order_id": 2})),
        tool_calls(call("lookup_order", {"order_id": 3})),
        error(503, message="upstream overloaded"),
        reply("All three have shipped."),
    )
    handle = await console.client.start(LONG.name, "Check orders 1 to 3")
    await handle.result()
    async with console.tab("victor") as tab:
        page = tab.page
        await tab.go(f"/runs/{handle.id}")
        await expect(page.locator(".run-title .status")).to_have_text("completed")
        boundary = page.locator(".timeline .step.boundary").first
        await expect(boundary).to_contain_text("Continued as new → execution 2")
        await expect(boundary.locator("time")).to_contain_text(ZONE_OFFSET)
        # The retried call is one step with two attempts, and says why the first failed.
        retried = page.locator("details.step-model", has_text="2 attempts")
        await expect(retried).to_have_count(1)
        await open_step(retried)
        await expect(retried.locator(".attempt-failed")).to_contain_text("upstream overloaded")
        log = page.locator(".pane-log")
        await log.locator("button.filter", has_text="errors").click()
        await expect(log.locator(".log-row")).to_have_count(1)
        await expect(log.locator(".log-row")).to_contain_text("attempt 1")
        await shots.take(page, "console-long-run")
        await tab.assert_clean()


async def test_an_approver_approves_a_refund_that_a_viewer_cannot(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(
        tool_calls(call("refund", {"order_id": 1042, "amount": 250})),
        reply("I refunded $250 on order 1042.", chunk_chars=6, chunk_delay=0.02),
    )
    handle = await console.client.start(SUPPORT.name, "Refund order 1042, it arrived broken.")
    async with console.tab("victor") as viewer:
        page = viewer.page
        await viewer.go("/approvals")
        item = page.locator(f".approval-item[data-run='{handle.id}']")
        await expect(item).to_contain_text("refund", timeout=20_000)
        await expect(item.locator(".arguments")).to_contain_text('"amount": 250')
        # A viewer sees what waits, but has no button to answer it...
        await expect(item.locator("[data-testid=approval-refused]")).to_contain_text("viewer")
        assert await item.locator("button.approve").count() == 0
        # ...and the server refuses the viewer's approval all the same.
        call_id = await item.get_attribute("data-call")
        refused = await viewer.api(
            "POST", f"/v1/runs/{handle.id}/approvals/{call_id}/approve", {"reason": "me too"}
        )
        assert refused.status == 403
        # The inbox links to the call in its run, where a viewer cannot answer it either.
        await item.locator(".approval-run a").click()
        waiting = page.locator("details.step-tool", has_text="refund")
        await expect(waiting).to_have_attribute("open", "")
        await expect(waiting).to_have_class(re.compile(r"\bselected\b"))
        await expect(waiting.locator("[data-testid=approval-refused]")).to_be_visible()
        assert await waiting.locator("button.approve").count() == 0
        await viewer.assert_clean()

    async with console.tab("alice") as approver:
        page = approver.page
        badge = page.locator("#approval-badge")
        await expect(badge).to_be_visible()
        await page.keyboard.press("g")
        await page.keyboard.press("a")
        item = page.locator(f".approval-item[data-run='{handle.id}']")
        await expect(item.locator(".deadline time")).to_contain_text(ZONE_OFFSET)
        await item.locator("textarea[name=reason]").fill("customer sent photos of the damage")
        await shots.take(page, "console-approvals", readme=True)
        await item.locator("button.approve").click()
        await expect(page.locator(".toast.ok")).to_contain_text("Approved refund as alice")
        await expect(item).to_have_count(0)
        result = await handle.result()
        assert result.output == "I refunded $250 on order 1042."
        # The run's timeline says who approved, when and why.
        await approver.go(f"/runs/{handle.id}")
        refund_step = page.locator("details.step-tool", has_text="refund")
        await expect(refund_step.locator(":scope > summary")).to_contain_text("approved by alice")
        await open_step(refund_step)
        record = refund_step.locator(".approval-record")
        await expect(record).to_contain_text("customer sent photos of the damage")
        await expect(record.locator("time")).to_contain_text(ZONE_OFFSET)
        await expect(page.locator(".wf-bar.bar-approval")).to_have_count(1)
        await shots.take(page, "console-approved-run")
        await approver.assert_clean()
    answered = [e async for e in handle.events(follow=False) if e.type == "approval_answered"]
    assert [(e.record.approver, e.record.approved) for e in answered] == [("alice", True)]  # type: ignore[union-attr]


async def test_an_approver_denies_a_call_inline_in_the_runs_timeline(
    console: Console, model_server: ScriptedModelServer
) -> None:
    from playwright.async_api import expect

    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 900})),
        reply("I cannot refund that order.", chunk_chars=6, chunk_delay=0.02),
    )
    handle = await console.client.start(SUPPORT.name, "Refund order 7 in full.")
    async with console.tab("alice") as tab:
        page = tab.page
        await tab.go(f"/runs/{handle.id}")
        waiting = page.locator("details.step-tool", has_text="refund")
        form = waiting.locator("form.approval-actions")
        await expect(form).to_be_visible(timeout=20_000)  # a waiting call opens itself
        await expect(page.locator(".run-title .status")).to_have_text("waiting approval")
        # Denying needs a reason: the model and the audit trail are told why.
        await form.locator("button.deny").click()
        await expect(waiting.locator(".form-error")).to_contain_text("Say why")
        await form.locator("textarea").fill("over the refund limit for this customer")
        await form.locator("button.deny").click()
        await expect(waiting.locator(":scope > summary")).to_contain_text("denied by alice")
        await expect(page.locator(".run-title .status")).to_have_text("completed", timeout=20_000)
        await expect(page.locator(".approval-record")).to_contain_text("over the refund limit")
        await tab.assert_clean()
    records = [e.record async for e in handle.events(follow=False) if e.type == "approval_answered"]
    assert [(r.approved, r.approver, r.reason) for r in records] == [
        (
            False,
            "alice",
            "over the refund limit for this customer",
        )
    ]


async def test_the_run_model_keeps_only_the_live_attempts_tokens(console: Console) -> None:
    """The console's fold of run events (js/runmodel.js), in the browser: a retried
    attempt's pieces are dropped, a resumed stream's repeats ignored, and the recorded
    reply replaces the streamed text."""
    context = await console.browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{console.base}/")
        states = await page.evaluate(RUN_MODEL_SCRIPT)
    finally:
        await context.close()
    assert states == [
        "Hel",  # attempt 1 streams...
        "",  # ...and is superseded: its text is void
        "Hi",  # attempt 2 streams; a repeated piece (same offset) counts once
        "Hi",  # a late piece of attempt 1 changes nothing
        None,  # the call finished: nothing live, the recorded message stands
    ]


RUN_MODEL_SCRIPT = """async () => {
  const { RunModel } = await import("./js/runmodel.js");
  const m = new RunModel("r");
  const at = "2026-01-01T00:00:00+00:00";
  const started = { type: "model_call_started", seq: 1, at, call_id: "turn1-model", turn: 1,
    model: "m", messages: [], tools: [] };
  const token = (attempt, offset, text) => ({ type: "token", seq: 1, at, call_id: "turn1-model",
    turn: 1, attempt, offset, kind: "text", text });
  const live = () => (m.liveSteps()[0]?.live.text ?? null);
  const out = [];
  m.apply(started);
  m.apply(token(1, 0, "He")); m.apply(token(1, 1, "l"));
  out.push(live());
  m.apply({ type: "tokens_superseded", seq: 1, at, call_id: "turn1-model", turn: 1, attempt: 1,
    by_attempt: 2 });
  out.push(m.steps.get("turn1-model").live?.text ?? "");
  m.apply(token(2, 0, "H")); m.apply(token(2, 1, "i")); m.apply(token(2, 1, "i"));
  out.push(live());
  m.apply(token(1, 2, "lo"));
  out.push(live());
  const reply = { role: "assistant", content: "Hi!" };
  m.apply({ type: "message", seq: 2, at, index: 2, message: reply });
  m.apply({ type: "model_call_finished", seq: 3, at, call_id: "turn1-model", turn: 1, model: "m",
    outcome: "completed", response: reply });
  out.push(live());
  return out;
}"""


async def test_a_tenant_scoped_login_sees_only_its_tenants_runs(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(reply("Hello, Acme."), reply("Hello, Globex."))
    ours = await console.client.start(SUPPORT.name, "Say hello", tenant="acme")
    await ours.result()
    theirs = await console.client.start(SUPPORT.name, "Say hello", tenant="globex")
    await theirs.result()
    async with console.tab("acme-ops") as tab:
        page = tab.page
        await expect(page.locator("#whoami")).to_contain_text("tenant acme")
        await tab.go(f"/runs?agent={SUPPORT.name}")
        await expect(page.locator(f"tr.run-row[data-run='{ours.id}']")).to_contain_text("acme")
        await expect(page.locator("tr.run-row")).not_to_have_count(0)
        tenants = set(await page.locator("tr.run-row td:nth-child(4)").all_text_contents())
        assert tenants == {"acme"}
        assert await page.locator(f"tr.run-row[data-run='{theirs.id}']").count() == 0
        await shots.take(page, "console-runs")
        # Another tenant's run does not exist, as far as this login can tell.
        await tab.go(f"/runs/{theirs.id}")
        await expect(page.locator("h1")).to_have_text("Run not found")
        # Signing out ends the session: the console asks for a key again.
        await page.click("#logout")
        await expect(page.locator("#api-key")).to_be_visible()
        await tab.go("/runs")
        await expect(page.locator("#api-key")).to_be_visible()
        # 404 on the other tenant's run is the page's one expected console error.
        assert [e for e in tab.errors if "404" not in e] == []


async def test_a_chat_run_answers_in_the_console_as_it_streams(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(
        reply("Hello! Which order is it about?", chunk_chars=4, chunk_delay=0.03),
        reply(ANSWER, chunk_chars=4, chunk_delay=0.05),
    )
    async with console.tab("olga") as tab:
        page = tab.page
        await tab.go("/new")
        await page.select_option("#start-agent", SUPPORT.name)
        await page.fill("#start-prompt", "Hi")
        await page.click("details.more > summary")
        await page.check("input[name=chat]")
        await page.click("form.start-form button[type=submit]")
        await expect(page.locator(".messages .msg.assistant").last).to_contain_text(
            "Which order is it about?", timeout=20_000
        )
        # Between messages the run waits for the next one, and says so.
        await expect(page.locator(".run-title .status")).to_have_text("waiting input")
        composer = page.locator("#chat-input")
        await composer.fill("Where is order 1042?")
        await composer.press("Control+Enter")
        # The reply streams in before it is recorded.
        live = page.locator("[data-testid=live-answer]")
        await expect(live).to_be_visible(timeout=20_000)
        partial, _ = await page.evaluate(SAMPLE_ANSWER)
        assert partial is not None and ANSWER.startswith(partial) and len(partial) < len(ANSWER)
        await expect(page.locator(".messages .msg.user").last).to_contain_text("order 1042")
        await expect(page.locator(".messages .msg.assistant").last).to_contain_text(ANSWER)
        await shots.take(page, "console-chat")
        await page.locator("form.composer button", has_text="End chat").click()
        await expect(page.locator(".final-answer .outcome")).to_contain_text("Run completed")
        await expect(page.locator("#chat-input")).to_have_count(0)
        await tab.assert_clean()


async def test_the_limits_board_is_live_and_an_admin_changes_a_limit(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(reply("ok"))
    await (await console.client.start("console-limited", "Say ok")).result()
    async with console.tab("victor") as viewer:
        await viewer.go("/limits")
        row = viewer.page.locator(f"tr[data-provider='{console.provider}']")
        await expect(row).to_contain_text("/ 50")
        assert await row.locator("button", has_text="Edit").count() == 0
        await viewer.assert_clean()
    async with console.tab("ada") as admin:
        page = admin.page
        await admin.go("/limits")
        row = page.locator(f"tr[data-provider='{console.provider}']")
        await expect(row.locator("td").nth(1)).to_contain_text("1 / 50")
        await row.locator("button", has_text="Edit").click()
        await page.fill(".limit-form input[name=rpm]", "7")
        await page.click(".limit-form button[type=submit]")
        await expect(row.locator("td").nth(1)).to_contain_text("1 / 7")
        await shots.take(page, "console-limits")
        await admin.assert_clean()
    assert (await console.client.limits_of(console.provider)).limit.rpm == 7


# --- packaging ----------------------------------------------------------------------------


def _package_data_patterns() -> Iterator[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    yield from config["tool"]["setuptools"]["package-data"]["ratchet"]


async def test_an_operator_forks_a_run_at_a_step_with_an_edited_message(
    console: Console, model_server: ScriptedModelServer, shots: Shots
) -> None:
    from playwright.async_api import expect

    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply("It shipped with ACME Post."),
        reply("Order 7 is not ours."),
    )
    handle = await console.client.start(SUPPORT.name, "Where is order 1042?")
    await handle.result()
    async with console.tab("olga") as tab:
        page = tab.page
        await tab.go(f"/runs/{handle.id}")
        await expect(page.locator(".run-title .status")).to_have_text("completed")
        timeline = page.locator(".pane-timeline")
        # The tool's result ends its turn: the model could be called right after it.
        tool_step = timeline.locator("details.step-tool", has_text="lookup_order")
        await open_step(tool_step)
        await expect(tool_step.locator(".fork-button")).to_have_count(1)
        first = timeline.locator("details.step-model").first
        await open_step(first)
        await first.locator(".fork-button").click()
        await first.locator("textarea[name=edit_message]").fill("Where is order 7?")
        await shots.take(page, "console-fork")
        await first.locator(".fork-form button[type=submit]").click()
        # The console goes to the new run, which names its parent and step.
        await page.wait_for_url(re.compile(r"#/runs/(?!" + re.escape(handle.id) + r"\b)"))
        origin = page.locator(".run-facts .forked-from")
        await expect(origin).to_contain_text(f"{handle.id} at turn1 · message edited")
        await expect(page.locator(".run-title .status")).to_have_text("completed")
        await expect(page.locator(".messages")).to_contain_text("Order 7 is not ours.")
        await origin.locator("a").click()
        await expect(page.locator(".run-title h1")).to_have_text(handle.id)
        await tab.assert_clean()
    model_server.verify()
    sent = model_server.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "Where is order 7?"}
    assert sent[:-1] == model_server.requests[-3].body["messages"][:-1]


def test_every_console_file_ships_in_the_package() -> None:
    """The console runs from the installed package alone: pyproject's package data
    must name each of its files (a new file type would otherwise be left out)."""
    package_root = ROOT / "src" / "ratchet"
    # setuptools globs like pathlib: "**/" matches any number of directories, none included.
    shipped = {p for pattern in _package_data_patterns() for p in package_root.glob(pattern)}
    files = {p for p in CONSOLE_DIR.rglob("*") if p.is_file()}
    assert files, "no console files found"
    left_out = sorted(str(p.relative_to(package_root)) for p in files - shipped)
    assert not left_out, f"console files missing from [tool.setuptools.package-data]: {left_out}"


def test_the_console_loads_nothing_from_another_site() -> None:
    """It works offline: no CDN, no remote font, no remote script."""
    remote = re.compile(
        r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//"""  # <script src=//cdn...>, <link href=...>
        r"""|@import\s+url\(\s*["']?(?:https?:)?//"""  # CSS from elsewhere
        r"""|import\s+[^;]*from\s+["'](?:https?:)?//"""  # an ES module from elsewhere
    )
    for path in CONSOLE_DIR.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".css", ".js"}:
            text = path.read_text()
            assert not remote.search(text), f"{path.name} loads something from another site"
            assert not re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML", text), (
                f"{path.name} parses HTML from strings: build nodes with dom.js"
            )
