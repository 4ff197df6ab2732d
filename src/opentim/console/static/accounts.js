// #/accounts: import, find (account_check), profile (portrait_get / portrait_set), online
// status (query_online_status), kick and delete — each where the server has the command.

import { has, rest } from "./api.js";
import { button, clear, field, h, run, showError, showOk, table, words } from "./dom.js";

const LOGIN = "im_open_login_svc";
const NICK = "Tag_Profile_IM_Nick";
const IMAGE = "Tag_Profile_IM_Image";

export async function accountsPage(main) {
  const importId = h("input", { name: "userid", required: true, testid: "accounts-import-id" });
  const importNick = h("input", { name: "nick", testid: "accounts-import-nick" });
  const importFace = h("input", { name: "face", type: "url", testid: "accounts-import-face" });
  const importButton = h("button", { type: "submit", testid: "accounts-import-submit" }, "Import");
  const importForm = h("form", { class: "card", testid: "accounts-import-form" },
    h("h2", null, "Import an account"),
    h("div", { class: "row" }, field("UserID", importId), field("Nick", importNick),
      field("FaceUrl", importFace)),
    h("div", { class: "actions" }, importButton));
  importForm.addEventListener("submit", (event) => {
    event.preventDefault();
    run(importButton, async () => {
      const body = { UserID: importId.value.trim() };
      if (importNick.value) body.Nick = importNick.value;
      if (importFace.value) body.FaceUrl = importFace.value;
      await rest(`${LOGIN}/account_import`, body);
      showOk(`Imported ${body.UserID}.`);
      search.value = body.UserID;
      await find();
    });
  });

  const search = h("input", { name: "accounts", testid: "accounts-search",
    placeholder: "alice, bob (up to 100)", required: true });
  const searchButton = h("button", { type: "submit", testid: "accounts-search-submit" }, "Find");
  const searchForm = h("form", { class: "inline" },
    field("UserIDs", search, "There is no account list in the REST API: name the accounts."),
    searchButton);
  const { el: tableEl, tbody } = table(["UserID", "Status", "Nick", "FaceUrl", "Online", ""],
    { testid: "accounts-table" });
  const results = h("section", { class: "card" }, h("h2", null, "Find accounts"), searchForm,
    tableEl);
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    run(searchButton, find);
  });

  async function find() {
    const ids = [...new Set(words(search.value))].slice(0, 100);
    clear(tbody);
    if (!ids.length) return;
    const checked = await rest(`${LOGIN}/account_check`, { CheckItem: ids.map((UserID) => ({ UserID })) });
    const imported = checked.ResultItem.filter((r) => r.AccountStatus === "Imported").map((r) => r.UserID);
    const profiles = new Map();
    const status = new Map();
    if (imported.length && has("profile/portrait_get")) {
      try {
        const reply = await rest("profile/portrait_get", { To_Account: imported, TagList: [NICK, IMAGE] });
        for (const item of reply.UserProfileItem || []) {
          const tags = {};
          for (const p of item.ProfileItem || []) tags[p.Tag] = p.Value;
          profiles.set(item.To_Account, tags);
        }
      } catch (err) {
        showError(err);
      }
    }
    if (imported.length && has("openim/query_online_status")) {
      try {
        const reply = await rest("openim/query_online_status", { To_Account: imported, IsNeedDetail: 1 });
        for (const item of reply.QueryResult || []) status.set(item.To_Account, item);
      } catch (err) {
        showError(err);
      }
    }
    for (const item of checked.ResultItem) {
      tbody.append(accountRow(item, profiles.get(item.UserID), status.get(item.UserID), find));
    }
  }

  main.append(h("h1", null, "Accounts"), importForm, results);
}

function onlineText(state) {
  if (!state) return "";
  const detail = (state.Detail || []).map((d) => `${d.Platform} ${d.Status}`).join(", ");
  return detail ? `${state.Status} (${detail})` : state.Status;
}

function accountRow(item, profile, state, refresh) {
  const account = item.UserID;
  const imported = item.AccountStatus === "Imported";
  const nick = profile ? profile[NICK] || "" : "";
  const nickCell = h("td", { testid: "account-nick" }, nick);
  const actions = h("td", { class: "actions" });
  const row = h("tr", { testid: "accounts-row", dataset: { account } },
    h("td", { testid: "account-id" }, account),
    h("td", { testid: "account-status" }, item.AccountStatus),
    nickCell,
    h("td", { class: "url" }, profile ? profile[IMAGE] || "" : ""),
    h("td", { testid: "account-online" }, onlineText(state)),
    actions);
  if (!imported) return row;
  if (has("profile/portrait_set")) {
    const edit = button("Edit nick", { class: "secondary", testid: "account-edit-nick" });
    edit.addEventListener("click", () => {
      const input = h("input", { value: nick, "aria-label": `Nick of ${account}`,
        testid: "account-nick-input" });
      const save = button("Save", { testid: "account-nick-save" });
      const form = h("form", { class: "inline" }, input, save);
      const submit = () => run(save, async () => {
        await rest("profile/portrait_set", { From_Account: account,
          ProfileItem: [{ Tag: NICK, Value: input.value }] });
        showOk(`Nick of ${account} saved.`);
        await refresh();
      });
      save.addEventListener("click", submit);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        submit();
      });
      clear(nickCell).append(form);
      input.focus();
    });
    actions.append(edit);
  }
  if (has(`${LOGIN}/kick`)) {
    const kick = button("Kick", { class: "secondary", testid: "account-kick" });
    kick.addEventListener("click", () => run(kick, async () => {
      await rest(`${LOGIN}/kick`, { UserID: account });
      showOk(`Kicked ${account}: its connections were closed.`);
      await refresh();
    }));
    actions.append(kick);
  }
  if (has(`${LOGIN}/account_delete`)) {
    const del = button("Delete", { class: "danger", testid: "account-delete" });
    del.addEventListener("click", () => {
      if (!confirm(`Delete account ${account}? Its memberships go too.`)) return;
      run(del, async () => {
        await rest(`${LOGIN}/account_delete`, { DeleteItem: [{ UserID: account }] });
        showOk(`Deleted ${account}.`);
        await refresh();
      });
    });
    actions.append(del);
  }
  return row;
}
