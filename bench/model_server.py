"""The scripted OpenAI-compatible model server, in its own process.

    python -m bench.model_server

It serves :class:`ratchet.testing.ScriptedModelServer` in handler mode (see
``bench.workload``) and takes commands from the benchmark driver as JSON lines
on stdin, answering one JSON line each on stdout:

- ``{"cmd": "delay", "seconds": 0.3}``: the latency added to every model call;
- ``{"cmd": "count"}``: chat-completion requests received so far;
- ``{"cmd": "wait", "n": N, "timeout": T}``: wait for the N-th request and return
  the ``time.monotonic()`` of its arrival (the clock is system-wide on Linux, so the
  driver can compare it with its own);
- ``{"cmd": "hang_next"}``: the next request is held without an answer (to kill a
  worker during a model call);
- ``{"cmd": "problems"}``: requests the script rejected (a wrong tool list...).

Its own process keeps the server's threads from competing with the driver or a
worker for a GIL; it is started once per benchmark invocation and shared by every
implementation.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    Step,
    call,
    hang,
    reply,
    tool_calls,
)
from ratchet.testing._http import ScriptedHTTPServer, ScriptedRequestHandler

from .workload import FINAL_ANSWER, TOOL_NAMES

# Up to 500 runs open their connections at once; socketserver's backlog of 128
# would overflow and cost SYN retransmits (1 s each) that no framework caused.
ScriptedHTTPServer.request_queue_size = 4096
# http.server writes the headers and the body in two sends; with Nagle's algorithm on,
# the body waits for the client's delayed ACK (40 ms on Linux) on every keep-alive
# request, which would add ~40 ms to each "0 ms" model call.
ScriptedRequestHandler.disable_nagle_algorithm = True


class Script:
    def __init__(self) -> None:
        self.delay = 0.0
        self.hang_next = False
        self.arrivals: list[float] = []
        self.cond = threading.Condition()

    def __call__(self, request: RecordedRequest) -> Step:
        with self.cond:
            self.arrivals.append(time.monotonic())
            self.cond.notify_all()
            if self.hang_next:
                self.hang_next = False
                return hang(120)
            delay = self.delay
        offered = set(request.tool_names)
        if offered != set(TOOL_NAMES):
            raise ValueError(f"the request offers tools {sorted(offered)}, not {TOOL_NAMES}")
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        if done == 0:
            return tool_calls(call("lookup_order", {"order_id": 1042}), delay=delay)
        if done == 1:
            return tool_calls(call("shipping_eta", {"order_id": 1042}), delay=delay)
        return reply(FINAL_ANSWER, delay=delay)


def _command(script: Script, server: ScriptedModelServer, cmd: dict[str, Any]) -> dict[str, Any]:
    kind = cmd.get("cmd")
    if kind == "delay":
        with script.cond:
            script.delay = float(cmd["seconds"])
        return {"ok": True}
    if kind == "count":
        with script.cond:
            return {"count": len(script.arrivals)}
    if kind == "hang_next":
        with script.cond:
            script.hang_next = True
        return {"ok": True}
    if kind == "wait":
        n, timeout = int(cmd["n"]), float(cmd.get("timeout", 60))
        with script.cond:
            if not script.cond.wait_for(lambda: len(script.arrivals) >= n, timeout):
                return {"timeout": True, "count": len(script.arrivals)}
            return {"at": script.arrivals[n - 1]}
    if kind == "problems":
        try:
            server.verify()
        except AssertionError as e:
            return {"problems": str(e)}
        return {"problems": ""}
    return {"error": f"unknown command {kind!r}"}


def main() -> None:
    script = Script()
    with ScriptedModelServer(handler=script) as server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            print(json.dumps(_command(script, server, json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
