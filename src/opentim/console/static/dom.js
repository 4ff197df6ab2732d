// DOM helpers. Data from the server is only ever inserted as text (textContent or text
// nodes), never as HTML: a nickname like <img src=x onerror=…> shows as those characters.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "value") el.value = String(value);
    else if (key === "checked") el.checked = Boolean(value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// A labelled field: <label>text <input …></label>
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), control,
    hint ? h("span", { class: "hint" }, hint) : null);
}

export function button(text, props = {}) {
  return h("button", { type: "button", ...props }, text);
}

// A table inside a horizontally scrolling box (phones).
export function table(headers, props = {}) {
  const tbody = h("tbody");
  const el = h("div", { class: "table-wrap" },
    h("table", props, h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
      tbody));
  return { el, tbody };
}

export function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false });
}

export function clock(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
}

// Split "a, b c" into ["a", "b", "c"].
export function words(text) {
  return String(text).split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

// --- banners ------------------------------------------------------------------------------

function banners() {
  return document.getElementById("banners");
}

export function clearBanners() {
  clear(banners());
}

// An error with its Tencent ErrorCode: data-testid="error-banner", data-code="<code>".
export function showError(err) {
  const code = err && err.code !== undefined ? err.code : -1;
  const info = err && (err.info || err.message) ? (err.info || err.message) : String(err);
  const el = h("div", { class: "banner error", role: "alert", testid: "error-banner",
    dataset: { code: String(code) } },
  h("strong", null, `ErrorCode ${code}`), " ", h("span", { class: "info" }, info),
  button("Dismiss", { class: "link", "aria-label": "Dismiss", onclick: () => el.remove() }));
  const box = banners();
  while (box.children.length >= 3) box.firstChild.remove();
  box.append(el);
  return el;
}

export function showOk(text) {
  const el = h("div", { class: "banner ok", role: "status", testid: "ok-banner" }, text,
    button("Dismiss", { class: "link", "aria-label": "Dismiss", onclick: () => el.remove() }));
  const box = banners();
  while (box.children.length >= 3) box.firstChild.remove();
  box.append(el);
  setTimeout(() => el.remove(), 4000);
  return el;
}

// Run an async action from a button: disable it meanwhile, show any error.
export async function run(btn, action) {
  if (btn) btn.disabled = true;
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}
