"""The ``ratchet`` command: a thin shell over :class:`ratchet.AgentClient`,
:func:`ratchet.worker.run_worker` and ``ratchet.local``.

One module per command group; the commands are registered here, in the order
``ratchet --help`` lists them.
"""

from __future__ import annotations

import os
import sys

import typer

from ._a2a import a2a_app
from ._approvals import approve, deny, pending
from ._chat import chat, send
from ._eval import eval_runs
from ._follow import follow_run
from ._fork import fork
from ._keys import keys_app
from ._limits import limits_app
from ._mcp import mcp_app
from ._runs import cancel, list_runs, run, show, trace
from ._serve import serve
from ._services import codec_server, down, up
from ._tool_run import tool_app
from ._tools import tools
from ._worker import worker

__all__ = ["app", "follow_run", "main"]

app = typer.Typer(
    help="Durable AI agents on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (up, down, worker, run, trace, fork, chat, send, pending, approve, deny, cancel):
    app.command()(command)
app.command("ls")(list_runs)
app.command()(show)
app.command()(tools)
app.add_typer(tool_app, name="tool")
app.command("eval")(eval_runs)
app.add_typer(limits_app, name="limits")
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(mcp_app, name="mcp")
app.add_typer(a2a_app, name="a2a")
app.command("codec-server")(codec_server)


def main() -> None:
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there in short-lived processes.
    os._exit(code)
