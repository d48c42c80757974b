"""The README's A2A example: a ratchet agent called by an A2A client (the ``a2a-sdk``'s).

Serve the agent (``ratchet serve --app examples.support:agent``, or ``ratchet a2a
serve``), then::

    python -m examples.a2a_client http://127.0.0.1:8000/a2a/support rk_... "Refund order 1042"

It streams the agent's work, answers the calls that wait for approval (asking you),
and prints the answer.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from a2a.client import (
    A2ACardResolver,
    AuthInterceptor,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.helpers import get_artifact_text, get_data_parts, get_message_text
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict


class ApiKey(CredentialService):
    """The credential for the card's security scheme: a ratchet API key."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def get_credentials(self, scheme: str, context: ClientCallContext | None) -> str:
        return self.key


def said(*parts: Part, task_id: str = "") -> SendMessageRequest:
    message = Message(
        message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=parts, task_id=task_id
    )
    return SendMessageRequest(message=message)


async def ask(
    agent_url: str,
    api_key: str,
    text: str,
    *,
    approve: Callable[[dict[str, Any]], bool],
    show: Callable[[str], None] = print,
) -> str:
    """Ask the agent at ``agent_url``; ``approve`` decides each call waiting for approval."""
    async with httpx.AsyncClient(timeout=600) as http:
        card = await A2ACardResolver(http, agent_url).get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http)).create(
            card, interceptors=[AuthInterceptor(ApiKey(api_key))]
        )
        request = said(Part(text=text))
        answer = task_id = ""
        while True:
            waiting: dict[str, Any] | None = None
            async for response in client.send_message(request):
                if response.HasField("task"):
                    task_id = response.task.id
                elif response.HasField("artifact_update"):
                    answer = get_artifact_text(response.artifact_update.artifact)
                elif response.HasField("status_update"):
                    status = response.status_update.status
                    meta = status.message.metadata.fields
                    kind = meta["kind"].string_value if "kind" in meta else ""
                    if kind not in ("", "token"):  # the model's text streams as tokens
                        show(get_message_text(status.message))
                    data = get_data_parts(status.message.parts)
                    if status.state == TaskState.TASK_STATE_INPUT_REQUIRED and data:
                        waiting = data[0]["approval"]
            if waiting is None:
                await client.close()
                return answer
            decision = {"approve": approve(waiting), "call_id": waiting["call_id"]}
            request = said(Part(data=ParseDict(decision, struct_pb2.Value())), task_id=task_id)


def _ask_person(call: dict[str, Any]) -> bool:
    return input(f"approve {call['tool']}({call['arguments']})? [y/N] ").strip().lower() == "y"


if __name__ == "__main__":
    url, key, prompt = sys.argv[1:4]
    print(asyncio.run(ask(url, key, prompt, approve=_ask_person)))
