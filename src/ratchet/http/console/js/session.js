// Who is signed in, and what their role lets them do. The server decides every
// request; the console only hides what the role could not do anyway.

import { api, setCsrfToken } from "./api.js";

export const ROLES = ["viewer", "operator", "approver", "admin"];
const SIGNED_IN_KEY = "ratchet.signedIn";

export class Session {
  constructor(me) {
    this.principal = me.principal;
    this.role = me.role;
    this.tenant = me.tenant ?? null;
  }

  /** Each role includes the ones before it. */
  can(role) {
    return ROLES.indexOf(this.role) >= ROLES.indexOf(role);
  }

  static async current() {
    // The session cookie is HttpOnly: remember that we signed in, so a first visit
    // goes straight to the login instead of asking the server (and logging a 401).
    if (!localStorage.getItem(SIGNED_IN_KEY)) return null;
    try {
      const me = await api.get("v1/me", { quiet401: true });
      if (me.csrf_token) setCsrfToken(me.csrf_token);
      return new Session(me);
    } catch (err) {
      if (err.status === 401) {
        localStorage.removeItem(SIGNED_IN_KEY);
        return null;
      }
      throw err;
    }
  }

  static async login(apiKey) {
    const me = await api.post("v1/session", { api_key: apiKey }, { quiet401: true });
    setCsrfToken(me.csrf_token);
    localStorage.setItem(SIGNED_IN_KEY, "1");
    return new Session(me);
  }

  /** The server ended the session (401): forget it here too. */
  static forget() {
    setCsrfToken(null);
    localStorage.removeItem(SIGNED_IN_KEY);
  }

  async logout() {
    try {
      await api.delete("v1/session", { quiet401: true });
    } finally {
      setCsrfToken(null);
      localStorage.removeItem(SIGNED_IN_KEY);
    }
  }
}
