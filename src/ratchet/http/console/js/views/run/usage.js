// Tokens, cost and budgets: totals, by model, by turn, and each budget against its
// limit (raised budgets included), from the run's events.

import { h } from "../../dom.js";
import { duration, tokens, usd } from "../../format.js";

export class UsagePane {
  constructor(ctx, view) {
    this.view = view;
    this.el = h("div.pane-body.usage");
  }

  render() {
    const model = this.view.model;
    const t = model.totals();
    const limits = model.spec?.limits || {};
    const raised = new Map();
    for (const e of model.events)
      if (e.type === "budget_decision" && e.decision === "raised" && e.raise_to !== null)
        raised.set(e.budget, e.raise_to);
    const wall = model.started
      ? ((model.finished ? new Date(model.finished.at) : new Date()) - new Date(model.started.at)) / 1000
      : null;
    const turns = Math.max(0, ...[...t.byTurn.keys()]);
    const budgets = [
      ["max_total_tokens", "tokens", t.input + t.output, tokens],
      ["max_cost_usd", "cost", t.cost, usd],
      ["max_turns", "turns", turns, String],
      ["max_wall_seconds", "wall time", wall, (v) => duration(v)],
    ].filter(([name]) => limits[name] !== null && limits[name] !== undefined);
    const maxModel = Math.max(1, ...[...t.byModel.values()].map((m) => m.tokens));
    const maxTurn = Math.max(1, ...[...t.byTurn.values()].map((m) => m.tokens));
    // Through h(): it skips the parts left out (null), where replaceChildren would print them.
    this.el.replaceChildren(
      h(
        "div.usage-body",
        h(
          "div.usage-totals",
          stat(tokens(t.input + t.output), "tokens"),
          stat(tokens(t.input), "input"),
          stat(tokens(t.output), "output"),
          stat(usd(t.cost), t.unpriced ? `cost (${t.unpriced} unpriced)` : "cost"),
          stat(String(t.modelCalls), "model calls"),
          stat(String(t.toolCalls), "tool calls"),
          stat(String(t.attempts), "attempts"),
        ),
        h("h4", "Budgets"),
        budgets.length
          ? h(
              "div.budgets",
              budgets.map(([name, label, used, fmt]) => {
                const limit = raised.get(name) ?? limits[name];
                const ratio = used === null ? 0 : Math.min(1, used / limit);
                return h(
                  "div.budget",
                  { dataset: { budget: name } },
                  h("span.budget-label", label, raised.has(name) ? h("span.pill.warn", "raised") : null),
                  h("meter", {
                    min: 0,
                    max: 1,
                    low: 0.7,
                    high: 0.9,
                    optimum: 0,
                    value: ratio,
                    title: `${(ratio * 100).toFixed(0)}%`,
                  }),
                  h("span.budget-numbers", `${used === null ? "—" : fmt(used)} of ${fmt(limit)}`),
                );
              }),
            )
          : h("p.muted", "No budgets set on this agent."),
        limits.on_budget
          ? h(
              "p.muted.small",
              `When a budget is spent: ${limits.on_budget === "ask" ? "ask an approver (raise it from the approvals inbox)" : limits.on_budget}.`,
            )
          : null,
        h("h4", "By model"),
        h(
          "div.bars",
          [...t.byModel.entries()].map(([name, m]) =>
            bar(name, m.tokens / maxModel, `${tokens(m.tokens)} · ${usd(m.cost)}`),
          ),
        ),
        h("h4", "By turn"),
        h(
          "div.bars",
          [...t.byTurn.entries()]
            .sort((a, b) => a[0] - b[0])
            .map(([turn, m]) =>
              bar(`turn ${turn}`, m.tokens / maxTurn, `${tokens(m.tokens)} · ${usd(m.cost)}`),
            ),
        ),
      ),
    );
  }
}

function stat(value, label) {
  return h("div.stat", h("span.stat-value", value), h("span.stat-label", label));
}

function bar(label, ratio, text) {
  return h(
    "div.hbar",
    h("span.hbar-label", label),
    h("span.hbar-track", h("span.hbar-fill", { style: { width: `${(ratio * 100).toFixed(1)}%` } })),
    h("span.hbar-text", text),
  );
}
