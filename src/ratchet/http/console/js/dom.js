// DOM building without innerHTML: every piece of data becomes a text node or an
// attribute value, so nothing a run, a model or a user wrote is ever parsed as HTML.

/**
 * h("div.card#main", {title: "x", onclick: fn, dataset: {k: "v"}}, child, "text", [more])
 * Children may be nodes, strings, numbers, arrays, or null/undefined/false (skipped).
 */
export function h(spec, attrs, ...children) {
  // "tag.class1.class2#id": the id, when given, comes last.
  const [head, id] = spec.split("#");
  const [tag, ...classes] = head.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (id) el.id = id;
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "class") {
      el.className = [el.className, value].filter(Boolean).join(" ");
    } else if (key === "style") {
      Object.assign(el.style, value);
    } else if (key === "href" || key === "src") {
      el.setAttribute(key, safeUrl(value));
    } else if (
      key === "value" ||
      key === "checked" ||
      key === "disabled" ||
      key === "open" ||
      key === "selected" ||
      key === "hidden" ||
      key === "required"
    ) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

/** Only http(s), same-document fragments and relative links: never javascript: or data:. */
export function safeUrl(value) {
  const text = String(value);
  if (text.startsWith("#")) return text;
  try {
    const url = new URL(text, document.baseURI);
    if (url.protocol === "http:" || url.protocol === "https:") return url.href;
  } catch (_) {
    // not a URL at all
  }
  return "#";
}

/**
 * Make `container`'s children exactly `nodes`, in order, touching only what moved:
 * a node that stays in place is never detached, so focus, selection and typed text
 * inside it survive a re-render.
 */
export function reconcile(container, nodes) {
  const keep = new Set(nodes);
  for (const child of [...container.childNodes]) {
    if (!keep.has(child)) child.remove();
  }
  nodes.forEach((node, i) => {
    const at = container.childNodes[i];
    if (at !== node) container.insertBefore(node, at || null);
  });
}

/**
 * Per-key cache of rendered nodes: `get(key, version, render)` re-renders only when the
 * version changed, so unchanged items keep their DOM (and its open/closed state).
 */
export class NodeCache {
  constructor() {
    this.entries = new Map();
  }
  get(key, version, render) {
    const hit = this.entries.get(key);
    if (hit && hit.version === version) return hit.node;
    const node = render();
    if (hit && hit.node.parentNode) hit.node.replaceWith(node);
    this.entries.set(key, { version, node });
    return node;
  }
  clear() {
    this.entries.clear();
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}
