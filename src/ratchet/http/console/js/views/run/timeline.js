// The timeline pane: each turn's model calls (the exact prompt sent, tools offered,
// parameters, reply, tokens, cost, duration, attempts and errors), tool calls
// (arguments, policy, approval, result, duration), budget decisions, compactions and
// continue-as-new boundaries.

import { h, NodeCache, reconcile } from "../../dom.js";
import { duration, plural, prettyJson, preview, timeEl, tokens, usd } from "../../format.js";
import { approvalForm } from "../approve.js";
import { statusPill } from "../common.js";
import { forkableResult, forkControl } from "./fork.js";
import { temporalLink } from "./links.js";

export class TimelinePane {
  constructor(ctx, view) {
    this.ctx = ctx;
    this.view = view; // {model, run, select(key), isOpen(key), setOpen(key, open)}
    this.cache = new NodeCache();
    this.turnHeads = new NodeCache();
    this.list = h("div.timeline-list");
    this.el = h("div.pane-body.timeline", this.list);
  }

  render() {
    const model = this.view.model;
    const nodes = [];
    if (!model.order.length) {
      nodes.push(h("p.muted.pad", model.started ? "No steps yet." : "Reading the run…"));
    }
    for (const [turn, steps] of model.turns()) {
      const version = steps.map((s) => `${s.key}@${s.version}`).join(",") + (model.finished ? ":end" : "");
      nodes.push(this.turnHeads.get(`turn${turn}`, version, () => turnHead(model, turn, steps)));
      for (const step of steps) {
        // The run's Temporal link is part of what a card shows: re-render when it arrives.
        const version = `${step.version}:${this.view.runVersion || 0}:${model.finished ? 1 : 0}`;
        nodes.push(this.cache.get(step.key, version, () => this.card(step)));
      }
    }
    reconcile(this.list, nodes);
    this.highlight();
  }

  /** Mark the selected step; open it and bring it into view when asked. */
  highlight(scroll = false) {
    const key = this.view.selected;
    for (const card of this.list.querySelectorAll(".step.selected")) card.classList.remove("selected");
    if (!key) return;
    const card = this.list.querySelector(`[data-step="${CSS.escape(key)}"]`);
    if (!card) return;
    card.classList.add("selected");
    if (scroll) {
      if (card.tagName === "DETAILS") card.open = true;
      card.scrollIntoView({ block: "nearest" });
      const summary = card.querySelector("summary");
      if (summary) summary.focus({ preventScroll: true });
    }
  }

  card(step) {
    switch (step.kind) {
      case "model":
        return this.modelCard(step);
      case "tool":
        return this.toolCard(step);
      case "budget":
        return this.budgetCard(step);
      case "boundary":
        return boundary(this.view.run, step.event);
      case "compaction":
        return note(
          step,
          "compaction",
          `Prompt compacted: ${plural(step.event.dropped, "older message")} ${step.event.summarized ? "summarized" : "dropped"}`,
          step.event,
        );
      case "budget_decision":
        return budgetDecision(step);
      default:
        return h("div");
    }
  }

  details(step, open, summary, body) {
    const el = h(
      `details.step.step-${step.kind}`,
      { dataset: { step: step.key }, open: this.view.isOpen(step.key) || open },
      h("summary", { onclick: () => this.view.select(step.key, false) }, summary),
      h("div.step-body", body),
    );
    el.addEventListener("toggle", () => this.view.setOpen(step.key, el.open));
    return el;
  }

  modelCard(step) {
    const s = step.started;
    const f = step.finished;
    const usage = f?.usage || {};
    const state = f ? f.outcome : "running";
    const summary = [
      h("span.icon.icon-model", { "aria-hidden": "true" }, "◆"),
      h("span.step-name", `model call · ${step.model || "?"}`),
      h(
        "span.step-meta",
        f ? duration(f.duration_seconds) : h("span.live-dot", "running"),
        f ? ` · ${tokens(usage.input_tokens)} in / ${tokens(usage.output_tokens)} out` : "",
        f && f.cost_usd !== null && f.cost_usd !== undefined ? ` · ${usd(f.cost_usd)}` : "",
      ),
      (f?.attempts || 1) > 1 || step.failures.length
        ? h("span.pill.warn", plural(Math.max(f?.attempts || 1, step.failures.length + 1), "attempt"))
        : null,
      state !== "completed" && state !== "running" ? statusPill(state) : null,
    ];
    const body = [];
    body.push(
      h(
        "div.facts",
        fact("call", step.callId),
        fact("turn", step.turn),
        fact("model", step.model),
        s ? fact("scheduled", timeEl(s.at, { ms: true })) : null,
        f ? fact("finished", timeEl(f.at, { ms: true })) : null,
        f
          ? fact(
              "duration",
              `${duration(f.duration_seconds)}${f.last_attempt_seconds !== null && f.last_attempt_seconds !== undefined && f.attempts > 1 ? ` (last attempt ${duration(f.last_attempt_seconds)})` : ""}`,
            )
          : null,
        f
          ? fact(
              "tokens",
              `${tokens(usage.input_tokens)} in · ${tokens(usage.output_tokens)} out · ${usage.requests ?? 1} request(s)`,
            )
          : null,
        f
          ? fact("cost", f.cost_usd === null || f.cost_usd === undefined ? "not priced" : usd(f.cost_usd))
          : null,
        f?.finish_reason ? fact("finish", f.finish_reason) : null,
        step.streamed ? fact("streamed", `${step.streamed} pieces`) : null,
        temporalLink(this.view.run, s || f),
      ),
    );
    if (s && this.ctx.can("operator")) {
      const last = s.messages[s.messages.length - 1];
      body.push(forkControl(this.ctx, this.view.model.runId, step.callId, last?.role === "user" ? last : null));
    }
    if (s) {
      body.push(
        section(
          "Parameters",
          h(
            "div.facts",
            fact("tool mode", s.tool_mode || "default"),
            fact("temperature", s.temperature ?? "default"),
            fact("max tokens", s.max_tokens ?? "default"),
            s.transcript_ref ? fact("transcript", h("span.mono", s.transcript_ref)) : null,
          ),
        ),
      );
      body.push(
        section(
          `Prompt sent (${plural(s.messages.length, "message")})`,
          h(
            "div.prompt",
            s.messages.map((m, i) => promptMessage(m, i)),
          ),
          { open: true, cls: "prompt-section" },
        ),
      );
      body.push(
        section(
          `Tools offered (${s.tools.length})`,
          s.tools.length ? h("div.tools-offered", s.tools.map(toolSpec)) : h("p.muted", "none"),
        ),
      );
    }
    if (f?.request_body)
      body.push(
        section("Request body, as sent on the wire", h("pre.json.request-body", prettyJson(f.request_body))),
      );
    if (step.failures.length || f?.error) {
      body.push(
        section(
          "Attempts and errors",
          h(
            "ol.attempts",
            step.failures.map((a) =>
              h(
                "li.attempt-failed",
                h("strong", `attempt ${a.attempt}`),
                " failed at ",
                timeEl(a.at, { ms: true }),
                ": ",
                a.error_type ? h("span.error-type", a.error_type) : null,
                " ",
                h("span.error-text", a.error),
              ),
            ),
            f?.error
              ? h(
                  "li.attempt-failed",
                  h("strong", "gave up"),
                  ": ",
                  f.error_type ? h("span.error-type", f.error_type) : null,
                  " ",
                  h("span.error-text", f.error),
                )
              : null,
          ),
          { open: true },
        ),
      );
    }
    if (step.cutOff.length)
      body.push(
        h(
          "p.warn-text",
          `Streamed text of attempt ${step.cutOff.join(", ")} was cut off and replaced by a retry.`,
        ),
      );
    if (f?.warnings?.length)
      body.push(
        h(
          "ul.warnings",
          f.warnings.map((w) => h("li", w)),
        ),
      );
    if (f?.response) body.push(section("Reply", replyView(f.response), { open: true }));
    else if (step.live)
      body.push(section("Reply (streaming)", h("pre.text.live-text", step.live.text || "…"), { open: true }));
    return this.details(step, false, summary, body);
  }

  toolCard(step) {
    const f = step.finished;
    const pending = this.view.model.pending.get(step.approvalId);
    const state = step.rejected
      ? "rejected"
      : f
        ? f.is_error
          ? "error"
          : f.outcome
        : pending
          ? "waiting"
          : step.started
            ? "running"
            : "proposed";
    const args = step.arguments ?? step.rawArguments;
    const summary = [
      h("span.icon.icon-tool", { "aria-hidden": "true" }, "⚒"),
      h("span.step-name", step.tool),
      h("span.step-meta.mono", preview(typeof args === "string" ? args : JSON.stringify(args ?? {}), 60)),
      f ? h("span.step-meta", duration(f.duration_seconds)) : null,
      step.policy && step.policy.decision !== "allow"
        ? h(`span.pill.policy-${step.policy.decision}`, step.policy.decision.replace("_", " "))
        : null,
      step.approval
        ? h(
            `span.pill.${step.approval.approved ? "ok" : "bad"}`,
            step.approval.approved
              ? `approved by ${step.approval.approver}`
              : `denied by ${step.approval.approver}`,
          )
        : null,
      state !== "completed" ? statusPill(state) : null,
    ];
    const body = [];
    body.push(
      h(
        "div.facts",
        fact("call", step.callId),
        step.activityId ? fact("activity", step.activityId) : null,
        fact("turn", step.turn),
        step.started ? fact("started", timeEl(step.started.at, { ms: true })) : null,
        f ? fact("finished", timeEl(f.at, { ms: true })) : null,
        f
          ? fact(
              "duration",
              `${duration(f.duration_seconds)}${f.attempts > 1 ? ` over ${f.attempts} attempts (last ${duration(f.last_attempt_seconds)})` : ""}`,
            )
          : null,
        temporalLink(this.view.run, step.started || step.rejected || f),
      ),
    );
    const result = f && this.ctx.can("operator") ? forkableResult(this.view.model.messages, step.callId) : null;
    if (result !== null) body.push(forkControl(this.ctx, this.view.model.runId, `msg:${result}`, null));
    // A call waiting for a person: the decision comes first.
    if (pending) body.push(section("Approval", this.approvalBlock(step, pending), { open: true }));
    body.push(section("Arguments", h("pre.json.arguments", prettyJson(args ?? {})), { open: true }));
    if (step.policy) {
      body.push(
        section(
          "Policy",
          h(
            "p.policy",
            h(`span.pill.policy-${step.policy.decision}`, step.policy.decision.replace("_", " ")),
            " by rule ",
            h("code", step.policy.rule),
            step.policy.reason ? ` — ${step.policy.reason}` : "",
          ),
          { open: true },
        ),
      );
    }
    if (!pending && (step.request || step.approval))
      body.push(section("Approval", this.approvalBlock(step, pending), { open: true }));
    if (step.rejected)
      body.push(
        section("Rejected by the workflow", h("pre.text.error-text", step.rejected.reason), { open: true }),
      );
    if (f) {
      if (f.result !== null && f.result !== undefined)
        body.push(
          section(
            f.is_error ? "Result (an error, told to the model)" : "Result",
            h(`pre.json.result${f.is_error ? ".error-text" : ""}`, prettyJson(f.result)),
            { open: true },
          ),
        );
      if (f.error)
        body.push(
          section(
            "Error",
            h("p.error-text", f.error_type ? h("span.error-type", f.error_type) : null, " ", f.error),
            { open: true },
          ),
        );
      if (f.last_retry_error) body.push(section("Retried after", h("p.error-text", f.last_retry_error)));
    }
    return this.details(step, Boolean(pending), summary, body);
  }

  approvalBlock(step, pending) {
    const out = [];
    const request = step.request;
    if (request)
      out.push(
        h(
          "p",
          "Asked ",
          timeEl(request.requested_at),
          request.rule ? [" by rule ", h("code", request.rule)] : "",
          request.reason ? ` — ${request.reason}` : "",
        ),
      );
    if (step.approval) out.push(approvalRecord(step.approval));
    else if (pending && !this.view.model.finished) {
      out.push(approvalForm(this.ctx, this.view.model.runId, pending.approval, () => this.view.answered()));
    }
    return out;
  }

  budgetCard(step) {
    const pending = this.view.model.pending.get(step.callId);
    const args = step.request?.arguments || {};
    const summary = [
      h("span.icon.icon-approval", { "aria-hidden": "true" }, "◷"),
      h("span.step-name", `budget spent · ${args.budget ?? ""}`),
      h("span.step-meta", `${args.used ?? "?"} of ${args.limit ?? "?"} ${args.unit ?? ""}`),
      step.approval
        ? h(
            `span.pill.${step.approval.approved ? "ok" : "bad"}`,
            step.approval.approved
              ? `raised by ${step.approval.approver}`
              : `kept by ${step.approval.approver}`,
          )
        : pending
          ? statusPill("waiting")
          : null,
    ];
    return this.details(step, Boolean(pending), summary, this.approvalBlock(step, pending));
  }
}

function turnHead(model, turn, steps) {
  const open =
    !model.finished &&
    steps.some((s) => (s.kind === "model" || s.kind === "tool") && s.started && !s.finished && !s.rejected);
  if (open)
    return h(
      "h3.turn-head",
      { id: `turn-${turn}` },
      turn ? `Turn ${turn}` : "Run",
      h("span.muted", " · "),
      h("span.live-dot", "running"),
    );
  const spans = steps.map((s) => model.span(s)).filter(Boolean);
  const start = Math.min(...spans.map((s) => s[0]));
  const end = Math.max(...spans.map((s) => s[1]));
  const t = steps.reduce((acc, s) => {
    const u = s.finished?.usage;
    if (s.kind === "model" && u) acc += (u.input_tokens || 0) + (u.output_tokens || 0);
    return acc;
  }, 0);
  return h(
    "h3.turn-head",
    { id: `turn-${turn}` },
    turn ? `Turn ${turn}` : "Run",
    spans.length ? h("span.muted", ` · ${duration((end - start) / 1000)}`) : null,
    t ? h("span.muted", ` · ${tokens(t)} tokens`) : null,
  );
}

function boundary(run, event) {
  return h(
    "div.step.boundary",
    { dataset: { step: `continued:${event.seq}` }, role: "separator" },
    h("span", `Continued as new → execution ${event.next_execution}`),
    " ",
    timeEl(event.at),
    " ",
    temporalLink(run, event),
  );
}

function note(step, cls, text, event) {
  return h(`div.step.note.${cls}`, { dataset: { step: step.key } }, h("span", text), " ", timeEl(event.at));
}

function budgetDecision(step) {
  const e = step.event;
  const verb =
    { stopped: "stopped the run", raised: `raised to ${e.raise_to}`, denied: "kept (run stopped)" }[
      e.decision
    ] || e.decision;
  return h(
    "div.step.note.budget-decision",
    { dataset: { step: step.key } },
    h("span", `Budget ${e.budget}: ${e.used ?? "?"} of ${e.limit ?? "?"} used — ${verb}`),
    e.by ? h("span", ` by ${e.by}`) : null,
    " ",
    timeEl(e.at),
  );
}

export function approvalRecord(r) {
  return h(
    `p.approval-record.${r.approved ? "ok" : "bad"}`,
    h("strong", r.approved ? "Approved" : r.timed_out ? "Denied (deadline passed)" : "Denied"),
    " by ",
    h("span.approver", r.approver),
    " at ",
    timeEl(r.at),
    r.reason ? [" — ", h("q", r.reason)] : "",
    r.raise_to !== null && r.raise_to !== undefined ? ` (raised to ${r.raise_to})` : "",
  );
}

function fact(label, value) {
  if (value === null || value === undefined) return null;
  return h("span.fact", h("span.fact-label", label), " ", value instanceof Node ? value : String(value));
}

function section(title, body, { open = false, cls = "" } = {}) {
  return h(
    `details.section${cls ? "." + cls : ""}`,
    { open },
    h("summary", title),
    h("div.section-body", body),
  );
}

function promptMessage(m, index) {
  const label =
    m.role === "system"
      ? "system instructions"
      : m.role === "tool"
        ? `tool result · ${m.name || ""} (${m.tool_call_id || ""})`
        : m.role;
  return h(
    `div.prompt-msg.role-${m.role}`,
    { dataset: { index } },
    h(
      "div.prompt-role",
      `${index}. ${label}`,
      m.pinned ? h("span.pill", "pinned") : null,
      m.is_error ? h("span.pill.bad", "error") : null,
    ),
    m.content !== null && m.content !== undefined ? h("pre.text", m.content) : null,
    (m.tool_calls || []).map((c) =>
      h(
        "div.prompt-call",
        h("span.mono", `→ ${c.name}`),
        h("pre.json", prettyJson(c.arguments)),
        h("span.muted.small", c.id),
      ),
    ),
  );
}

function toolSpec(t) {
  return h(
    "details.tool-spec",
    h(
      "summary",
      h("span.mono", t.name),
      " ",
      h("span.muted", preview(t.description, 80)),
      t.side_effects ? h("span.pill.warn", "side effects") : null,
    ),
    h("p", t.description),
    h("pre.json", prettyJson(t.parameters)),
  );
}

function replyView(message) {
  return h(
    "div.reply",
    message.content ? h("pre.text.reply-text", message.content) : null,
    (message.tool_calls || []).map((c) =>
      h(
        "div.prompt-call",
        h("span.mono", `→ ${c.name}`),
        h("pre.json", prettyJson(c.arguments)),
        h("span.muted.small", c.id),
      ),
    ),
    !message.content && !(message.tool_calls || []).length ? h("p.muted", "(empty reply)") : null,
  );
}

/** Update the streaming reply of running model calls in place (no re-render). */
export function updateLiveText(pane, model) {
  for (const step of model.liveSteps()) {
    const pre = pane.list.querySelector(`[data-step="${CSS.escape(step.key)}"] .live-text`);
    if (pre) pre.textContent = step.live.text || "…";
  }
}
