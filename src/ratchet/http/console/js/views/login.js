// Sign in with an API key. The key goes to the server once; the browser keeps only
// the HttpOnly session cookie it sets (and the CSRF token, for this tab).

import { h } from "../dom.js";
import { Session } from "../session.js";

export function mountLogin(main, onSignedIn) {
  const error = h("p.form-error", { role: "alert", hidden: true });
  const key = h("input#api-key", {
    type: "password",
    name: "api_key",
    autocomplete: "current-password",
    required: true,
    placeholder: "rk_…",
    "aria-describedby": "api-key-help",
  });
  const submit = h("button.primary", { type: "submit" }, "Sign in");
  const form = h(
    "form.login-form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        submit.disabled = true;
        try {
          const session = await Session.login(key.value.trim());
          key.value = "";
          await onSignedIn(session);
        } catch (err) {
          error.textContent = err.status === 401 ? "That key was not accepted." : err.message;
          if (err.status === 429) error.textContent = `Too many attempts: ${err.message}`;
          error.hidden = false;
          key.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h1", "ratchet"),
    h("p.muted", "Durable agents on Temporal: runs, traces, approvals."),
    // Password managers and Chrome expect a username next to a password field.
    h("input", {
      type: "text",
      name: "username",
      autocomplete: "username",
      value: "api-key",
      hidden: true,
      "aria-hidden": "true",
      tabindex: "-1",
    }),
    h("label", { for: "api-key" }, "API key"),
    key,
    h("p.help#api-key-help", "Make one with ", h("code", "ratchet keys create --role viewer"), "."),
    error,
    submit,
  );
  main.replaceChildren(h("section.login", form));
  key.focus();
  return { unmount() {} };
}
