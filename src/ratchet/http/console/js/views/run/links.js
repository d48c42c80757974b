// Links from a step to its event in the Temporal Web UI.

import { h } from "../../dom.js";

/**
 * The Temporal Web UI page of the history event a run event was read from.
 * `run.temporal_ui_url` points at the run's latest execution; `run.executions` (when
 * the server lists them) maps older executions of a continued-as-new run to theirs.
 */
export function temporalEventUrl(run, event) {
  if (!run || !run.temporal_ui_url || !event) return null;
  const execution = event.execution || 1;
  let base = run.temporal_ui_url.replace(/\/+$/, "").replace(/\/history$/, "");
  const known = Array.isArray(run.executions) ? run.executions.find((e) => e.execution === execution) : null;
  if (known && known.temporal_ui_url) base = known.temporal_ui_url.replace(/\/+$/, "").replace(/\/history$/, "");
  else if (execution !== latestExecution(run)) return `${base}/history`;
  return event.history_event_id ? `${base}/history/events/${event.history_event_id}` : `${base}/history`;
}

function latestExecution(run) {
  return run.latestExecution || 1;
}

export function temporalLink(run, event, label = "Temporal") {
  const url = temporalEventUrl(run, event);
  if (!url) return null;
  const where = event.history_event_id ? `event ${event.history_event_id} of execution ${event.execution || 1}` : "history";
  return h("a.temporal-link", { href: url, target: "_blank", rel: "noopener noreferrer", title: `Open ${where} in the Temporal Web UI` }, label, " ↗");
}
