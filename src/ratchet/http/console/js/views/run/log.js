// The event log: every run event, filtered (model / tools / approvals / errors) and
// searched; a row selects its step in the timeline.

import { h, NodeCache, reconcile } from "../../dom.js";
import { duration, localTime, preview, tokens, usd, utcTime } from "../../format.js";
import { LOG_FILTERS, categories, searchText } from "../../runmodel.js";
import { temporalLink } from "./links.js";

export class LogPane {
  constructor(ctx, view, { filter = "all", query = "" } = {}) {
    this.view = view;
    this.filter = LOG_FILTERS.includes(filter) ? filter : "all";
    this.query = query;
    this.cache = new NodeCache();
    this.buttons = new Map();
    const searched = () => {
      if (this.query === this.search.value) return;
      this.query = this.search.value;
      view.setParams({ q: this.query });
      this.render();
    };
    // "search" too: Escape or the clear button empties a search field without "input".
    this.search = h("input.log-search", {
      type: "search",
      placeholder: "Search events  ( / )",
      value: query,
      "aria-label": "Search events",
      oninput: searched,
      onsearch: searched,
    });
    const bar = h(
      "div.log-filters",
      { role: "group", "aria-label": "Show events" },
      LOG_FILTERS.map((name) => {
        const button = h(
          "button.filter",
          {
            type: "button",
            "aria-pressed": String(name === this.filter),
            onclick: () => this.setFilter(name),
          },
          name,
          h("span.count"),
        );
        this.buttons.set(name, button);
        return button;
      }),
    );
    this.count = h("span.muted.small");
    this.list = h("ol.log-list");
    this.el = h("div.pane-body.log", h("div.log-controls", bar, this.search, this.count), this.list);
  }

  setFilter(name) {
    this.filter = name;
    this.view.setParams({ log: name === "all" ? "" : name });
    this.render();
  }

  render() {
    const events = this.view.model.events;
    const query = this.query.trim().toLowerCase();
    const counts = Object.fromEntries(LOG_FILTERS.map((f) => [f, 0]));
    const nodes = [];
    for (const event of events) {
      const cats = categories(event);
      for (const c of cats) counts[c] += 1;
      if (!cats.has(this.filter)) continue;
      if (query && !searchText(event).includes(query)) continue;
      nodes.push(this.cache.get(event.seq, this.view.runVersion || 0, () => this.row(event, cats)));
    }
    for (const [name, button] of this.buttons) {
      button.setAttribute("aria-pressed", String(name === this.filter));
      button.querySelector(".count").textContent = ` ${counts[name]}`;
    }
    this.count.textContent = `${nodes.length} of ${events.length} events`;
    if (!nodes.length) nodes.push(h("li.muted.pad", events.length ? "No event matches." : "No events yet."));
    reconcile(this.list, nodes);
  }

  row(event, cats) {
    const stepKey = this.view.model.stepOfSeq.get(event.seq);
    const error = cats.has("errors");
    return h(
      `li.log-row${error ? ".error" : ""}`,
      { dataset: { seq: event.seq, type: event.type } },
      h(
        "button.log-main",
        {
          type: "button",
          title: stepKey ? "Show in the timeline" : "",
          disabled: !stepKey,
          onclick: () => stepKey && this.view.select(stepKey, true),
        },
        h(
          "span.log-line",
          h(`span.log-type.type-${event.type}`, event.type.replaceAll("_", " ")),
          h("span.log-seq.mono", `#${event.seq}`),
          h(
            "time.log-time",
            { datetime: event.at, title: utcTime(event.at) },
            localTime(event.at, { ms: true, date: false, short: true }),
          ),
        ),
        h("span.log-summary", summary(event)),
      ),
      temporalLink(this.view.run, event, "T"),
    );
  }
}

/** One line that says what happened. */
export function summary(e) {
  switch (e.type) {
    case "run_started":
      return `${e.agent}: ${preview(e.prompt, 80)}${e.tenant ? ` (tenant ${e.tenant})` : ""}`;
    case "agent_snapshotted":
      return `${e.spec.name} on ${e.spec.model}, ${e.spec.tools.length} tools`;
    case "message":
      return `[${e.index}] ${e.message.role}: ${preview(e.message.content ?? (e.message.tool_calls || []).map((c) => c.name).join(", "), 80)}`;
    case "model_call_started":
      return `${e.call_id} → ${e.model}, ${e.messages.length} messages, ${e.tools.length} tools`;
    case "model_call_attempt_failed":
      return `${e.call_id} attempt ${e.attempt}: ${e.error_type || ""} ${preview(e.error, 80)}`;
    case "model_call_finished":
      return `${e.call_id} ${e.outcome} in ${duration(e.duration_seconds)}, ${tokens(e.usage?.input_tokens)}/${tokens(e.usage?.output_tokens)} tokens, ${usd(e.cost_usd)}${e.error ? ` — ${preview(e.error, 60)}` : ""}`;
    case "tool_call_rejected":
      return `${e.tool}: ${preview(e.reason, 80)}`;
    case "policy_decision":
      return `${e.tool}: ${e.decision} (${e.rule})${e.reason ? ` — ${e.reason}` : ""}`;
    case "approval_requested":
      return `${e.approval.tool} waits for approval until ${localTime(e.approval.deadline)}`;
    case "approval_answered":
      return `${e.record.tool} ${e.record.approved ? "approved" : "denied"} by ${e.record.approver}${e.record.reason ? `: ${preview(e.record.reason, 60)}` : ""}`;
    case "tool_call_started":
      return `${e.tool}(${preview(JSON.stringify(e.arguments), 70)})`;
    case "tool_call_finished":
      return `${e.tool} ${e.outcome}${e.is_error ? " (error)" : ""} in ${duration(e.duration_seconds)}: ${preview(e.result ?? e.error, 60)}`;
    case "budget_decision":
      return `${e.budget}: ${e.decision}${e.by ? ` by ${e.by}` : ""}`;
    case "prompt_compacted":
      return `turn ${e.turn}: ${e.dropped} dropped${e.summarized ? ", summarized" : ""}`;
    case "continued_as_new":
      return `→ execution ${e.next_execution}`;
    case "run_finished":
      return `${e.outcome}${e.error ? `: ${preview(e.error, 80)}` : ""}${e.output ? `: ${preview(e.output, 80)}` : ""}`;
    default:
      return "";
  }
}
