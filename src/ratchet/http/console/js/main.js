// The console's shell: sign-in, the header (who you are, the approvals badge), the
// router that mounts one view at a time, and the keyboard shortcuts.

import { api, onUnauthorized } from "./api.js";
import { h, clear } from "./dom.js";
import { parseHash, go, onRoute } from "./router.js";
import { Session } from "./session.js";
import { Poller } from "./poll.js";
import { toast, toastError } from "./toast.js";
import { mountLogin } from "./views/login.js";
import { mountRuns } from "./views/runs.js";
import { mountRun } from "./views/run.js";
import { mountApprovals } from "./views/approvals.js";
import { mountLimits } from "./views/limits.js";
import { mountStart } from "./views/start.js";

const main = document.getElementById("main");
const state = { session: null, view: null, badge: null, pendingKey: null };

const VIEWS = {
  runs: (ctx, route) =>
    route.segments.length > 1
      ? mountRun(main, ctx, route.segments[1], route.params)
      : mountRuns(main, ctx, route.params),
  approvals: (ctx, route) => mountApprovals(main, ctx, route.params),
  limits: (ctx, route) => mountLimits(main, ctx, route.params),
  new: (ctx, route) => mountStart(main, ctx, route.params),
};

function context() {
  return {
    session: state.session,
    can: (role) => state.session.can(role),
    toast,
    toastError,
    refreshBadge: () => state.badge && state.badge.now(),
  };
}

function route() {
  if (state.view && state.view.unmount) state.view.unmount();
  state.view = null;
  clear(main);
  const current = parseHash();
  if (!state.session) {
    showLogin();
    return;
  }
  const name = current.segments[0] || "runs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === name;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const mount = VIEWS[name];
  if (!mount) {
    main.appendChild(
      h(
        "section.page",
        h("h1", "Not found"),
        h("p", "No such page. ", h("a", { href: "#/runs" }, "Go to runs")),
      ),
    );
    return;
  }
  state.view = mount(context(), current);
}

function showLogin() {
  document.getElementById("topbar").hidden = true;
  state.view = mountLogin(main, async (session) => {
    await signedIn(session);
  });
}

async function signedIn(session) {
  state.session = session;
  const bar = document.getElementById("topbar");
  bar.hidden = false;
  const who = document.getElementById("whoami");
  who.replaceChildren(
    h("span.principal", { title: "Signed in as" }, session.principal),
    h(`span.role.role-${session.role}`, { title: "Role" }, session.role),
    h("span.tenant", { title: "Tenant" }, session.tenant ? `tenant ${session.tenant}` : "all tenants"),
  );
  startBadge();
  if (parseHash().segments[0] === "login") go(["runs"]);
  route();
}

function startBadge() {
  if (state.badge) state.badge.stop();
  const badge = document.getElementById("approval-badge");
  state.badge = new Poller(async () => {
    try {
      const pending = await api.get("v1/approvals");
      const n = Array.isArray(pending) ? pending.length : 0;
      badge.hidden = n === 0;
      badge.textContent = String(n);
      badge.title = `${n} approval${n === 1 ? "" : "s"} needed`;
      badge.setAttribute("aria-label", badge.title);
    } catch (err) {
      badge.hidden = true;
      if (err.status === 403) state.badge.stop();
    }
  }, 4000).start();
}

async function signOut() {
  if (state.session) await state.session.logout().catch(() => {});
  signedOut();
}

function signedOut() {
  Session.forget();
  state.session = null;
  if (state.badge) state.badge.stop();
  state.badge = null;
  route();
}

// --- keyboard --------------------------------------------------------------------------

function typing(target) {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}

function onKey(event) {
  const help = document.getElementById("help");
  if (event.key === "Escape" && typing(event.target)) {
    event.target.blur();
    return;
  }
  if (event.ctrlKey && event.key === "Enter" && typing(event.target)) {
    const form = event.target.closest("form");
    if (form) {
      event.preventDefault();
      form.requestSubmit();
    }
    return;
  }
  if (typing(event.target) || event.altKey || event.ctrlKey || event.metaKey || !state.session) return;
  if (state.pendingKey === "g") {
    state.pendingKey = null;
    const target = { r: "runs", a: "approvals", l: "limits", n: "new" }[event.key];
    if (target) {
      event.preventDefault();
      go([target]);
      return;
    }
  }
  if (event.key === "g") {
    state.pendingKey = "g";
    setTimeout(() => (state.pendingKey = null), 1200);
    return;
  }
  if (event.key === "?") {
    event.preventDefault();
    if (help.open) help.close();
    else help.showModal();
    return;
  }
  if (state.view && state.view.onKey && state.view.onKey(event)) event.preventDefault();
}

// --- start -------------------------------------------------------------------------------

async function boot() {
  document.getElementById("logout").addEventListener("click", signOut);
  document
    .getElementById("help-button")
    .addEventListener("click", () => document.getElementById("help").showModal());
  document.addEventListener("keydown", onKey);
  onUnauthorized(() => {
    if (state.session) {
      toast("Your session ended: sign in again.", "error");
      signedOut();
    }
  });
  onRoute(() => route());
  let session = null;
  try {
    session = await Session.current();
  } catch (err) {
    toastError(err, "Could not reach the server");
  }
  if (session) await signedIn(session);
  else route();
}

boot();
