// The limits board: each provider's rate limits, the usage of its current window,
// calls in flight and queued, 429 pauses, live. Admins change limits here.

import { api, enc } from "../api.js";
import { h } from "../dom.js";
import { localTime, relative, timeEl } from "../format.js";
import { Poller } from "../poll.js";
import { emptyState, problem } from "./common.js";

export function mountLimits(main, ctx) {
  const board = h("tbody");
  const status = h("p.muted.small", { role: "status" });
  const editor = h("div.limit-editor");
  let editing = null;
  main.replaceChildren(
    h(
      "section.page.limits-page",
      h("div.page-head", h("h1", "Limits"), h("span.spacer"), status),
      h(
        "p.muted",
        "Provider rate limits shared by every worker: requests and tokens per window, calls in flight and queued.",
      ),
      h(
        "div.table-wrap",
        h(
          "table.limits",
          h(
            "thead",
            h(
              "tr",
              [
                "Provider",
                "Window",
                "Requests",
                "Tokens",
                "In flight",
                "Queued",
                "Granted",
                "429 pauses",
                "Paused until",
                "",
              ].map((c) => h("th", { scope: "col" }, c)),
            ),
          ),
          board,
        ),
      ),
      editor,
    ),
  );

  async function load() {
    let data;
    try {
      data = await api.get("v1/limits");
    } catch (err) {
      board.replaceChildren(h("tr", h("td", { colspan: 10 }, problem(err))));
      throw err;
    }
    const statuses = Array.isArray(data) ? data : data.limits || data.providers || [];
    board.replaceChildren(...statuses.map(row));
    if (!statuses.length)
      board.appendChild(
        h(
          "tr",
          h(
            "td",
            { colspan: 10 },
            emptyState(
              "No provider limiter is running.",
              "One starts with the first model call of a worker given --rate-limit.",
            ),
          ),
        ),
      );
    status.textContent = `refreshed ${localTime(new Date(), { date: false })}`;
  }

  function row(s) {
    const lim = s.limit || {};
    return h(
      "tr",
      { dataset: { provider: s.provider } },
      h("th.mono", { scope: "row" }, s.provider),
      h("td.num", `${lim.window_seconds ?? 60} s`),
      h("td", usage(s.requests_in_window, lim.rpm)),
      h("td", usage(s.tokens_in_window, lim.tpm)),
      h("td.num", String(s.in_flight ?? 0)),
      h("td.num", String(s.queued ?? 0)),
      h("td.num", String(s.granted_total ?? 0)),
      h("td.num", String(s.pauses_total ?? 0)),
      h(
        "td",
        s.paused_until && new Date(s.paused_until) > new Date()
          ? [timeEl(s.paused_until), " ", h("span.muted", relative(s.paused_until))]
          : h("span.muted", "—"),
      ),
      h("td", ctx.can("admin") ? h("button", { type: "button", onclick: () => edit(s) }, "Edit") : null),
    );
  }

  function edit(s) {
    editing = s.provider;
    const lim = s.limit || {};
    const rpm = h("input", {
      type: "number",
      min: 0,
      step: 1,
      name: "rpm",
      value: lim.rpm ?? "",
      placeholder: "unlimited",
    });
    const tpm = h("input", {
      type: "number",
      min: 0,
      step: 1,
      name: "tpm",
      value: lim.tpm ?? "",
      placeholder: "unlimited",
    });
    const error = h("p.form-error", { role: "alert", hidden: true });
    editor.replaceChildren(
      h(
        "form.card.limit-form",
        {
          onsubmit: async (event) => {
            event.preventDefault();
            // 0 removes a limit (an empty field means no limit).
            const body = {
              rpm: rpm.value === "" ? 0 : Number(rpm.value),
              tpm: tpm.value === "" ? 0 : Number(tpm.value),
            };
            try {
              await api.put(`v1/limits/${enc(editing)}`, body);
              ctx.toast(`Limits of ${editing} changed: every worker's next call uses them.`, "ok");
              editor.replaceChildren();
              poller.now();
            } catch (err) {
              error.textContent = `${err.message}${err.errorType ? ` (${err.errorType})` : ""}`;
              error.hidden = false;
            }
          },
        },
        h("h2", `Limits of ${s.provider}`),
        h("label.field", h("span.label", "Requests per window (empty: unlimited)"), rpm),
        h("label.field", h("span.label", "Tokens per window (empty: unlimited)"), tpm),
        error,
        h(
          "div.actions",
          h("button.primary", { type: "submit" }, "Save"),
          h("button", { type: "button", onclick: () => editor.replaceChildren() }, "Close"),
        ),
      ),
    );
    rpm.focus();
  }

  const poller = new Poller(load, 2000).start();
  return { unmount: () => poller.stop() };
}

function usage(used, limit) {
  const n = used ?? 0;
  if (limit === null || limit === undefined)
    return h("span", `${n.toLocaleString("en-US")} `, h("span.muted", "/ unlimited"));
  const ratio = Math.min(1, n / limit);
  return h(
    "span.usage-cell",
    h("meter", { min: 0, max: 1, low: 0.7, high: 0.9, optimum: 0, value: ratio }),
    ` ${n.toLocaleString("en-US")} / ${Number(limit).toLocaleString("en-US")}`,
  );
}
