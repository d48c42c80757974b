// The approvals inbox: every call waiting for a person, across the runs this login
// may see, with its arguments and deadline; approve, deny with a reason, raise a budget.

import { api } from "../api.js";
import { h, NodeCache, reconcile } from "../dom.js";
import { localTime } from "../format.js";
import { Poller } from "../poll.js";
import { approvalForm } from "./approve.js";
import { emptyState, moveSelection, problem } from "./common.js";

export function mountApprovals(main, ctx) {
  const list = h("div.approval-list");
  const status = h("p.muted.small", { role: "status" });
  const cache = new NodeCache();
  let selected = -1;
  main.replaceChildren(
    h(
      "section.page.approvals-page",
      h("div.page-head", h("h1", "Approvals"), h("span.spacer"), status),
      ctx.can("approver")
        ? null
        : h(
            "p.role-note",
            `You are signed in as a ${ctx.session.role}: you can see what waits, but only an approver can answer.`,
          ),
      list,
    ),
  );

  async function load() {
    let pending;
    try {
      pending = await api.get("v1/approvals");
    } catch (err) {
      list.replaceChildren(problem(err));
      throw err;
    }
    pending.sort((a, b) => new Date(a.deadline) - new Date(b.deadline));
    const nodes = pending.map((p) =>
      cache.get(`${p.run_id}/${p.call_id}`, 1, () =>
        h(
          "article.approval-item",
          { dataset: { run: p.run_id, call: p.call_id } },
          h(
            "div.approval-run",
            "run ",
            h(
              "a.mono",
              {
                href: `#/runs/${encodeURIComponent(p.run_id)}?approval=${encodeURIComponent(p.call_id)}`,
                title: "Open the run at this call",
              },
              p.run_id,
            ),
            p.agent ? h("span.muted", ` · ${p.agent}`) : null,
            p.tenant ? h("span.muted", ` · tenant ${p.tenant}`) : null,
          ),
          approvalForm(ctx, p.run_id, p, () => poller.now()),
        ),
      ),
    );
    reconcile(
      list,
      nodes.length
        ? nodes
        : [emptyState("Nothing waits for a decision.", "Calls that a policy sends for approval show here.")],
    );
    status.textContent = `${pending.length} pending · refreshed ${localTime(new Date(), { date: false })}`;
  }

  const poller = new Poller(load, 3000).start();
  return {
    unmount: () => poller.stop(),
    onKey(event) {
      const rows = [...list.querySelectorAll(".approval-item")];
      if (event.key === "j" || event.key === "k") {
        selected = moveSelection(rows, selected, event.key === "j" ? 1 : -1);
        const reason = rows[selected]?.querySelector("textarea");
        if (reason) reason.focus();
        return true;
      }
      return false;
    },
  };
}
