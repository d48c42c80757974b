// A run's events as they happen: EventSource on /v1/runs/{id}/events. The browser
// resumes a dropped stream by itself with Last-Event-ID; the server ends the stream
// after run_finished, and we close it then so the browser does not reconnect.

import { apiUrl, enc } from "./api.js";
import { HISTORY_TYPES, LIVE_TYPES } from "./runmodel.js";

export class RunStream {
  /**
   * @param {string} runId
   * @param {{onEvent: (e: object) => void, onState: (state: string, detail?: string) => void}} handlers
   */
  constructor(runId, { onEvent, onState }) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.closed = false;
  }

  open() {
    const source = new EventSource(apiUrl(`v1/runs/${enc(this.runId)}/events`), { withCredentials: true });
    this.source = source;
    const handle = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (_) {
        return; // not a run event: nothing to show
      }
      this.onEvent(event);
      if (event.type === "run_finished") this.close("finished");
    };
    for (const type of [...HISTORY_TYPES, ...LIVE_TYPES]) source.addEventListener(type, handle);
    source.addEventListener("message", handle);
    source.addEventListener("open", () => this.onState("live"));
    source.addEventListener("error", (event) => {
      if (this.closed) return;
      // The server's own `event: error` frame: the stream broke for a reason it says
      // (a problem: status, error_type, detail). Reconnecting would only repeat it.
      if (event instanceof MessageEvent && event.data) {
        let detail = event.data;
        try {
          const problem = JSON.parse(event.data);
          detail = `${problem.detail || ""}${problem.error_type ? ` (${problem.error_type})` : ""}`;
        } catch (_) {
          // keep the raw text
        }
        this.close("failed", detail);
        return;
      }
      // CONNECTING: the browser is resuming by itself. CLOSED: the server refused the
      // stream (not found, signed out): it will not come back.
      if (source.readyState === EventSource.CLOSED) this.close("failed");
      else this.onState("reconnecting");
    });
    return this;
  }

  close(state = "closed", detail = "") {
    if (this.closed) return;
    this.closed = true;
    if (this.source) this.source.close();
    this.onState(state, detail);
  }
}
