// The console's shell: login, navigation (hash routes) and the pages.

import { ApiError, get, onSessionEnded, post, session, setSession } from "./api.js";
import { clear, clearBanners, field, h, showError } from "./dom.js";
import { accountsPage } from "./accounts.js";
import { groupPage, groupsPage } from "./groups.js";
import { overviewPage } from "./overview.js";
import { roomPage } from "./room.js";
import { settingsPage } from "./settings.js";
import { webhooksPage } from "./webhooks.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutButton = document.getElementById("logout");

const ROUTES = [
  [/^#\/overview$/, overviewPage],
  [/^#\/app$/, settingsPage],
  [/^#\/accounts$/, accountsPage],
  [/^#\/groups$/, groupsPage],
  [/^#\/groups\/(.+)$/, groupPage],
  [/^#\/rooms\/(.+)$/, roomPage],
  [/^#\/webhooks$/, webhooksPage],
];

let cleanup = null;
let shown = "";

function stopPage() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
  }
  cleanup = null;
}

async function route() {
  if (!session.info) return;
  let hash = location.hash;
  if (!ROUTES.some(([re]) => re.test(hash))) {
    hash = "#/overview";
    history.replaceState(null, "", hash);
  }
  if (hash === shown) return;
  shown = hash;
  stopPage();
  clearBanners();
  for (const link of nav.querySelectorAll("a")) {
    const here = hash === link.getAttribute("href") ||
      (link.getAttribute("href") === "#/groups" && /^#\/(groups|rooms)\//.test(hash));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      const params = m.slice(1).map((p) => decodeURIComponent(p));
      try {
        cleanup = (await page(main, ...params)) || null;
      } catch (err) {
        showError(err);
      }
      break;
    }
  }
  main.focus({ preventScroll: true });
}

function loggedIn(info) {
  setSession(info);
  who.textContent = `${info.Identifier} @ ${info.SDKAppID}`;
  nav.hidden = false;
  logoutButton.hidden = false;
  shown = "";
  route();
}

function showLogin(reason) {
  stopPage();
  shown = "";
  nav.hidden = true;
  logoutButton.hidden = true;
  who.textContent = "";
  clear(main);
  if (reason) showError(reason);
  const sdkappid = h("input", { name: "sdkappid", inputmode: "numeric", autocomplete: "username",
    required: true, testid: "login-sdkappid" });
  const identifier = h("input", { name: "identifier", value: "administrator", required: true,
    autocomplete: "off", testid: "login-identifier" });
  const usersig = h("textarea", { name: "usersig", rows: 4, required: true, spellcheck: "false",
    autocomplete: "off", testid: "login-usersig" });
  const submit = h("button", { type: "submit", testid: "login-submit" }, "Log in");
  const form = h("form", { class: "card login", testid: "login-form", novalidate: true },
    h("h1", null, "Log in"),
    h("p", { class: "muted" },
      "The same credentials as a REST call: the SDKAppID, an App admin and a UserSig for it ",
      "(made by tls-sig-api-v2 or `opentim usersig`)."),
    field("SDKAppID", sdkappid), field("App admin identifier", identifier),
    field("UserSig", usersig), h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearBanners();
    submit.disabled = true;
    try {
      const reply = await post("login", { SDKAppID: sdkappid.value.trim(),
        Identifier: identifier.value.trim(), UserSig: usersig.value.trim() });
      loggedIn(reply);
    } catch (err) {
      showError(err);
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  sdkappid.focus();
}

async function start() {
  const m = location.hash.match(/^#login=([A-Za-z0-9_-]+)$/);
  if (m) {
    // The one-time link: use the code once, and take it out of the address bar.
    history.replaceState(null, "", "#/overview");
    try {
      loggedIn(await post("login", { Code: m[1] }));
      return;
    } catch (err) {
      showLogin(err);
      return;
    }
  }
  try {
    loggedIn(await get("session"));
  } catch (err) {
    // (no session at all, 70002, needs no banner; an expired one says so)
    if (err instanceof ApiError && err.status === 401) showLogin(err.code === 70002 ? null : err);
    else showLogin(err);
  }
}

onSessionEnded((doc) => showLogin(new ApiError(doc.ErrorCode, doc.ErrorInfo, 401)));
window.addEventListener("hashchange", route);
logoutButton.addEventListener("click", async () => {
  try {
    await post("logout", {});
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err);
  }
  setSession(null);
  showLogin(null);
});
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

start();
