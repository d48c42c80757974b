"""ratchet agents as A2A agents (the Agent2Agent protocol, on PyPI ``a2a-sdk``).

Each agent gets an A2A endpoint, ``/a2a/NAME``, with its public agent card at
``/a2a/NAME/.well-known/agent-card.json``. ``ratchet serve`` serves them beside the
HTTP API; ``ratchet a2a serve`` serves them alone; :func:`create_a2a_app` and
:func:`a2a_routes` put them in your own ASGI application. Every call but the card
needs a bearer credential (an API key from ``ratchet keys create``, or an OIDC
token), and a tenant's key sees and starts only its tenant's tasks.

A task is a run (its id is the run id). Sending a message starts a run, or answers
a waiting approval, or continues a chat; the stream carries the run's work as status
updates and its answer as an artifact; ``input-required`` means a call waits for
approval (or a chat for its next message). See the modules: ``_states`` (run states
as task states), ``_ids`` (task ids), ``_incoming`` (what a message can ask),
``_view`` (a run read as a task, and what its stream carries), ``_reading`` (runs
read past and live), ``_handler`` (the requests), ``_card`` (agent cards),
``_caller`` (authentication and roles), ``_errors`` (ratchet's errors as A2A's),
``_routes`` and ``_app`` (where it is served).
"""

from ._app import create_a2a_app
from ._card import SECURITY_SCHEME, agent_card
from ._handler import RunTaskHandler
from ._ids import new_task_id
from ._incoming import APPROVE_KEY, END_CHAT_KEY
from ._routes import A2A_PREFIX, CARD_PATH, a2a_routes, endpoint_url
from ._states import TASK_STATE_OF

__all__ = [
    "A2A_PREFIX",
    "APPROVE_KEY",
    "CARD_PATH",
    "END_CHAT_KEY",
    "SECURITY_SCHEME",
    "TASK_STATE_OF",
    "RunTaskHandler",
    "a2a_routes",
    "agent_card",
    "create_a2a_app",
    "endpoint_url",
    "new_task_id",
]
