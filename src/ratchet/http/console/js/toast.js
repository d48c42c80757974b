// Short notices in a live region, so screen readers hear them too.

import { h } from "./dom.js";

export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  const item = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  box.appendChild(item);
  setTimeout(() => item.remove(), ms);
}

/** Show a failed request as a toast: the problem's detail and its error type. */
export function toastError(err, what = "") {
  const type = err.errorType ? ` (${err.errorType})` : "";
  toast(`${what ? what + ": " : ""}${err.message}${type}`, "error", 8000);
}
