// How numbers and times read in the console. Times show in the browser's zone with
// their UTC offset (a team spans zones, so a bare "14:02" would be ambiguous), and
// the UTC instant on hover.

import { h } from "./dom.js";

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "UTC+02:00" (or "+02:00" when short) for the browser's zone at that instant. */
export function utcOffset(date, short = false) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `${short ? "" : "UTC"}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

export function parseTime(value) {
  if (!value) return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** Local wall time with its offset: "2026-11-29 13:04:05 UTC+01:00" (date left out when today). */
export function localTime(value, { date: withDate = "auto", ms = false, short = false } = {}) {
  const d = parseTime(value);
  if (!d) return "—";
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  let clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (ms) clock += `.${pad(d.getMilliseconds(), 3)}`;
  const showDate = withDate === true || (withDate === "auto" && !sameDay);
  return `${showDate ? day + " " : ""}${clock} ${utcOffset(d, short)}`;
}

/** The UTC instant, for tooltips: "2026-11-29 12:04:05 UTC". */
export function utcTime(value) {
  const d = parseTime(value);
  if (!d) return "";
  return d
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC")
    .replace(/Z$/, " UTC");
}

/** A <time> element: local time with offset, UTC on hover. */
export function timeEl(value, options) {
  const d = parseTime(value);
  if (!d) return h("span.muted", "—");
  return h("time", { datetime: d.toISOString(), title: utcTime(d) }, localTime(d, options));
}

/** "in 3h 05m" / "2m 10s ago". */
export function relative(value, now = Date.now()) {
  const d = parseTime(value);
  if (!d) return "";
  const seconds = (d.getTime() - now) / 1000;
  const text = duration(Math.abs(seconds), { coarse: true });
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** Seconds as "850 ms", "4.2 s", "3m 05s", "2h 10m". */
export function duration(seconds, { coarse = false } = {}) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1 && !coarse) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return coarse ? `${Math.round(seconds)}s` : `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${pad(Math.round(seconds % 60))}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${pad(m % 60)}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function tokens(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

/** Dollars with enough digits for a cheap call: "$0.000123". */
export function usd(value) {
  if (value === null || value === undefined) return "—";
  const v = Number(value);
  if (v === 0) return "$0";
  if (v < 0.01) return `$${v.toPrecision(3)}`;
  return `$${v.toFixed(v < 10 ? 4 : 2)}`;
}

/** JSON for reading: pretty-printed; a string that holds JSON is parsed first. */
export function prettyJson(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch (_) {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

/** A short one-line preview of a long text. */
export function preview(text, max = 90) {
  if (text === null || text === undefined) return "";
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
