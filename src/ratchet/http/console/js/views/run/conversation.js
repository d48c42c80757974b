// The conversation pane: the run's transcript as it grows, the answer streaming in
// token by token, and, for a chat run, the box to send the next message.

import { api, enc } from "../../api.js";
import { h, NodeCache, reconcile } from "../../dom.js";
import { prettyJson, preview, timeEl } from "../../format.js";

export class ConversationPane {
  constructor(ctx, view) {
    this.ctx = ctx;
    this.view = view;
    this.cache = new NodeCache();
    this.liveNodes = new Map(); // call id -> {node, text, tools}
    this.sending = []; // messages sent from here, not yet in the transcript
    this.list = h("div.messages", { "aria-live": "off" });
    this.composer = h("div.composer-slot");
    this.answer = h("div.final-answer", { hidden: true });
    this.el = h("div.pane-body.conversation", this.list, this.answer, this.composer);
    this.composerState = null;
  }

  render() {
    const model = this.view.model;
    const nodes = [];
    for (const entry of model.transcript()) {
      nodes.push(this.cache.get(`m${entry.index}`, 1, () => messageNode(entry, this.view)));
    }
    // Sent from this page and not recorded yet: shown greyed until the run records it.
    const recorded = new Set(
      model
        .transcript()
        .filter((e) => e.message.role === "user")
        .map((e) => e.message.content),
    );
    this.sending = this.sending.filter((text) => !recorded.has(text));
    for (const text of this.sending)
      nodes.push(h("div.msg.user.sending", h("div.msg-role", "you · sending…"), h("pre.text", text)));
    const live = new Set();
    for (const step of model.liveSteps()) {
      live.add(step.key);
      nodes.push(this.liveNode(step).node);
    }
    for (const key of [...this.liveNodes.keys()]) if (!live.has(key)) this.liveNodes.delete(key);
    if (!nodes.length) nodes.push(h("p.muted.pad", "Waiting for the first message…"));
    const stick = this.atBottom();
    reconcile(this.list, nodes);
    this.updateLive();
    this.renderOutcome();
    this.renderComposer();
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  }

  atBottom() {
    return this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 40;
  }

  liveNode(step) {
    let entry = this.liveNodes.get(step.key);
    if (!entry) {
      const text = h("pre.text.live-answer", { dataset: { testid: "live-answer" } });
      const tools = h("div.live-tools");
      const node = h(
        "div.msg.assistant.streaming",
        { dataset: { call: step.callId } },
        h("div.msg-role", "assistant ", h("span.live-dot", "streaming")),
        text,
        tools,
      );
      entry = { node, text, tools };
      this.liveNodes.set(step.key, entry);
    }
    return entry;
  }

  /** Tokens arrive many times a second: write them into the live bubble in place. */
  updateLive() {
    const stick = this.atBottom();
    for (const step of this.view.model.liveSteps()) {
      const entry = this.liveNode(step);
      if (!entry.node.isConnected) {
        this.render();
        return;
      }
      entry.text.textContent = step.live.text;
      entry.text.hidden = !step.live.text;
      const calls = [...step.live.toolArgs.values()];
      entry.tools.replaceChildren(
        ...calls.map((c) =>
          h(
            "div.live-call",
            h("span.mono", `writing a call to ${c.name || "a tool"}…`),
            h("pre.json", c.text),
          ),
        ),
      );
    }
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  }

  renderOutcome() {
    const f = this.view.model.finished;
    this.answer.hidden = !f;
    if (!f) return;
    const ok = f.outcome === "completed";
    this.answer.replaceChildren(
      h(
        `div.outcome.${ok ? "ok" : "bad"}`,
        h("strong", ok ? "Run completed" : `Run ${f.outcome}`),
        " ",
        timeEl(f.at),
        f.error
          ? h("p.error-text", f.error_type ? h("span.error-type", f.error_type) : null, " ", f.error)
          : null,
        (f.warnings || []).length
          ? h(
              "ul.warnings",
              f.warnings.map((w) => h("li", w)),
            )
          : null,
      ),
    );
  }

  renderComposer() {
    const model = this.view.model;
    const chat = this.view.run?.chat ?? model.started?.chat;
    const open = chat && !model.finished;
    const key = open ? (this.ctx.can("operator") ? "form" : "readonly") : "none";
    if (this.composerState === key) return;
    this.composerState = key;
    if (key === "none") {
      this.composer.replaceChildren();
      return;
    }
    if (key === "readonly") {
      this.composer.replaceChildren(
        h("p.role-note", `A chat run. Your role (${this.ctx.session.role}) cannot send messages.`),
      );
      return;
    }
    const input = h("textarea#chat-input", {
      rows: 2,
      placeholder: "Message the agent…  (Ctrl+Enter to send)",
      "aria-label": "Message",
    });
    const send = h("button.primary", { type: "submit" }, "Send");
    const end = h("button", { type: "button", onclick: () => this.endChat(end) }, "End chat");
    const form = h(
      "form.composer",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          const text = input.value.trim();
          if (!text) return;
          input.value = "";
          this.sending.push(text);
          this.render();
          try {
            // The reply streams in over the run's events; the POST returns once it is whole.
            await api.post(`v1/runs/${enc(this.view.model.runId)}/messages`, { text });
          } catch (err) {
            this.sending = this.sending.filter((t) => t !== text);
            input.value = text;
            this.ctx.toastError(err, "Message not sent");
            this.render();
          }
        },
      },
      input,
      h("div.composer-actions", send, end),
    );
    this.composer.replaceChildren(form);
  }

  async endChat(button) {
    button.disabled = true;
    try {
      await api.post(`v1/runs/${enc(this.view.model.runId)}/end`, {});
      this.ctx.toast("Chat ended: the run finishes.", "ok");
    } catch (err) {
      this.ctx.toastError(err, "Could not end the chat");
      button.disabled = false;
    }
  }
}

function messageNode(entry, view) {
  const m = entry.message;
  if (m.role === "system") {
    return h(
      "details.msg.system",
      h("summary", h("span.msg-role", "system instructions"), " ", h("span.muted", preview(m.content, 70))),
      h("pre.text", m.content),
    );
  }
  if (m.role === "tool") {
    return h(
      `details.msg.tool${m.is_error ? ".error" : ""}`,
      h(
        "summary",
        h("span.msg-role", `${m.is_error ? "tool error" : "tool result"} · ${m.name || ""}`),
        " ",
        h("span.muted", preview(m.content, 70)),
      ),
      h("pre.json", prettyJson(m.content)),
    );
  }
  return h(
    `div.msg.${m.role}`,
    { dataset: { index: entry.index } },
    h("div.msg-role", m.role === "user" ? "user" : "assistant", " ", h("span.muted.small", timeEl(entry.at))),
    m.content ? h("pre.text", m.content) : null,
    (m.tool_calls || []).map((c) =>
      h(
        "button.call-chip",
        {
          type: "button",
          title: "Show this call in the timeline",
          onclick: () => view.select(`tool:${c.id}`, true),
        },
        h("span.icon-tool", "⚒ "),
        c.name,
        h("span.muted.mono", ` ${preview(c.arguments, 50)}`),
      ),
    ),
  );
}
