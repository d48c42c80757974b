// Start a run: pick an agent (its instructions, tools, policy and limits shown), write
// the prompt, go to the run and watch it.

import { api } from "../api.js";
import { h } from "../dom.js";
import { prettyJson } from "../format.js";
import { go } from "../router.js";
import { field, loading, problem } from "./common.js";

export function mountStart(main, ctx, params) {
  const page = h("section.page.start-page", h("h1", "Start a run"), loading());
  main.replaceChildren(page);
  if (!ctx.can("operator")) {
    page.replaceChildren(
      h("h1", "Start a run"),
      h("p.role-note", `Your role (${ctx.session.role}) cannot start runs: an operator can.`),
    );
    return { unmount() {} };
  }
  api
    .get("v1/agents")
    .then((agents) => build(agents))
    .catch((err) => page.replaceChildren(h("h1", "Start a run"), problem(err)));

  function build(agents) {
    const chosen = params.get("agent") || agents[0]?.name || "";
    const agent = h(
      "select#start-agent",
      { name: "agent", required: true },
      agents.map((a) => h("option", { value: a.name, selected: a.name === chosen }, a.name)),
    );
    const prompt = h("textarea#start-prompt", {
      name: "prompt",
      rows: 6,
      required: true,
      placeholder: "What should the agent do?",
    });
    const runId = h("input", {
      name: "id",
      placeholder: "generated",
      pattern: "[A-Za-z0-9._:-]+",
      title: "letters, digits, . _ : -",
    });
    const modelOverride = h("input", { name: "model", placeholder: "the agent's" });
    const chat = h("input", { type: "checkbox", name: "chat" });
    const error = h("p.form-error", { role: "alert", hidden: true });
    const about = h("div.agent-about");
    const submit = h("button.primary", { type: "submit" }, "Start");
    const describe = () => {
      const a = agents.find((x) => x.name === agent.value);
      about.replaceChildren(...(a ? agentDetails(a) : []));
    };
    agent.addEventListener("change", describe);
    describe();
    const form = h(
      "form.start-form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          error.hidden = true;
          submit.disabled = true;
          const body = { agent: agent.value, prompt: prompt.value };
          if (runId.value.trim()) body.id = runId.value.trim();
          if (modelOverride.value.trim()) body.model = modelOverride.value.trim();
          if (chat.checked) body.chat = true;
          try {
            const started = await api.post("v1/runs", body);
            if (started.existed) ctx.toast(`Run ${started.id} already existed: showing it.`, "info");
            go(["runs", started.id]);
          } catch (err) {
            error.textContent = `${err.message}${err.errorType ? ` (${err.errorType})` : ""}`;
            error.hidden = false;
            submit.disabled = false;
          }
        },
      },
      field("Agent", agent),
      field("Prompt", prompt, "Ctrl+Enter starts the run."),
      h(
        "details.more",
        h("summary", "More options"),
        field("Run id", runId, "Starting twice with the same id returns the same run."),
        field("Model", modelOverride),
        h("label.check", chat, " Chat run (stays open for more messages)"),
      ),
      error,
      h("div.actions", submit),
    );
    page.replaceChildren(h("h1", "Start a run"), h("div.start-grid", form, about));
    prompt.focus();
  }
  return { unmount() {} };
}

function agentDetails(a) {
  const limits = Object.entries(a.limits || {}).filter(([, v]) => v !== null && v !== undefined);
  return [
    h("h2", a.name),
    h("p", h("span.muted", "model "), h("span.mono", a.model), a.stream ? h("span.pill", "streams") : null),
    h("h3", "Instructions"),
    h("pre.text.instructions", a.instructions),
    h("h3", `Tools (${(a.tools || []).length})`),
    (a.tools || []).length
      ? h(
          "ul.tool-list",
          a.tools.map((t) =>
            h(
              "li",
              h(
                "details",
                h("summary", h("span.mono", t.name), " — ", t.description),
                h("pre.json", prettyJson(t.parameters)),
              ),
            ),
          ),
        )
      : h("p.muted", "none"),
    h("h3", "Policy"),
    h("pre.json", prettyJson(a.policy ?? {})),
    h(
      "details",
      h("summary", "Limits"),
      h(
        "table.kv",
        limits.map(([k, v]) => h("tr", h("th", { scope: "row" }, k), h("td.mono", String(v)))),
      ),
    ),
  ];
}
