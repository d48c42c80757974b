// Pieces several views share.

import { h } from "../dom.js";

// ratchet's run states (ratchet.RUN_STATES), and Temporal's for runs it closed itself.
export const RUN_STATUSES = [
  "starting",
  "queued",
  "running",
  "waiting-approval",
  "waiting-input",
  "completed",
  "failed",
  "cancelled",
  "terminated",
  "timed_out",
];
const TERMINAL = new Set(["completed", "failed", "cancelled", "terminated", "timed_out"]);

export function isTerminal(status) {
  return TERMINAL.has(String(status || ""));
}

export function statusPill(status) {
  const s = String(status || "unknown").toLowerCase();
  return h(
    `span.pill.status.status-${s.replace(/-/g, "_").replace(/[^a-z_]/g, "")}`,
    s.replace(/[_-]/g, " "),
  );
}

/** A field with its label: h("label") around text and control. */
export function field(label, control, hint) {
  return h("label.field", h("span.label", label), control, hint ? h("span.hint", hint) : null);
}

export function select(name, options, value, attrs = {}) {
  return h(
    "select",
    { name, ...attrs },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

export function loading(text = "Loading…") {
  return h("p.loading", { role: "status" }, text);
}

export function problem(err) {
  return h(
    "div.problem",
    { role: "alert" },
    h("strong", err.title || "Error"),
    " ",
    err.message,
    err.errorType ? h("span.muted", ` (${err.errorType})`) : null,
  );
}

export function emptyState(title, text) {
  return h("div.empty", h("strong", title), text ? h("p", text) : null);
}

/** Move a selection among `rows` with j/k; returns the new index. */
export function moveSelection(rows, index, delta) {
  if (!rows.length) return -1;
  const next = Math.max(0, Math.min(rows.length - 1, index + delta));
  rows.forEach((row, i) => row.classList.toggle("selected", i === next));
  rows[next].scrollIntoView({ block: "nearest" });
  const focusable = rows[next].querySelector("a, button");
  if (focusable) focusable.focus({ preventScroll: true });
  return next;
}
