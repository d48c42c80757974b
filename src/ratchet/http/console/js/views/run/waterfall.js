// The waterfall: per turn, a bar for each model call, tool call and approval wait,
// on the turn's own time axis, so where a turn spent its time shows at a glance.

import { h } from "../../dom.js";
import { duration, localTime } from "../../format.js";

const NICE = [
  0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400,
];

export class WaterfallPane {
  constructor(ctx, view) {
    this.view = view;
    this.el = h("div.pane-body.waterfall");
  }

  render() {
    const model = this.view.model;
    const now = Date.now();
    const turns = [];
    for (const [turn, steps] of model.turns()) {
      const lanes = [];
      for (const step of steps) {
        const span = model.span(step, now);
        const wait = step.kind === "tool" || step.kind === "budget" ? model.waitSpan(step, now) : null;
        if (wait)
          lanes.push({
            step,
            kind: "approval",
            span: wait,
            label: `approval · ${step.tool || step.request?.arguments?.budget || "budget"}`,
          });
        if (span && step.kind === "model")
          lanes.push({ step, kind: "model", span, label: step.model || "model" });
        if (span && step.kind === "tool")
          lanes.push({ step, kind: step.rejected ? "rejected" : "tool", span, label: step.tool });
      }
      if (!lanes.length) continue;
      const start = Math.min(...lanes.map((l) => l.span[0]));
      const end = Math.max(...lanes.map((l) => l.span[1]), start + 1);
      turns.push(this.turn(turn, lanes, start, end, now));
    }
    this.el.replaceChildren(...(turns.length ? turns : [h("p.muted.pad", "No timed steps yet.")]));
    return !model.finished && model.order.length > 0; // still moving: render again soon
  }

  turn(turn, lanes, start, end, now) {
    const total = (end - start) / 1000;
    const pct = (t) => `${(((t - start) / (end - start)) * 100).toFixed(3)}%`;
    const tickEvery = NICE.find((n) => total / n <= 8) || NICE[NICE.length - 1];
    const ticks = [];
    for (let t = 0; t <= total + 1e-9; t += tickEvery)
      ticks.push(h("span.tick", { style: { left: pct(start + t * 1000) } }, tickLabel(t, tickEvery)));
    return h(
      "section.wf-turn",
      { "aria-label": `Turn ${turn}` },
      h(
        "div.wf-head",
        h("strong", turn ? `Turn ${turn}` : "Run"),
        h("span.muted", ` ${duration(total)} · from ${localTime(start)}`),
      ),
      h("div.wf-row.wf-axis", h("span.wf-label"), h("div.wf-track", ticks)),
      lanes.map((lane) => {
        const seconds = (lane.span[1] - lane.span[0]) / 1000;
        const running =
          lane.kind === "model"
            ? !lane.step.finished
            : lane.kind === "tool"
              ? !lane.step.finished
              : !lane.step.approval;
        const marks =
          lane.kind === "model"
            ? lane.step.failures.map((f) =>
                h("span.wf-mark", {
                  style: { left: pct(new Date(f.at).getTime()) },
                  title: `attempt ${f.attempt} failed: ${f.error}`,
                }),
              )
            : [];
        return h(
          "div.wf-row",
          { dataset: { step: lane.step.key, lane: lane.kind } },
          // The duration is in the label too: a short call's bar is too thin to hold it.
          h(
            "span.wf-label",
            { title: lane.label },
            h(
              `span.icon.icon-${lane.kind === "approval" ? "approval" : lane.kind === "model" ? "model" : "tool"}`,
              { "aria-hidden": "true" },
              lane.kind === "approval" ? "◷" : lane.kind === "model" ? "◆" : "⚒",
            ),
            " ",
            lane.label,
            h("span.wf-took", duration(seconds)),
          ),
          h(
            "div.wf-track",
            h(
              `button.wf-bar.bar-${lane.kind}${running ? ".running" : ""}`,
              {
                type: "button",
                style: {
                  left: pct(lane.span[0]),
                  width: `max(3px, ${(((lane.span[1] - lane.span[0]) / (end - start)) * 100).toFixed(3)}%)`,
                },
                title: `${lane.label}: ${duration(seconds)}${running ? " so far" : ""}, from ${localTime(lane.span[0], { ms: true })}`,
                onclick: () => this.view.select(lane.step.key, true),
              },
              h("span.wf-bar-text", `${lane.label} · ${duration(seconds)}`),
            ),
            marks,
          ),
        );
      }),
    );
  }
}

/** "0", "250 ms", "1.5 s", "2m 30s": as precise as the tick spacing. */
function tickLabel(t, every) {
  if (t === 0) return "0";
  if (every < 1) return t < 1 ? `${Math.round(t * 1000)} ms` : `${Number(t.toFixed(2))} s`;
  if (t < 60) return `${Number(t.toFixed(1))} s`;
  return duration(t, { coarse: true });
}
