"""The HTTP API fuzzed from its own OpenAPI document with schemathesis, over real HTTP:
no request may get a 5xx, and every response must match the schema (status, content
type, headers, body), for positive and negative (invalid) inputs alike.

The API runs against the real dev server, with no worker: the fuzzer must not start
model calls, and without a worker nothing it starts ever runs. Streaming endpoints
(events, AG-UI) are fuzzed too: with generated ids and agents they answer problems.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient
from ratchet.http import AuthSettings, KeyStore, create_app

from .http_kit import agents, bearer, serve


@pytest.fixture(scope="module")
def fuzzed(
    ratchet_dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The served API's URL and an admin key."""
    store = KeyStore(Path(tmp_path_factory.mktemp("fuzz")) / "keys.sqlite")
    key = store.create("fuzzer", "admin")[1]
    client = AgentClient(ratchet_dev_server.client, task_queue=f"fuzz-{uuid.uuid4().hex[:8]}")
    # Generous on failed logins: the fuzzer sends many, and must reach the login code.
    auth = AuthSettings(keys=store, login_attempts=100_000)
    with serve(create_app(client, agents=agents(), auth=auth)) as served:
        yield served.url, key
    store.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(fuzzed: tuple[str, str], mode: GenerationMode) -> None:
    url, key = fuzzed
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    failures: dict[str, str] = {}
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        )
        def check(case: Case) -> None:
            # Schema-valid inputs the API must still refuse: a page token the server did
            # not make (any string fits the schema), and AG-UI messages without a role
            # (ag-ui-protocol's RunAgentInput schema leaves `role` optional, as it has a
            # default, but its discriminated union needs it).
            forged = bool(case.query and "page_token" in case.query)
            agui = case.operation.path.startswith("/v1/agui/")
            case.call_and_validate(
                base_url=url,
                headers=bearer(key),
                timeout=30,
                excluded_checks=[positive_data_acceptance] if forged or agui else None,
            )

        try:
            check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong: no parameters
        except Exception as e:  # collected: one report for every operation that failed
            failures[label] = f"{type(e).__name__}: {e}"[:2000]
        tried += 1
    document = httpx.get(f"{url}/v1/openapi.json").json()
    assert tried == sum(len(methods) for methods in document["paths"].values())
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
