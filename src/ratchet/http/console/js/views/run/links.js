// Links from a step to its event in the Temporal Web UI.
//
// The Web UI addresses an event as /namespaces/NS/workflows/WID/RUN_ID/history/events/N,
// and each execution of a continued-as-new run has its own RUN_ID. The API's
// `temporal_ui_url` names the workflow (/namespaces/NS/workflows/WID, which the Web UI
// redirects to the latest execution); with `executions` ([{execution, run_id}]) the
// link goes to the very event, otherwise to the run's page.

import { h } from "../../dom.js";

export function temporalRunUrl(run) {
  if (!run || !run.temporal_ui_url) return null;
  return run.temporal_ui_url.replace(/\/+$/, "");
}

export function temporalEventUrl(run, event) {
  const base = temporalRunUrl(run);
  if (!base || !event) return null;
  const execution = event.execution || 1;
  const known = Array.isArray(run.executions) ? run.executions.find((e) => e.execution === execution) : null;
  const runId = known ? known.run_id : null;
  if (!runId) return base;
  return event.history_event_id
    ? `${base}/${encodeURIComponent(runId)}/history/events/${event.history_event_id}`
    : `${base}/${encodeURIComponent(runId)}/history`;
}

export function temporalLink(run, event, label = "Temporal") {
  const url = temporalEventUrl(run, event);
  if (!url) return null;
  const where = event.history_event_id
    ? `event ${event.history_event_id} of execution ${event.execution || 1}`
    : `execution ${event.execution || 1}`;
  return h(
    "a.temporal-link",
    { href: url, target: "_blank", rel: "noopener noreferrer", title: `In the Temporal Web UI: ${where}` },
    label,
    " ↗",
  );
}
