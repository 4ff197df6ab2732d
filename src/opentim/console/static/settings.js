// #/app: the app's settings. The secret key (and callback token) only on an explicit reveal.

import { get, post } from "./api.js";
import { button, clear, field, h, run, showOk, words } from "./dom.js";

export async function settingsPage(main) {
  const app = await get("app");
  const edition = h("select", { name: "edition", testid: "app-edition" },
    h("option", { value: "premium" }, "Premium (Pro, Pro Plus, Enterprise)"),
    h("option", { value: "standard" }, "Standard"));
  edition.value = app.Edition;
  const onlineList = h("input", { type: "checkbox", name: "online", testid: "app-online-list",
    checked: app.OnlineMemberList });
  const callbackUrl = h("input", { name: "callback-url", type: "url", value: app.CallbackUrl,
    placeholder: "https://your-backend.example/im-callback", testid: "app-callback-url" });
  const callbackToken = h("input", { name: "callback-token", type: "password",
    autocomplete: "new-password", testid: "app-callback-token",
    placeholder: app.CallbackTokenSet ? "set (leave empty to keep it)" : "none" });
  const removeToken = h("input", { type: "checkbox", testid: "app-callback-token-remove" });
  const allCommands = h("input", { type: "checkbox", testid: "app-callback-all",
    checked: app.CallbackCommands === null });
  const commandBoxes = app.KnownCallbackCommands.map((name) => {
    const box = h("input", { type: "checkbox", value: name,
      checked: app.CallbackCommands === null || app.CallbackCommands.includes(name),
      dataset: { command: name } });
    return { name, box, el: h("label", { class: "check" }, box, name) };
  });
  const syncAll = () => {
    for (const c of commandBoxes) c.box.disabled = allCommands.checked;
  };
  allCommands.addEventListener("change", syncAll);
  syncAll();
  const rateLimit = h("input", { type: "number", min: 0, value: app.RateLimit,
    testid: "app-rate-limit" });
  const msgRate = h("input", { type: "number", min: 0, value: app.GroupMsgRate,
    testid: "app-group-msg-rate" });
  const admins = h("textarea", { rows: 3, testid: "app-admins", spellcheck: "false" });
  admins.value = app.Admins.join("\n");
  const save = h("button", { type: "submit", testid: "app-save" }, "Save settings");
  const form = h("form", { class: "card", testid: "app-form" },
    h("h2", null, "Settings"),
    field("Edition", edition),
    h("label", { class: "check" }, onlineList, "Online member list (get_members paging, marks, robots; Premium)"),
    field("Callback URL", callbackUrl, "Empty: no callbacks."),
    field("Callback token", callbackToken, "Signs callbacks (Sign = sha256(token + RequestTime))."),
    h("label", { class: "check" }, removeToken, "Remove the callback token"),
    h("fieldset", { testid: "app-callback-commands" }, h("legend", null, "Callback commands"),
      h("label", { class: "check" }, allCommands, "All (including ones added later)"),
      h("div", { class: "checks" }, commandBoxes.map((c) => c.el))),
    field("REST rate limit (calls/s per command, 0 = off)", rateLimit),
    field("Group message rate (messages/s per group, 0 = off)", msgRate),
    field("App admins (one per line)", admins,
      "Removing yourself ends your console session."),
    app.ProfileCustomTags.length ? h("p", { class: "muted" },
      `Custom profile tags: ${app.ProfileCustomTags.map((t) => `Tag_Profile_Custom_${t}`).join(", ")}`) : null,
    h("div", { class: "actions" }, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(save, async () => {
      const change = {
        Edition: edition.value,
        OnlineMemberList: onlineList.checked,
        CallbackUrl: callbackUrl.value.trim(),
        CallbackCommands: allCommands.checked ? null
          : commandBoxes.filter((c) => c.box.checked).map((c) => c.name),
        RateLimit: Number(rateLimit.value || 0),
        GroupMsgRate: Number(msgRate.value || 0),
        Admins: words(admins.value),
      };
      if (removeToken.checked) change.CallbackToken = "";
      else if (callbackToken.value) change.CallbackToken = callbackToken.value;
      const updated = await post("app", change);
      callbackToken.value = "";
      removeToken.checked = false;
      callbackToken.placeholder = updated.CallbackTokenSet ? "set (leave empty to keep it)" : "none";
      callbackUrl.value = updated.CallbackUrl;
      showOk("Settings saved.");
    });
  });

  const secret = h("code", { class: "secret", testid: "app-secret-key" });
  const token = h("code", { class: "secret", testid: "app-callback-token-value" });
  const revealed = h("div", { class: "revealed", hidden: true },
    field("Secret key", secret), field("Callback token", token));
  const reveal = button("Reveal secret key", { testid: "app-reveal-key" });
  const hide = button("Hide", { class: "secondary", testid: "app-hide-key", hidden: true });
  reveal.addEventListener("click", () => run(reveal, async () => {
    const keys = await post("app/reveal-key", {});
    secret.textContent = keys.SecretKey;
    token.textContent = keys.CallbackToken || "(none)";
    revealed.hidden = false;
    hide.hidden = false;
    reveal.hidden = true;
  }));
  hide.addEventListener("click", () => {
    clear(secret);
    clear(token);
    revealed.hidden = true;
    hide.hidden = true;
    reveal.hidden = false;
    reveal.focus();
  });

  main.append(
    h("h1", null, `App ${app.SDKAppID}`),
    h("section", { class: "card" },
      h("h2", null, "Secret key"),
      h("p", { class: "muted" }, "It signs every UserSig of this app: anyone who has it can act as any user or admin."),
      revealed, h("div", { class: "actions" }, reveal, hide)),
    form);
}
