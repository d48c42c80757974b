// The Fork button of a timeline step: start a new run from this step of the run (the
// same prompt there, tool results reused, never run again), optionally with the last
// user message edited or another model, then go to the new run.

import { api, enc } from "../../api.js";
import { h } from "../../dom.js";
import { go } from "../../router.js";

/**
 * @param {object} ctx the console context
 * @param {string} runId the run to fork
 * @param {string} at the step, as `ratchet fork --at` takes it (turn2-model, msg:5)
 * @param {object|null} lastUser the user message the step ends with, if it ends with one
 */
export function forkControl(ctx, runId, at, lastUser) {
  const box = h("div.fork");
  const open = h(
    "button.fork-button",
    { type: "button", title: `Start a new run from ${at}: tool results before it are reused` },
    "Fork here",
  );
  open.addEventListener("click", () => box.replaceChildren(form()));
  box.append(open);

  function form() {
    const edited = lastUser
      ? h("textarea", {
          name: "edit_message",
          rows: 2,
          value: lastUser.content || "",
          "aria-label": "The user message, edited",
        })
      : null;
    const model = h("input", {
      name: "model",
      placeholder: "Model (default: the run's), e.g. openai:gpt-4o-mini",
      "aria-label": "Model",
    });
    const error = h("p.form-error", { role: "alert", hidden: true });
    const start = h("button.primary", { type: "submit" }, "Start fork");
    const cancel = h("button", { type: "button" }, "Cancel");
    cancel.addEventListener("click", () => box.replaceChildren(open));
    const el = h(
      "form.fork-form",
      h("p.muted", `A new run from ${at}: what the model saw there, then live.`),
      edited ? h("label", "User message", edited) : null,
      model,
      h("div.actions", start, cancel),
      error,
    );
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { at };
      if (edited && edited.value.trim() && edited.value !== (lastUser.content || ""))
        body.edit_message = edited.value;
      if (model.value.trim()) body.model = model.value.trim();
      start.disabled = true;
      error.hidden = true;
      try {
        const forked = await api.post(`v1/runs/${enc(runId)}/fork`, body);
        ctx.toast(`Forked ${runId} at ${forked.step}: run ${forked.id}`, "ok");
        go(["runs", forked.id]);
      } catch (err) {
        error.textContent = `${err.message}${err.errorType ? ` (${err.errorType})` : ""}`;
        error.hidden = false;
        start.disabled = false;
      }
    });
    return el;
  }
  return box;
}

/** The index of a tool call's result message, when the model could be called right
 * after it (it is the last result of its turn), else null. */
export function forkableResult(messages, callId) {
  for (const [index, entry] of messages) {
    const m = entry.message;
    if (m.role !== "tool" || m.tool_call_id !== callId) continue;
    const next = messages.get(index + 1);
    return next && next.message.role === "tool" ? null : index;
  }
  return null;
}
