// One run: a workspace of panes (conversation, timeline, event log, waterfall, usage)
// fed by the run's live event stream. Which panes show, the selected step, the log
// filter and the search are all in the URL.

import { api, enc } from "../api.js";
import { h } from "../dom.js";
import { duration, timeEl, tokens, usd } from "../format.js";
import { Poller } from "../poll.js";
import { setParams } from "../router.js";
import { RunModel } from "../runmodel.js";
import { RunStream } from "../live.js";
import { isTerminal, problem, statusPill } from "./common.js";
import { ConversationPane } from "./run/conversation.js";
import { LogPane } from "./run/log.js";
import { TimelinePane, updateLiveText } from "./run/timeline.js";
import { UsagePane } from "./run/usage.js";
import { WaterfallPane } from "./run/waterfall.js";
import { temporalRunUrl } from "./run/links.js";

const PANES = [
  ["chat", "Conversation", "1"],
  ["timeline", "Timeline", "2"],
  ["log", "Event log", "3"],
  ["waterfall", "Waterfall", "4"],
  ["usage", "Tokens & cost", "5"],
];
const DEFAULT_PANES = ["chat", "timeline", "log", "waterfall"];

export function mountRun(main, ctx, runId, params) {
  const model = new RunModel(runId);
  const opened = new Set();
  const view = {
    model,
    run: null,
    runVersion: 0,
    selected: params.get("step") || "",
    isOpen: (key) => opened.has(key),
    setOpen: (key, open) => (open ? opened.add(key) : opened.delete(key)),
    select,
    setParams,
    answered: () => schedule({ history: true }),
  };
  let visible = new Set(
    (params.get("panes") || DEFAULT_PANES.join(",")).split(",").filter((p) => PANES.some(([n]) => n === p)),
  );
  if (view.selected) opened.add(view.selected);
  // From the approvals inbox: open the step of this approval once the events name it.
  let approvalToShow = params.get("approval") || "";

  const panes = {
    chat: new ConversationPane(ctx, view),
    timeline: new TimelinePane(ctx, view),
    log: new LogPane(ctx, view, { filter: params.get("log") || "all", query: params.get("q") || "" }),
    waterfall: new WaterfallPane(ctx, view),
    usage: new UsagePane(ctx, view),
  };
  const frames = {};
  for (const [name, title, key] of PANES) {
    frames[name] = h(
      `section.pane.pane-${name}`,
      { "aria-label": title, dataset: { pane: name } },
      h(
        "header.pane-head",
        h("h2", title),
        h("span.spacer"),
        h("kbd", { title: `Press ${key} to hide or show` }, key),
        h(
          "button.ghost.icon-button",
          {
            type: "button",
            title: `Hide ${title}`,
            "aria-label": `Hide ${title}`,
            onclick: () => toggle(name),
          },
          "×",
        ),
      ),
      panes[name].el,
    );
  }

  const head = h("div.run-head");
  const toggles = h("div.pane-toggles", { role: "group", "aria-label": "Panes" });
  const workspace = h("div.workspace");
  const streamState = h("span.stream-state", { role: "status" }, "connecting…");
  main.replaceChildren(h("section.page.run-page", head, toggles, workspace));

  // --- rendering, batched per animation frame ----------------------------------------
  let dirty = { history: false, live: false };
  let frame = 0;
  let ticker = 0;
  function schedule(flags) {
    dirty.history ||= flags.history;
    dirty.live ||= flags.live;
    if (!frame) frame = requestAnimationFrame(render);
  }
  function render() {
    frame = 0;
    const { history, live } = dirty;
    dirty = { history: false, live: false };
    if (history) {
      if (approvalToShow && model.approvalSteps.has(approvalToShow)) {
        view.selected = model.approvalSteps.get(approvalToShow);
        opened.add(view.selected);
        setParams({ approval: "", step: view.selected });
        approvalToShow = "";
        requestAnimationFrame(() => panes.timeline.highlight(true));
      }
      renderHead();
      for (const name of visible) if (name !== "waterfall") panes[name].render();
      if (visible.has("waterfall")) renderWaterfall();
    } else if (live) {
      if (visible.has("chat")) panes.chat.updateLive();
      if (visible.has("timeline")) updateLiveText(panes.timeline, model);
    }
  }
  function renderWaterfall() {
    const moving = panes.waterfall.render();
    clearTimeout(ticker);
    // Open bars (a call running, an approval waiting) grow with the clock.
    if (moving) ticker = setTimeout(() => visible.has("waterfall") && renderWaterfall(), 1000);
  }

  function layout() {
    const columns = ["chat", "timeline", "log", "usage"].filter((n) => visible.has(n));
    const shown = columns.map((n) => frames[n]);
    if (visible.has("waterfall")) shown.push(frames.waterfall);
    workspace.replaceChildren(...shown);
    workspace.style.gridTemplateColumns =
      columns.map((n) => (n === "timeline" ? "minmax(0, 1.4fr)" : "minmax(0, 1fr)")).join(" ") || "1fr";
    workspace.classList.toggle("with-waterfall", visible.has("waterfall"));
    frames.waterfall.style.gridColumn = `1 / span ${Math.max(1, columns.length)}`;
    toggles.replaceChildren(
      ...PANES.map(([name, title, key]) =>
        h(
          "button.toggle",
          {
            type: "button",
            "aria-pressed": String(visible.has(name)),
            onclick: () => toggle(name),
            title: `${visible.has(name) ? "Hide" : "Show"} ${title} (${key})`,
          },
          h("kbd", key),
          " ",
          title,
        ),
      ),
      h("span.spacer"),
      streamState,
    );
    schedule({ history: true });
  }

  function toggle(name) {
    if (visible.has(name)) visible.delete(name);
    else visible.add(name);
    const list = PANES.map(([n]) => n).filter((n) => visible.has(n));
    setParams({ panes: list.join(",") === DEFAULT_PANES.join(",") ? "" : list.join(",") });
    layout();
  }

  function select(key, scroll) {
    view.selected = key;
    opened.add(key);
    setParams({ step: key });
    if (scroll && !visible.has("timeline")) toggle("timeline");
    panes.timeline.highlight(scroll);
  }

  // --- header ---------------------------------------------------------------------------
  let confirmCancel = false;
  // The wall time of a running run grows with the clock: one text node, updated in place.
  const wallClock = h("span.wall");
  function tickWall() {
    const run = view.run || {};
    const started = model.started?.at || run.started;
    const closed = model.finished?.at || run.closed;
    wallClock.textContent = started
      ? duration(((closed ? new Date(closed) : new Date()) - new Date(started)) / 1000)
      : "—";
  }
  const wallTimer = setInterval(tickWall, 1000);
  function renderHead() {
    const run = view.run || {};
    const t = model.totals();
    // The events say it first; the server's status fills in what events cannot
    // (queued, waiting for input, terminated by Temporal).
    const status = model.statusWith(run.status);
    const started = model.started?.at || run.started;
    const closed = model.finished?.at || run.closed;
    tickWall();
    const running = !model.finished && !isTerminal(run.status);
    const pendingCount = model.pending.size;
    const temporal = temporalRunUrl(run);
    head.replaceChildren(
      h(
        "div.run-title",
        h("h1.mono", runId),
        statusPill(status),
        (run.chat ?? model.started?.chat) ? h("span.pill", "chat") : null,
        pendingCount
          ? h(
              "a.pill.warn",
              { href: "#/approvals" },
              `${pendingCount} approval${pendingCount === 1 ? "" : "s"} needed`,
            )
          : null,
        h("span.spacer"),
        temporal
          ? h(
              "a.button",
              { href: temporal, target: "_blank", rel: "noopener noreferrer" },
              "Temporal history ↗",
            )
          : null,
        running && ctx.can("operator") ? cancelButton() : null,
      ),
      h(
        "dl.run-facts",
        fact("agent", run.agent || model.started?.agent),
        fact("model", run.model || model.spec?.model),
        fact("tenant", run.tenant ?? model.started?.tenant ?? "—"),
        fact("started", timeEl(started)),
        fact("closed", closed ? timeEl(closed) : "—"),
        fact("wall", wallClock),
        fact(
          "turns",
          String(
            model.finished?.turns ?? Math.max(run.turns || 0, ...model.stepList().map((s) => s.turn || 0)),
          ),
        ),
        fact("tokens", `${tokens(t.input + t.output)} (${tokens(t.input)} in / ${tokens(t.output)} out)`),
        fact("cost", usd(t.cost)),
        model.executions > 1 ? fact("executions", String(model.executions)) : null,
        model.started?.forked_from ? fact("forked from", forkOrigin(model.started.forked_from)) : null,
      ),
      h(
        "details.run-prompt",
        h("summary", "Prompt"),
        h("pre.text", model.started?.prompt ?? run.prompt ?? ""),
      ),
    );
  }

  function cancelButton() {
    if (!confirmCancel)
      return h(
        "button.danger",
        {
          type: "button",
          onclick: () => {
            confirmCancel = true;
            renderHead();
          },
        },
        "Cancel run",
      );
    return h(
      "span.confirm",
      "Cancel this run? ",
      h("button.danger", { type: "button", onclick: doCancel }, "Yes, cancel"),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            confirmCancel = false;
            renderHead();
          },
        },
        "No",
      ),
    );
  }

  async function doCancel() {
    confirmCancel = false;
    try {
      await api.post(`v1/runs/${enc(runId)}/cancel`, {});
      ctx.toast("Cancellation requested.", "ok");
    } catch (err) {
      ctx.toastError(err, "Could not cancel");
    }
    renderHead();
  }

  function fact(label, value) {
    return [h("dt", label), h("dd", value ?? "—")];
  }

  function forkOrigin(origin) {
    const step = /^turn\d+$/.test(origin.step) ? `${origin.step}-model` : origin.step;
    return h(
      "span.forked-from",
      h("a.mono", { href: `#/runs/${enc(origin.run_id)}?step=${enc(step)}` }, origin.run_id),
      ` at ${origin.step}`,
      origin.edited_message !== null && origin.edited_message !== undefined ? " · message edited" : "",
      origin.instructions !== null && origin.instructions !== undefined ? " · other instructions" : "",
      origin.model ? ` · model ${origin.model}` : "",
    );
  }

  // --- data ---------------------------------------------------------------------------------
  async function loadRun() {
    try {
      const fresh = await api.get(`v1/runs/${enc(runId)}`);
      // Re-render the cards (their Temporal links) only when the run's links changed.
      const linksChanged =
        !view.run ||
        view.run.temporal_ui_url !== fresh.temporal_ui_url ||
        JSON.stringify(view.run.executions) !== JSON.stringify(fresh.executions);
      view.run = fresh;
      view.runVersion = (view.runVersion || 0) + (linksChanged ? 1 : 0);
      schedule({ history: true });
    } catch (err) {
      if (err.status === 404) {
        stream.close("closed");
        statusPoller.stop();
        main.replaceChildren(
          h(
            "section.page",
            h("h1", "Run not found"),
            problem(err),
            h("p", h("a", { href: "#/runs" }, "Back to runs")),
          ),
        );
      } else {
        ctx.toastError(err, "Could not read the run");
      }
    }
  }

  const stream = new RunStream(runId, {
    onEvent(event) {
      const changed = model.apply(event);
      if (changed.history || changed.live) schedule(changed);
      if (event.type === "run_finished") loadRun();
    },
    onState(state, detail) {
      streamState.textContent =
        {
          live: "● live",
          reconnecting: "reconnecting…",
          finished: "finished",
          failed: "stream closed",
          closed: "",
        }[state] ?? state;
      streamState.className = `stream-state state-${state}`;
      if (detail) {
        streamState.title = detail;
        ctx.toast(`The run's event stream stopped: ${detail}`, "error", 8000);
      }
      if (state === "failed") loadRun();
    },
  });
  // The run's status as the server has it (search attributes), until it ends.
  const statusPoller = new Poller(async () => {
    await loadRun();
    if (isTerminal(view.run?.status)) statusPoller.stop();
  }, 4000);
  layout();
  statusPoller.start();
  stream.open();
  if (view.selected) setTimeout(() => panes.timeline.highlight(true), 300);

  return {
    unmount() {
      stream.close();
      statusPoller.stop();
      cancelAnimationFrame(frame);
      clearTimeout(ticker);
      clearInterval(wallTimer);
    },
    onKey(event) {
      const pane = PANES.find(([, , key]) => key === event.key);
      if (pane) {
        toggle(pane[0]);
        return true;
      }
      if (event.key === "/") {
        if (!visible.has("log")) toggle("log");
        panes.log.search.focus();
        return true;
      }
      if (event.key === "j" || event.key === "k") {
        const keys = [...panes.timeline.list.querySelectorAll("[data-step]")].map((el) => el.dataset.step);
        if (!keys.length) return false;
        const at = keys.indexOf(view.selected);
        const next =
          keys[Math.max(0, Math.min(keys.length - 1, at < 0 ? 0 : at + (event.key === "j" ? 1 : -1)))];
        view.selected = next;
        setParams({ step: next });
        panes.timeline.highlight(false);
        const card = panes.timeline.list.querySelector(`[data-step="${CSS.escape(next)}"]`);
        card.scrollIntoView({ block: "nearest" });
        (card.querySelector("summary") || card).focus({ preventScroll: true });
        return true;
      }
      return false;
    },
  };
}
