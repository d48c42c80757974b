// The console's only way to the server: same-origin fetch with the session cookie,
// and the CSRF token on every unsafe request. Paths are relative to the page, so the
// console also works when the app is mounted under a prefix.

const CSRF_KEY = "ratchet.csrf";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** A failed request, carrying the problem+json fields when the server sent them. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem.detail || problem.title || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.title = problem.title || "";
    this.errorType = problem.error_type || "";
    this.problem = problem;
  }
}

const listeners = { unauthorized: [] };

/** Called when the server says the session is gone (401), e.g. to show the login. */
export function onUnauthorized(fn) {
  listeners.unauthorized.push(fn);
}

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI).href;
}

export function csrfToken() {
  return sessionStorage.getItem(CSRF_KEY) || "";
}

export function setCsrfToken(token) {
  if (token) sessionStorage.setItem(CSRF_KEY, token);
  else sessionStorage.removeItem(CSRF_KEY);
}

export async function request(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (UNSAFE.has(method) && csrfToken()) headers["X-CSRF-Token"] = csrfToken();
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch (err) {
    throw new ApiError(0, { title: "Network error", detail: `the server did not answer (${err.message})` });
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => ({})) : null;
  if (!response.ok) {
    // Not problem+json (a proxy's page, say): its status line says enough.
    const problem =
      data && typeof data === "object"
        ? data
        : { title: `HTTP ${response.status}`, detail: `${response.status} ${response.statusText}`.trim() };
    const error = new ApiError(response.status, problem);
    if (response.status === 401 && !quiet401) listeners.unauthorized.forEach((fn) => fn(error));
    throw error;
  }
  return data;
}

export const api = {
  get: (path, opts) => request("GET", path, undefined, opts),
  post: (path, body, opts) => request("POST", path, body ?? {}, opts),
  put: (path, body, opts) => request("PUT", path, body ?? {}, opts),
  delete: (path, opts) => request("DELETE", path, undefined, opts),
};

/** "/v1/runs?agent=x" with empty values left out. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const enc = encodeURIComponent;
