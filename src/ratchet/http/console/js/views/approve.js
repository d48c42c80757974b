// The approval form, shared by the inbox and a run's timeline. The approver is the
// signed-in principal: the server records it; nobody types a name here.

import { api, enc } from "../api.js";
import { h } from "../dom.js";
import { relative, timeEl, prettyJson } from "../format.js";

/**
 * @param {object} ctx the console context (session, toast...)
 * @param {string} runId
 * @param {object} approval a PendingApproval: call_id, tool, arguments, rule, reason, requested_at, deadline, kind
 * @param {() => void} onAnswered
 */
export function approvalForm(ctx, runId, approval, onAnswered) {
  const budget = approval.kind === "budget" || approval.tool === "budget";
  const reason = h("textarea", {
    name: "reason",
    rows: 2,
    placeholder: "Reason (required to deny)",
    "aria-label": "Reason",
  });
  const raiseTo = budget
    ? h("input", {
        type: "number",
        name: "raise_to",
        step: "any",
        min: "0",
        "aria-label": "Raise the budget to",
        placeholder: suggestedRaise(approval.arguments),
      })
    : null;
  const error = h("p.form-error", { role: "alert", hidden: true });
  const buttons = [];

  async function answer(approve) {
    error.hidden = true;
    if (!approve && !reason.value.trim()) {
      error.textContent = "Say why you deny it: the model and the audit trail get your reason.";
      error.hidden = false;
      reason.focus();
      return;
    }
    const body = { reason: reason.value.trim() };
    if (approve && raiseTo && raiseTo.value !== "") body.raise_to = Number(raiseTo.value);
    buttons.forEach((b) => (b.disabled = true));
    try {
      const record = await api.post(
        `v1/runs/${enc(runId)}/approvals/${enc(approval.call_id)}/${approve ? "approve" : "deny"}`,
        body,
      );
      ctx.toast(
        `${approve ? "Approved" : "Denied"} ${approval.tool} as ${record.approver || ctx.session.principal}`,
        "ok",
      );
      ctx.refreshBadge();
      onAnswered(record);
    } catch (err) {
      error.textContent = `${err.message}${err.errorType ? ` (${err.errorType})` : ""}`;
      error.hidden = false;
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  const allowed = ctx.can("approver");
  const approveButton = h(
    "button.primary.approve",
    { type: "button", onclick: () => answer(true) },
    budget ? "Raise budget" : "Approve",
  );
  const denyButton = h(
    "button.danger.deny",
    { type: "button", onclick: () => answer(false) },
    budget ? "Stop the run" : "Deny",
  );
  buttons.push(approveButton, denyButton);

  return h(
    "div.approval-card",
    { dataset: { call: approval.call_id, run: runId } },
    h(
      "div.approval-head",
      h("span.approval-tool", budget ? `budget ${approval.arguments?.budget ?? ""}` : approval.tool),
      h("span.muted", approval.rule ? ` rule ${approval.rule}` : ""),
      h("span.spacer"),
      h(
        "span.deadline",
        { title: "Denied automatically when nobody answers by then" },
        "deadline ",
        timeEl(approval.deadline),
        " · ",
        relative(approval.deadline),
      ),
    ),
    approval.reason ? h("p.approval-reason", approval.reason) : null,
    h("pre.json.arguments", prettyJson(approval.arguments)),
    h("p.muted.small", "requested ", timeEl(approval.requested_at)),
    allowed
      ? h(
          "form.approval-actions",
          {
            onsubmit: (e) => {
              e.preventDefault();
              answer(true);
            },
          },
          reason,
          raiseTo ? h("label.inline", "raise to ", raiseTo) : null,
          approveButton,
          denyButton,
        )
      : h(
          "p.role-note",
          { dataset: { testid: "approval-refused" } },
          `Your role (${ctx.session.role}) cannot answer approvals: an approver must.`,
        ),
    error,
  );
}

function suggestedRaise(args) {
  if (!args || args.limit === undefined) return "new limit";
  const used = Number(args.used ?? args.limit);
  return `e.g. ${Math.ceil(Math.max(used, Number(args.limit)) * 2 * 1000) / 1000}`;
}
