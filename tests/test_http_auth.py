"""Who may do what over the HTTP API: every role against every endpoint, tenant
isolation, OIDC tokens checked against a JWKS served over HTTP, console sessions with
CSRF, the login rate limit, and CORS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.client import Client

from ratchet import AgentClient
from ratchet.http import ROLES, AuthSettings, KeyStore, OidcSettings, create_app
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

from .conftest import hosted
from .http_kit import Served, agents, bearer, keys_of_every_role, serve

AGUI_INPUT = {
    "threadId": "t-matrix",
    "runId": "r-matrix",
    "messages": [{"id": "m1", "role": "user", "content": "hi"}],
}

# (method, path, body, the weakest role allowed, the status an allowed caller gets)
ENDPOINTS: list[tuple[str, str, Any, str, int]] = [
    ("GET", "/v1/me", None, "viewer", 200),
    ("GET", "/v1/agents", None, "viewer", 200),
    ("GET", "/v1/agents/helper", None, "viewer", 200),
    ("POST", "/v1/runs", {"agent": "nobody", "prompt": "x"}, "operator", 404),
    ("GET", "/v1/runs", None, "viewer", 200),
    ("GET", "/v1/runs/no-such-run", None, "viewer", 404),
    ("GET", "/v1/runs/no-such-run/trace", None, "viewer", 404),
    ("GET", "/v1/runs/no-such-run/transcript", None, "viewer", 404),
    ("GET", "/v1/runs/no-such-run/events", None, "viewer", 404),
    ("POST", "/v1/runs/no-such-run/cancel", None, "operator", 404),
    ("POST", "/v1/runs/no-such-run/messages", {"text": "hi"}, "operator", 404),
    ("POST", "/v1/runs/no-such-run/end", None, "operator", 404),
    ("POST", "/v1/runs/no-such-run/fork", {"at": "turn1"}, "operator", 404),
    ("GET", "/v1/approvals", None, "viewer", 200),
    ("POST", "/v1/runs/no-such-run/approvals/c1/approve", {}, "approver", 404),
    ("POST", "/v1/runs/no-such-run/approvals/c1/deny", {"reason": "no"}, "approver", 404),
    ("GET", "/v1/limits", None, "viewer", 200),
    ("PUT", "/v1/limits/nobody", {"rpm": 1}, "admin", 404),
    ("POST", "/v1/keys", {"name": "made-by-matrix", "role": "viewer"}, "admin", 201),
    ("GET", "/v1/keys", None, "admin", 200),
    ("DELETE", "/v1/keys/nope", None, "admin", 404),
    ("POST", "/v1/agui/nobody", AGUI_INPUT, "operator", 404),
]


@dataclass
class Site:
    served: Served
    client: AgentClient
    store: KeyStore


@pytest.fixture
async def site(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> AsyncIterator[Site]:
    store = KeyStore(tmp_path / "keys.sqlite")
    async with hosted(temporal_client, agents(), model_server) as client:
        auth = AuthSettings(keys=store, login_window_seconds=3)
        with serve(create_app(client, agents=agents(), auth=auth)) as served:
            yield Site(served, client, store)
    store.close()


async def call_endpoint(http: httpx.AsyncClient, method: str, path: str, body: Any) -> int:
    response = await http.request(method, path, json=body)
    assert response.headers["content-type"].split(";")[0] in (
        "application/json",
        "application/problem+json",
    ), (path, response.headers["content-type"])
    return response.status_code


@pytest.mark.parametrize("role", [*ROLES, None])
async def test_every_role_against_every_endpoint(site: Site, role: str | None) -> None:
    keys = keys_of_every_role(site.store)
    async with site.served.client(keys[role] if role else None) as http:
        got = await asyncio.gather(*(call_endpoint(http, m, p, b) for m, p, b, _, _ in ENDPOINTS))
    expected = []
    for (method, path, _, needed, allowed_status), _status in zip(ENDPOINTS, got, strict=True):
        if role is None:
            status = 401
        elif ROLES.index(role) >= ROLES.index(needed):  # type: ignore[arg-type]
            status = allowed_status
        else:
            status = 403
        expected.append((method, path, status))
    assert [(m, p, s) for (m, p, *_), s in zip(ENDPOINTS, got, strict=True)] == expected


async def test_a_tenant_cannot_see_or_touch_another_tenants_runs(
    site: Site, model_server: ScriptedModelServer
) -> None:
    acme = keys_of_every_role(site.store, "acme")
    globex = keys_of_every_role(site.store, "globex")
    root = site.store.create("root", "admin")[1]
    model_server.add(
        tool_calls(call("refund", {"order_id": 1, "amount": 10})),
        tool_calls(call("refund", {"order_id": 2, "amount": 20})),
        reply("acme refunded"),
        reply("globex denied"),
    )
    served = site.served
    async with (
        served.client(acme["admin"]) as a,
        served.client(globex["admin"]) as g,
        served.client(root) as r,
    ):
        secret_prompt = "refund acme's order 1 (confidential)"
        run_a = (
            await a.post("/v1/runs", json={"agent": "guarded", "prompt": secret_prompt, "id": "A"})
        ).json()
        await wait_for(a, "A", "waiting-approval")
        run_b = (await g.post("/v1/runs", json={"agent": "guarded", "prompt": "refund 2"})).json()
        await wait_for(g, run_b["id"], "waiting-approval")
        [pending_a] = (await a.get("/v1/approvals")).json()
        [pending_b] = (await g.get("/v1/approvals")).json()
        assert (pending_a["run_id"], pending_b["run_id"]) == ("A", run_b["id"])

        # Globex, by id: every read and every action answers 404, worded as for no run.
        nothing = (await g.get("/v1/runs/ZZ")).json()["detail"]
        attempts = [
            g.get("/v1/runs/A"),
            g.get("/v1/runs/A/trace"),
            g.get("/v1/runs/A/transcript"),
            g.get("/v1/runs/A/events"),
            g.post("/v1/runs/A/cancel"),
            g.post("/v1/runs/A/messages", json={"text": "hi"}),
            g.post("/v1/runs/A/end"),
            g.post("/v1/runs/A/fork", json={"at": "turn1"}),
            g.post(f"/v1/runs/A/approvals/{pending_a['call_id']}/approve", json={}),
            g.post(f"/v1/runs/A/approvals/{pending_a['call_id']}/deny", json={"reason": "x"}),
        ]
        for response in await asyncio.gather(*attempts):
            assert response.status_code == 404, (response.request.url, response.text)
            assert response.json()["detail"] == nothing.replace("'ZZ'", "'A'")
        # Listing: the query itself is the tenant's.
        listed = {x["id"] for x in (await g.get("/v1/runs")).json()["runs"]}
        assert run_b["id"] in listed and "A" not in listed
        assert (await g.get("/v1/runs", params={"tenant": "acme"})).json()["runs"] == []
        # Starting with A's id neither attaches to it nor tells its prompt.
        taken = await g.post("/v1/runs", json={"agent": "guarded", "prompt": "x", "id": "A"})
        assert taken.status_code == 409 and "confidential" not in taken.text
        # A tenant's admin manages its own tenant's keys only.
        foreign = await g.post("/v1/keys", json={"name": "x", "role": "admin", "tenant": "acme"})
        assert foreign.status_code == 403
        own = (await g.post("/v1/keys", json={"name": "y", "role": "viewer"})).json()
        assert own["tenant"] == "globex"
        assert {k["tenant"] for k in (await g.get("/v1/keys")).json()} == {"globex"}
        acme_key_id = next(k["id"] for k in (await a.get("/v1/keys")).json())
        assert (await g.delete(f"/v1/keys/{acme_key_id}")).status_code == 404

        # Its own tenant and an unbound admin see the run.
        detail = (await a.get("/v1/runs/A")).json()
        assert (detail["tenant"], detail["prompt"]) == ("acme", secret_prompt)
        everyone = {x["id"]: x["tenant"] for x in (await r.get("/v1/runs")).json()["runs"]}
        assert everyone["A"] == "acme" and everyone[run_b["id"]] == "globex"
        assert {p["run_id"] for p in (await r.get("/v1/approvals")).json()} >= {"A", run_b["id"]}

        ok = await a.post(f"/v1/runs/A/approvals/{pending_a['call_id']}/approve", json={})
        assert ok.status_code == 200 and ok.json()["approver"] == "admin@acme"
        await wait_for(a, "A", "completed")
        b_path = f"/v1/runs/{run_b['id']}/approvals/{pending_b['call_id']}/deny"
        assert (await g.post(b_path, json={"reason": "no"})).status_code == 200
        await wait_for(g, run_b["id"], "completed")
    assert run_a["id"] == "A"


async def wait_for(http: httpx.AsyncClient, run_id: str, status: str) -> None:
    for _ in range(300):
        if (await http.get(f"/v1/runs/{run_id}")).json().get("status") == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {status}")


async def test_console_sessions_need_the_csrf_token_for_changes(site: Site) -> None:
    admin = site.store.create("alice", "admin")
    async with site.served.client() as browser:
        login = await browser.post("/v1/session", json={"api_key": admin[1]})
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"]
        assert "ratchet_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        session = login.json()
        assert (session["principal"], session["role"], session["via"]) == (
            "alice",
            "admin",
            "session",
        )
        me = (await browser.get("/v1/me")).json()
        assert me["csrf_token"] == session["csrf_token"]  # a reloaded console gets it back

        body = {"name": "from-console", "role": "viewer"}
        without = await browser.post("/v1/keys", json=body)
        wrong = await browser.post("/v1/keys", json=body, headers={"X-CSRF-Token": "guess"})
        right = await browser.post(
            "/v1/keys", json=body, headers={"X-CSRF-Token": session["csrf_token"]}
        )
        assert (without.status_code, wrong.status_code, right.status_code) == (403, 403, 201)
        assert without.json()["error_type"] == "CsrfRejected"
        assert (await browser.get("/v1/keys")).status_code == 200  # reads need no token

        # Revoking the key ends its sessions at once.
        site.store.revoke(admin[0].id)
        assert (await browser.get("/v1/me")).status_code == 401

        other = site.store.create("bob", "viewer")[1]
        assert (await browser.post("/v1/session", json={"api_key": other})).status_code == 200
        assert (await browser.delete("/v1/session")).status_code == 204
        assert (await browser.get("/v1/me")).status_code == 401


async def test_failed_logins_are_rate_limited_per_address(site: Site) -> None:
    good = site.store.create("carol", "viewer")[1]
    async with site.served.client() as http:
        failures = [
            (await http.post("/v1/session", json={"api_key": f"rk_wrong{i}"})).status_code
            for i in range(5)
        ]
        blocked = await http.post("/v1/session", json={"api_key": good})
        # Bearer requests are not logins: a right key still works meanwhile.
        assert (await http.get("/v1/me", headers=bearer(good))).status_code == 200
        await asyncio.sleep(float(blocked.headers["retry-after"]) + 0.2)
        after = await http.post("/v1/session", json={"api_key": good})
    assert failures == [401] * 5
    assert blocked.status_code == 429 and blocked.json()["error_type"] == "TooManyRequests"
    assert 1 <= int(blocked.headers["retry-after"]) <= 3
    assert after.status_code == 200


async def test_cookies_are_secure_when_asked_and_cors_is_off_unless_listed(
    site: Site, tmp_path: Path
) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with site.served.client() as http:
        refused = await http.options("/v1/runs", headers=preflight)
    assert "access-control-allow-origin" not in refused.headers

    store = KeyStore(tmp_path / "other.sqlite")
    key = store.create("dave", "viewer")[1]
    app = create_app(
        site.client,
        agents=agents(),
        auth=AuthSettings(keys=store, secure_cookies=True),
        cors_origins=["https://app.example"],
    )
    with serve(app) as served:
        async with served.client() as http:
            allowed = await http.options(
                "/v1/runs", headers={**preflight, "Origin": "https://app.example"}
            )
            other = await http.options("/v1/runs", headers=preflight)
            login = await http.post("/v1/session", json={"api_key": key})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    assert "Secure" in login.headers["set-cookie"]
    store.close()


class Jwks:
    """An identity provider's signing key, its JWKS served over HTTP on 127.0.0.1."""

    issuer = "https://idp.test"
    audience = "ratchet-api"

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.document = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}).encode()
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(jwks.document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hmac_forgery(self, secret: bytes, **claims: Any) -> str:
        """A token "signed" with HS256 using ``secret`` (pyjwt refuses to make one)."""

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
        body = {"iss": self.issuer, "aud": self.audience, "sub": "x", "exp": now + 300, **claims}
        signing_input = f"{part(header)}.{part(body)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def token(self, key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "erin@example.com",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        signing = self.key if key is None else key
        return jwt.encode(body, signing, algorithm=algorithm, headers={"kid": "k1"})


@pytest.fixture
def idp() -> Iterator[Jwks]:
    jwks = Jwks()
    yield jwks
    jwks.server.shutdown()


async def test_oidc_tokens_are_verified_against_the_jwks(site: Site, idp: Jwks) -> None:
    oidc = OidcSettings(jwks_url=idp.url, issuer=idp.issuer, audience=idp.audience)
    app = create_app(site.client, agents=agents(), auth=AuthSettings(oidc=oidc))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with serve(app) as served:
        async with served.client() as http:

            async def me(token: str) -> httpx.Response:
                return await http.get("/v1/me", headers=bearer(token))

            good = await me(idp.token(ratchet_role="approver", ratchet_tenant="acme"))
            strongest = await me(idp.token(ratchet_role=["viewer", "admin", "staff"]))
            refused = {
                "wrong audience": await me(idp.token(ratchet_role="admin", aud="other")),
                "wrong issuer": await me(idp.token(ratchet_role="admin", iss="https://x")),
                "expired": await me(idp.token(ratchet_role="admin", exp=int(time.time()) - 120)),
                "another key": await me(idp.token(key=stranger, ratchet_role="admin")),
                # The public key used as an HMAC secret: the classic algorithm confusion.
                "HS256 with the public key": await me(
                    idp.hmac_forgery(public_pem, ratchet_role="admin")
                ),
                "an API key's shape": await me("rk_notakey"),
            }
            no_role = await me(idp.token())
            session = await http.post(
                "/v1/session", json={"api_key": idp.token(ratchet_role="viewer")}
            )
    assert good.status_code == 200, good.text
    assert good.json() == {
        "principal": "erin@example.com",
        "role": "approver",
        "tenant": "acme",
        "via": "oidc",
        "csrf_token": None,
        "expires": None,
    }
    assert strongest.json()["role"] == "admin"
    assert {why: r.status_code for why, r in refused.items()} == {why: 401 for why in refused}
    assert no_role.status_code == 403 and "ratchet_role" in no_role.json()["detail"]
    assert session.status_code == 200 and session.json()["via"] == "session"
    assert idp.fetches >= 1
