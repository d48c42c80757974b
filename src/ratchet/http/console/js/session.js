// Who is signed in, and what their role lets them do. The server decides every
// request; the console only hides what the role could not do anyway.

import { api, setCsrfToken } from "./api.js";

export const ROLES = ["viewer", "operator", "approver", "admin"];

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
    try {
      const me = await api.get("v1/me", { quiet401: true });
      if (me.csrf_token) setCsrfToken(me.csrf_token);
      return new Session(me);
    } catch (err) {
      if (err.status === 401) return null;
      throw err;
    }
  }

  static async login(apiKey) {
    const me = await api.post("v1/session", { api_key: apiKey }, { quiet401: true });
    setCsrfToken(me.csrf_token);
    return new Session(me);
  }

  async logout() {
    try {
      await api.delete("v1/session", { quiet401: true });
    } finally {
      setCsrfToken(null);
    }
  }
}
