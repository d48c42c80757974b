// One run, folded from its run events (ratchet.events, as the SSE stream sends them).
// Pure: no DOM, no fetch. Views read it; `apply` says what an event changed so each
// pane re-renders only when it must (a token touches the answer, not the timeline).

export const HISTORY_TYPES = [
  "run_started",
  "agent_snapshotted",
  "message",
  "model_call_started",
  "model_call_attempt_failed",
  "model_call_finished",
  "tool_call_rejected",
  "policy_decision",
  "approval_requested",
  "approval_answered",
  "tool_call_started",
  "tool_call_finished",
  "budget_decision",
  "prompt_compacted",
  "continued_as_new",
  "run_finished",
];
export const LIVE_TYPES = ["token", "tokens_superseded"];

const toolKey = (callId) => `tool:${callId}`;
const approvalKey = (approvalId) => `approval:${approvalId}`;

export class RunModel {
  constructor(runId) {
    this.runId = runId;
    this.events = []; // history events in seq order (no tokens)
    this.maxSeq = 0;
    this.started = null; // run_started
    this.spec = null; // the agent snapshot
    this.finished = null; // run_finished
    this.messages = new Map(); // transcript index -> {message, at, seq}
    this.steps = new Map(); // key -> step (model, tool, budget approval, boundary, ...)
    this.order = []; // step keys, in the order they first appeared
    this.pending = new Map(); // approval id -> {approval, stepKey, at}
    this.approvalSteps = new Map(); // approval id -> step key
    this.stepOfSeq = new Map(); // event seq -> step key, for the event log
    this.executions = 1;
    this.tokenPieces = 0;
  }

  /** Apply one event. Returns {history, live} flags: what kind of change it was. */
  apply(event) {
    if (event.type === "token") return { history: false, live: this.token(event) };
    if (event.type === "tokens_superseded") return { history: false, live: this.superseded(event) };
    if (event.seq <= this.maxSeq) return { history: false, live: false }; // a resumed stream's repeat
    this.maxSeq = event.seq;
    this.events.push(event);
    this.executions = Math.max(this.executions, event.execution || 1);
    const handler = HANDLERS[event.type];
    if (handler) handler(this, event);
    return { history: true, live: false };
  }

  // --- steps -------------------------------------------------------------------

  step(key, make) {
    let step = this.steps.get(key);
    if (!step) {
      step = { key, version: 0, ...make() };
      this.steps.set(key, step);
      this.order.push(key);
    }
    return step;
  }

  touch(step, event) {
    step.version += 1;
    if (event && event.seq) this.stepOfSeq.set(event.seq, step.key);
    return step;
  }

  modelStep(callId, turn) {
    return this.step(callId, () => ({
      kind: "model",
      callId,
      turn,
      model: null,
      started: null,
      failures: [],
      finished: null,
      live: null,
      cutOff: [],
      streamed: 0,
    }));
  }

  toolStep(callId, turn, tool) {
    return this.step(toolKey(callId), () => ({
      kind: "tool",
      callId,
      turn,
      tool,
      arguments: null,
      rawArguments: null,
      policy: null,
      request: null,
      approval: null,
      started: null,
      finished: null,
      rejected: null,
      approvalId: null,
    }));
  }

  // --- live tokens ---------------------------------------------------------------

  token(event) {
    const step = this.modelStep(event.call_id, event.turn);
    let live = step.live;
    if (live && event.attempt < live.attempt) return false;
    if (!live || event.attempt > live.attempt) {
      if (live && live.text) step.cutOff.push(live.attempt);
      live = step.live = { attempt: event.attempt, offset: -1, text: "", toolArgs: new Map() };
    }
    if (event.offset <= live.offset) return false; // already have it (resumed stream)
    live.offset = event.offset;
    this.tokenPieces += 1;
    step.streamed += 1;
    if (event.kind === "tool_arguments") {
      const index = event.tool_call_index ?? 0;
      const call = live.toolArgs.get(index) || { name: event.tool_name || "", text: "" };
      if (event.tool_name) call.name = event.tool_name;
      call.text += event.text;
      live.toolArgs.set(index, call);
    } else {
      live.text += event.text;
    }
    return true;
  }

  superseded(event) {
    const step = this.steps.get(event.call_id);
    if (!step || !step.live || step.live.attempt !== event.attempt) return false;
    if (step.live.text) step.cutOff.push(event.attempt);
    step.live = null;
    return true;
  }

  /** Model calls streaming right now (their reply is not recorded yet). */
  liveSteps() {
    return this.order
      .map((k) => this.steps.get(k))
      .filter((s) => s.kind === "model" && s.live && !s.finished);
  }

  // --- reading -----------------------------------------------------------------------

  get status() {
    return this.statusWith(null);
  }

  /**
   * The run's state (ratchet.RUN_STATES) as its events tell it, live; the server's
   * status (search attributes, read every few seconds) fills in what events cannot:
   * queued for a concurrency slot, closed by Temporal itself.
   */
  statusWith(serverStatus) {
    if (this.finished) return this.finished.outcome;
    if (["terminated", "timed_out", "cancelled", "failed", "completed"].includes(serverStatus))
      return serverStatus;
    if (this.pending.size) return "waiting-approval";
    const steps = this.stepList();
    const models = steps.filter((s) => s.kind === "model");
    if (!models.length) return serverStatus || (this.started ? "starting" : "unknown");
    const working = steps.some(
      (s) => (s.kind === "model" || s.kind === "tool") && s.started && !s.finished && !s.rejected,
    );
    const chat = Boolean(this.started?.chat);
    const last = models[models.length - 1];
    if (chat && !working && last.finished && !(last.finished.response?.tool_calls || []).length)
      return "waiting-input";
    return "running";
  }

  stepList() {
    return this.order.map((key) => this.steps.get(key));
  }

  turns() {
    const byTurn = new Map();
    for (const step of this.stepList()) {
      const turn = step.turn ?? 0;
      if (!byTurn.has(turn)) byTurn.set(turn, []);
      byTurn.get(turn).push(step);
    }
    return [...byTurn.entries()].sort((a, b) => a[0] - b[0]);
  }

  transcript() {
    return [...this.messages.entries()].sort((a, b) => a[0] - b[0]).map(([index, m]) => ({ index, ...m }));
  }

  totals() {
    const out = {
      input: 0,
      output: 0,
      cost: 0,
      unpriced: 0,
      modelCalls: 0,
      toolCalls: 0,
      attempts: 0,
      byModel: new Map(),
      byTurn: new Map(),
    };
    for (const step of this.stepList()) {
      if (step.kind === "model" && step.finished) {
        const f = step.finished;
        const usage = f.usage || {};
        out.input += usage.input_tokens || 0;
        out.output += usage.output_tokens || 0;
        out.modelCalls += 1;
        out.attempts += f.attempts || 1;
        if (f.cost_usd === null || f.cost_usd === undefined) out.unpriced += 1;
        else out.cost += f.cost_usd;
        const tokens = (usage.input_tokens || 0) + (usage.output_tokens || 0);
        const m = out.byModel.get(f.model) || { tokens: 0, cost: 0 };
        m.tokens += tokens;
        m.cost += f.cost_usd || 0;
        out.byModel.set(f.model, m);
        const t = out.byTurn.get(step.turn) || { tokens: 0, cost: 0 };
        t.tokens += tokens;
        t.cost += f.cost_usd || 0;
        out.byTurn.set(step.turn, t);
      } else if (step.kind === "tool" && (step.finished || step.rejected)) {
        out.toolCalls += 1;
      }
    }
    return out;
  }

  /** [start, end] of a step in ms since the epoch (end: now while it runs). */
  span(step, now = Date.now()) {
    const t = (v) => (v ? new Date(v).getTime() : null);
    if (step.kind === "model") {
      const start = t(step.started?.at);
      const end = step.finished ? t(step.finished.at) : now;
      return start === null ? null : [start, end];
    }
    if (step.kind === "tool") {
      const start = t(step.started?.at) ?? t(step.rejected?.at);
      if (start === null) return null;
      const end = step.finished ? t(step.finished.at) : step.rejected ? start : now;
      return [start, end];
    }
    return null;
  }

  /** When a step waited for a person: [requested, answered or now]. */
  waitSpan(step, now = Date.now()) {
    const request = step.request;
    if (!request) return null;
    const start = new Date(request.requested_at).getTime();
    const end = step.approval
      ? new Date(step.approval.at).getTime()
      : this.finished
        ? new Date(this.finished.at).getTime()
        : now;
    return [start, end];
  }
}

// --- one handler per history event type ---------------------------------------------

const HANDLERS = {
  run_started(m, e) {
    m.started = e;
  },
  agent_snapshotted(m, e) {
    m.spec = e.spec;
  },
  message(m, e) {
    m.messages.set(e.index, { message: e.message, at: e.at, seq: e.seq });
  },
  model_call_started(m, e) {
    const step = m.modelStep(e.call_id, e.turn);
    step.started = e;
    step.model = e.model;
    m.touch(step, e);
  },
  model_call_attempt_failed(m, e) {
    const step = m.modelStep(e.call_id, e.turn);
    step.failures.push(e);
    m.touch(step, e);
  },
  model_call_finished(m, e) {
    const step = m.modelStep(e.call_id, e.turn);
    step.finished = e;
    step.model = e.model;
    step.live = null;
    // The workflow names a call's approval after its place in the reply.
    (e.response?.tool_calls || []).forEach((call, index) => {
      const tool = m.toolStep(call.id, e.turn, call.name);
      tool.rawArguments = call.arguments;
      tool.approvalId = `turn${e.turn}-tool${index}`;
      m.approvalSteps.set(tool.approvalId, tool.key);
    });
    m.touch(step, e);
  },
  tool_call_rejected(m, e) {
    const step = m.toolStep(e.call_id, e.turn, e.tool);
    step.rejected = e;
    step.rawArguments = e.arguments;
    m.touch(step, e);
  },
  policy_decision(m, e) {
    const step = m.toolStep(e.call_id, e.turn, e.tool);
    step.policy = e;
    m.touch(step, e);
  },
  approval_requested(m, e) {
    const approval = e.approval;
    let key = m.approvalSteps.get(approval.call_id);
    if (!key || approval.kind === "budget") {
      key = approvalKey(approval.call_id);
      m.step(key, () => ({
        kind: "budget",
        turn: turnOf(approval.call_id),
        callId: approval.call_id,
        request: null,
        approval: null,
      }));
      m.approvalSteps.set(approval.call_id, key);
    }
    const step = m.steps.get(key);
    step.request = approval;
    step.arguments = step.arguments || approval.arguments;
    m.pending.set(approval.call_id, { approval, stepKey: key, at: e.at });
    m.touch(step, e);
  },
  approval_answered(m, e) {
    const record = e.record;
    m.pending.delete(record.call_id);
    const key = m.approvalSteps.get(record.call_id);
    const step = key ? m.steps.get(key) : null;
    if (step) {
      step.approval = record;
      m.touch(step, e);
    }
  },
  tool_call_started(m, e) {
    const step = m.toolStep(e.call_id, e.turn, e.tool);
    step.started = e;
    step.activityId = e.activity_id;
    step.arguments = e.arguments;
    if (e.approval) step.approval = e.approval;
    m.touch(step, e);
  },
  tool_call_finished(m, e) {
    const step = m.toolStep(e.call_id, e.turn, e.tool);
    step.finished = e;
    m.touch(step, e);
  },
  budget_decision(m, e) {
    const step = m.step(`budget-decision:${e.seq}`, () => ({
      kind: "budget_decision",
      turn: lastTurn(m),
      event: e,
    }));
    m.touch(step, e);
  },
  prompt_compacted(m, e) {
    const step = m.step(`compacted:${e.seq}`, () => ({ kind: "compaction", turn: e.turn, event: e }));
    m.touch(step, e);
  },
  continued_as_new(m, e) {
    const step = m.step(`continued:${e.seq}`, () => ({ kind: "boundary", turn: lastTurn(m), event: e }));
    m.touch(step, e);
  },
  run_finished(m, e) {
    m.finished = e;
    m.pending.clear();
  },
};

function turnOf(id) {
  const match = /^turn(\d+)/.exec(id || "");
  return match ? Number(match[1]) : 0;
}

function lastTurn(m) {
  let turn = 0;
  for (const step of m.steps.values()) turn = Math.max(turn, step.turn || 0);
  return turn;
}

// --- the event log ---------------------------------------------------------------------

export const LOG_FILTERS = ["all", "model", "tools", "approvals", "errors"];

/** Which filters an event belongs to. */
export function categories(event) {
  const out = new Set(["all"]);
  const t = event.type;
  if (t.startsWith("model_call") || t === "prompt_compacted") out.add("model");
  if (t.startsWith("tool_call") || t === "policy_decision") out.add("tools");
  if (
    t.startsWith("approval") ||
    t === "budget_decision" ||
    (t === "policy_decision" && event.decision === "require_approval")
  )
    out.add("approvals");
  if (isError(event)) out.add("errors");
  return out;
}

export function isError(event) {
  switch (event.type) {
    case "model_call_attempt_failed":
    case "tool_call_rejected":
      return true;
    case "model_call_finished":
    case "tool_call_finished":
      return event.outcome !== "completed" || Boolean(event.is_error);
    case "run_finished":
      return event.outcome !== "completed";
    case "approval_answered":
      return !event.record.approved;
    case "policy_decision":
      return event.decision === "deny";
    default:
      return false;
  }
}

/** The text an event is searched by. */
export function searchText(event) {
  return JSON.stringify(event).toLowerCase();
}
