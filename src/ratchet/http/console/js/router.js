// Hash routing: the whole state of a view (filters, open panes, selected step, search)
// lives in the URL after "#", so a link or a reload shows the same thing.
//   #/runs?agent=support&status=running      #/runs/<id>?panes=chat,timeline&step=turn1-model
//   #/approvals   #/limits   #/new

export function parseHash(hash = location.hash) {
  const text = hash.replace(/^#/, "") || "/runs";
  const [pathPart, queryPart = ""] = text.split("?");
  const segments = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return { segments, params: new URLSearchParams(queryPart) };
}

export function buildHash(segments, params) {
  const path = "/" + segments.map(encodeURIComponent).join("/");
  const entries = [...new URLSearchParams(params || {}).entries()].filter(([, v]) => v !== "");
  const query = new URLSearchParams(entries).toString();
  return `#${path}${query ? "?" + query : ""}`;
}

/** Go to a view (a history entry, so Back works). */
export function go(segments, params) {
  const hash = buildHash(segments, params);
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

/** Change the current view's parameters in place: no new history entry, no re-route. */
export function setParams(changes) {
  const { segments, params } = parseHash();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") params.delete(key);
    else params.set(key, value);
  }
  history.replaceState(history.state, "", buildHash(segments, params));
}

export function onRoute(fn) {
  window.addEventListener("hashchange", () => fn(parseHash()));
}
