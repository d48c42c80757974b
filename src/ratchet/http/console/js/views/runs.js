// The runs list: server-side filters and paging (visibility queries over every run,
// closed ones included), refreshed live.

import { api, withQuery } from "../api.js";
import { h } from "../dom.js";
import { duration, localTime, timeEl, tokens, usd } from "../format.js";
import { Poller } from "../poll.js";
import { go, setParams } from "../router.js";
import {
  RUN_STATUSES,
  emptyState,
  field,
  isTerminal,
  moveSelection,
  problem,
  select,
  statusPill,
} from "./common.js";

const RANGES = [
  ["", "Any time"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["custom", "Custom…"],
];
const RANGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

export function mountRuns(main, ctx, params) {
  const filters = {
    agent: params.get("agent") || "",
    status: params.get("status") || "",
    tenant: params.get("tenant") || "",
    range: params.get("range") || "",
    after: params.get("after") || "",
    before: params.get("before") || "",
    size: params.get("size") || "25",
  };
  let pageToken = params.get("page") || "";
  const previous = []; // tokens of the pages before this one, for "Newer"
  let selected = -1;

  const agentSelect = select("agent", [["", "All agents"]], filters.agent, { id: "filter-agent" });
  const statusSelect = select(
    "status",
    [["", "Any status"], ...RUN_STATUSES.map((s) => [s, s.replace(/[_-]/g, " ")])],
    filters.status,
    { id: "filter-status" },
  );
  const tenantInput = h("input", {
    name: "tenant",
    value: filters.tenant,
    placeholder: "any",
    id: "filter-tenant",
    size: 10,
  });
  const rangeSelect = select("range", RANGES, filters.range, { id: "filter-range" });
  const afterInput = h("input", {
    type: "datetime-local",
    name: "after",
    value: toLocalInput(filters.after),
    step: 1,
  });
  const beforeInput = h("input", {
    type: "datetime-local",
    name: "before",
    value: toLocalInput(filters.before),
    step: 1,
  });
  const custom = h(
    "span.custom-range",
    { hidden: filters.range !== "custom" },
    field("From", afterInput),
    field("To", beforeInput),
  );
  const sizeSelect = select(
    "size",
    [
      ["10", "10"],
      ["25", "25"],
      ["50", "50"],
      ["100", "100"],
    ],
    filters.size,
  );
  const jump = h("input#run-jump", {
    placeholder: "Open run by id…  ( / )",
    "aria-label": "Open a run by its id",
    size: 24,
  });

  const table = h("tbody");
  const status = h("p.list-status.muted", { role: "status" });
  const newer = h(
    "button",
    { type: "button", disabled: true, onclick: () => page(previous.pop() ?? "", false) },
    "← Newer",
  );
  const older = h("button", { type: "button", disabled: true }, "Older →");

  const form = h(
    "form.filters",
    { onsubmit: (e) => e.preventDefault(), onchange: () => applyFilters() },
    field("Agent", agentSelect),
    field("Status", statusSelect),
    ctx.session.tenant ? field("Tenant", h("span.fixed", ctx.session.tenant)) : field("Tenant", tenantInput),
    field("Started", rangeSelect),
    custom,
    field("Per page", sizeSelect),
  );

  main.replaceChildren(
    h(
      "section.page.runs-page",
      h(
        "div.page-head",
        h("h1", "Runs"),
        h("div.spacer"),
        h(
          "form.jump",
          {
            onsubmit: (e) => {
              e.preventDefault();
              if (jump.value.trim()) go(["runs", jump.value.trim()]);
            },
          },
          jump,
        ),
        ctx.can("operator") ? h("a.button.primary", { href: "#/new" }, "Start a run") : null,
      ),
      form,
      h(
        "div.table-wrap",
        h(
          "table.runs",
          h(
            "thead",
            h(
              "tr",
              ["Run", "Agent", "Status", "Tenant", "Started", "Duration", "Turns", "Tokens", "Cost"].map(
                (c) => h("th", { scope: "col" }, c),
              ),
            ),
          ),
          table,
        ),
      ),
      h("div.pager", newer, older, status),
    ),
  );

  api
    .get("v1/agents")
    .then((agents) => {
      for (const agent of agents)
        agentSelect.appendChild(
          h("option", { value: agent.name, selected: agent.name === filters.agent }, agent.name),
        );
    })
    .catch(() => {});

  function applyFilters() {
    filters.agent = agentSelect.value;
    filters.status = statusSelect.value;
    filters.tenant = ctx.session.tenant ? "" : tenantInput.value.trim();
    filters.range = rangeSelect.value;
    filters.size = sizeSelect.value;
    custom.hidden = filters.range !== "custom";
    filters.after = filters.range === "custom" ? fromLocalInput(afterInput.value) : "";
    filters.before = filters.range === "custom" ? fromLocalInput(beforeInput.value) : "";
    previous.length = 0;
    page("", false);
  }

  function query() {
    let startedAfter = filters.after;
    if (RANGE_MS[filters.range]) startedAfter = new Date(Date.now() - RANGE_MS[filters.range]).toISOString();
    return {
      agent: filters.agent,
      status: filters.status,
      tenant: filters.tenant,
      started_after: startedAfter,
      started_before: filters.range === "custom" ? filters.before : "",
      page_size: filters.size,
      page_token: pageToken,
    };
  }

  function page(token, forward) {
    if (forward) previous.push(pageToken);
    pageToken = token;
    setParams({ ...filters, page: pageToken, size: filters.size === "25" ? "" : filters.size });
    poller.now();
  }

  async function load() {
    let data;
    try {
      data = await api.get(withQuery("v1/runs", query()));
    } catch (err) {
      table.replaceChildren(h("tr", h("td", { colspan: 9 }, problem(err))));
      throw err;
    }
    const runs = data.runs || [];
    const rows = runs.map((run, i) => row(run, i === selected));
    table.replaceChildren(...rows);
    if (!runs.length)
      table.appendChild(
        h("tr", h("td", { colspan: 9 }, emptyState("No runs match.", "Change the filters, or start a run."))),
      );
    newer.disabled = previous.length === 0 && !pageToken;
    older.disabled = !data.next_page_token;
    older.onclick = () => page(data.next_page_token, true);
    status.textContent = `${runs.length} shown · refreshed ${localTime(new Date(), { date: false })}`;
  }

  const poller = new Poller(load, 3000).start();

  return {
    unmount: () => poller.stop(),
    onKey(event) {
      const rows = [...table.querySelectorAll("tr.run-row")];
      if (event.key === "/") {
        jump.focus();
        return true;
      }
      if (event.key === "j" || event.key === "k") {
        selected = moveSelection(rows, selected, event.key === "j" ? 1 : -1);
        return true;
      }
      if (event.key === "Enter" && rows[selected]) {
        go(["runs", rows[selected].dataset.run]);
        return true;
      }
      return false;
    },
  };
}

function row(run, selected) {
  const wall = run.closed && run.started ? (new Date(run.closed) - new Date(run.started)) / 1000 : null;
  return h(
    `tr.run-row${selected ? ".selected" : ""}`,
    { dataset: { run: run.id } },
    h("td.mono", h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, run.id)),
    h("td", run.agent),
    h("td", statusPill(run.status)),
    h("td", run.tenant || h("span.muted", "—")),
    h("td", timeEl(run.started)),
    h(
      "td.num",
      wall === null
        ? isTerminal(run.status)
          ? "—"
          : h("span.muted", "so far ", duration((Date.now() - new Date(run.started)) / 1000))
        : duration(wall),
    ),
    h("td.num", run.turns ?? "—"),
    h("td.num", tokens(run.tokens)),
    h("td.num", usd(run.cost_usd)),
  );
}

/** ISO instant -> the value of a datetime-local input, in local time. */
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

/** A datetime-local value (local wall time) -> an ISO instant with its offset. */
function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}
