// #/groups: the app's groups (get_appid_group_list, paged, with a type filter, then
// get_group_info for the page), search by GroupId, create. #/groups/<id>: one group, its
// members paged (get_group_member_info) with their roles, add/remove, mute, destroy.

import { get, has, rest } from "./api.js";
import { button, clear, field, h, run, showOk, table, time } from "./dom.js";

const SVC = "group_open_http_svc";
const PAGE = 50; // get_group_info takes 50 groups a call
const MEMBER_PAGE = 50;
const TYPES = ["Private", "Public", "ChatRoom", "AVChatRoom", "Community"];
const LIVE_TYPES = new Set(["AVChatRoom", "Community"]);

const groupLink = (id) => `#/groups/${encodeURIComponent(id)}`;
const roomLink = (id) => `#/rooms/${encodeURIComponent(id)}`;

// Up to 50 groups' profiles: what get_group_info answers without the member list (which
// get_group_info reads whole: seconds for a 100k-member group). Members are read a page at
// a time with get_group_member_info.
async function groupInfo(ids) {
  const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
  const reply = await get(`groups?${query}`);
  return reply.GroupInfo || [];
}

export async function groupsPage(main) {
  const typeFilter = h("select", { name: "type", testid: "groups-type-filter" },
    h("option", { value: "" }, "All types"), TYPES.map((t) => h("option", { value: t }, t)));
  const total = h("span", { testid: "groups-total" }, "");
  const { el: tableEl, tbody } = table(["GroupId", "Type", "Name", "Members", "Owner", "Created", ""],
    { testid: "groups-table" });
  const first = button("First page", { class: "secondary", testid: "groups-first" });
  const next = button("Next page", { class: "secondary", testid: "groups-next", disabled: true });
  const pageLabel = h("span", { class: "muted", testid: "groups-page" });
  let cursor = 0;
  let pageNo = 1;
  let nextCursor = 0;

  async function load() {
    const body = { Limit: PAGE, Next: cursor };
    if (typeFilter.value) body.GroupType = typeFilter.value;
    const reply = await rest(`${SVC}/get_appid_group_list`, body);
    const ids = (reply.GroupIdList || []).map((g) => g.GroupId);
    const infos = ids.length ? await groupInfo(ids) : [];
    clear(tbody);
    for (const info of infos) tbody.append(groupRow(info));
    if (!infos.length) {
      tbody.append(h("tr", null, h("td", { colspan: 7, class: "muted" }, "No groups.")));
    }
    total.textContent = `${reply.TotalCount} group${reply.TotalCount === 1 ? "" : "s"}`;
    nextCursor = reply.Next || 0;
    next.disabled = !nextCursor;
    first.disabled = pageNo === 1;
    pageLabel.textContent = `page ${pageNo}`;
  }
  typeFilter.addEventListener("change", () => {
    cursor = 0;
    pageNo = 1;
    run(null, load);
  });
  next.addEventListener("click", () => run(next, async () => {
    cursor = nextCursor;
    pageNo += 1;
    await load();
  }));
  first.addEventListener("click", () => run(first, async () => {
    cursor = 0;
    pageNo = 1;
    await load();
  }));

  const searchId = h("input", { name: "groupid", required: true, testid: "groups-search" });
  const searchForm = h("form", { class: "inline" }, field("GroupId", searchId),
    h("button", { type: "submit", testid: "groups-search-submit" }, "Open"));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = searchId.value.trim();
    if (id) location.hash = groupLink(id);
  });

  main.append(h("h1", null, "Groups"),
    h("section", { class: "card" }, h("h2", null, "Find a group"), searchForm),
    createForm(),
    h("section", { class: "card" },
      h("div", { class: "toolbar" }, field("Type", typeFilter), total),
      tableEl, h("div", { class: "pager" }, first, pageLabel, next)));
  await load();
}

function groupRow(info) {
  const id = info.GroupId;
  if (info.ErrorCode) {
    return h("tr", { testid: "groups-row", dataset: { group: id } },
      h("td", null, id), h("td", { colspan: 6, class: "muted" }, `ErrorCode ${info.ErrorCode}`));
  }
  return h("tr", { testid: "groups-row", dataset: { group: id, type: info.Type } },
    h("td", null, h("a", { href: groupLink(id), testid: "groups-row-link" }, id)),
    h("td", null, info.Type),
    h("td", { testid: "groups-row-name" }, info.Name),
    h("td", null, info.MemberNum === undefined ? "live" : String(info.MemberNum)),
    h("td", null, info.Owner_Account || ""),
    h("td", null, time(info.CreateTime * 1000)),
    h("td", null, LIVE_TYPES.has(info.Type)
      ? h("a", { href: roomLink(id), testid: "groups-row-room" }, "Live room") : ""));
}

function createForm() {
  const type = h("select", { name: "type", testid: "groups-create-type" },
    TYPES.map((t) => h("option", { value: t }, t)));
  type.value = "AVChatRoom";
  const name = h("input", { name: "name", required: true, testid: "groups-create-name" });
  const id = h("input", { name: "groupid", testid: "groups-create-id", placeholder: "optional" });
  const owner = h("input", { name: "owner", testid: "groups-create-owner", placeholder: "optional" });
  const submit = h("button", { type: "submit", testid: "groups-create-submit" }, "Create group");
  const form = h("form", { class: "card", testid: "groups-create-form" },
    h("h2", null, "Create a group"),
    h("div", { class: "row" }, field("Type", type), field("Name", name),
      field("GroupId", id), field("Owner_Account", owner)),
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(submit, async () => {
      const body = { Type: type.value, Name: name.value };
      if (id.value.trim()) body.GroupId = id.value.trim();
      if (owner.value.trim()) body.Owner_Account = owner.value.trim();
      const reply = await rest(`${SVC}/create_group`, body);
      showOk(`Created ${reply.GroupId}.`);
      location.hash = LIVE_TYPES.has(type.value) ? roomLink(reply.GroupId) : groupLink(reply.GroupId);
    });
  });
  return form;
}

// --- one group -------------------------------------------------------------------------------

export async function groupPage(main, groupId) {
  const [info] = await groupInfo([groupId]);
  main.append(h("p", null, h("a", { href: "#/groups" }, "← Groups")));
  if (!info || info.ErrorCode) {
    main.append(h("h1", null, groupId),
      h("p", { class: "banner error", testid: "group-missing", dataset: { code: String(info ? info.ErrorCode : -1) } },
        `ErrorCode ${info ? info.ErrorCode : -1}: ${info ? info.ErrorInfo : "not found"}`));
    return;
  }
  const facts = h("dl", { class: "facts", testid: "group-info" });
  for (const [key, value] of Object.entries(info)) {
    if (["MemberList", "AppDefinedData", "ErrorCode", "ErrorInfo"].includes(key)) continue;
    const shown = /Time$/.test(key) && typeof value === "number" && value > 0 ? time(value * 1000) : value;
    facts.append(h("dt", null, key), h("dd", { dataset: { field: key } }, String(shown)));
  }
  for (const kv of info.AppDefinedData || []) {
    facts.append(h("dt", null, `AppDefinedData ${kv.Key}`), h("dd", null, kv.Value));
  }
  const destroy = button("Destroy group", { class: "danger", testid: "group-destroy" });
  destroy.addEventListener("click", () => {
    if (!confirm(`Destroy group ${groupId}? Its members and messages go too.`)) return;
    run(destroy, async () => {
      await rest(`${SVC}/destroy_group`, { GroupId: groupId });
      showOk(`Destroyed ${groupId}.`);
      location.hash = "#/groups";
    });
  });
  main.append(h("h1", { testid: "group-title" }, info.Name || groupId),
    h("p", { class: "muted" }, `${info.Type} · ${groupId}`),
    LIVE_TYPES.has(info.Type)
      ? h("p", null, h("a", { href: roomLink(groupId), class: "button", testid: "group-open-room" }, "Open the live room"))
      : null,
    h("section", { class: "card" }, h("h2", null, "Profile"), facts,
      h("div", { class: "actions" }, destroy)));
  if (info.Type === "AVChatRoom") {
    main.append(h("p", { class: "muted" }, "An AVChatRoom has no member roster: its members are who is online (see the live room)."));
    return;
  }
  main.append(membersSection(groupId, info));
}

function membersSection(groupId, info) {
  const community = info.Type === "Community";
  const roleFilter = h("select", { testid: "group-role-filter" },
    h("option", { value: "" }, "All roles"), ["Owner", "Admin", "Member"].map((r) => h("option", { value: r }, r)));
  const { el: tableEl, tbody } = table(["Member", "Role", "Joined", "Muted until", ""],
    { testid: "group-members" });
  const count = h("span", { testid: "group-member-count" });
  const first = button("First page", { class: "secondary", testid: "group-members-first" });
  const next = button("Next page", { class: "secondary", testid: "group-members-next", disabled: true });
  const pageLabel = h("span", { class: "muted" });
  let offset = 0;
  let cursor = "";
  let pageNo = 1;
  let nextPage = null;

  async function load() {
    const body = { GroupId: groupId, Limit: MEMBER_PAGE,
      MemberInfoFilter: ["Role", "JoinTime", "ShutUpUntil"] };
    if (community) body.Next = cursor;
    else body.Offset = offset;
    if (roleFilter.value) body.MemberRoleFilter = [roleFilter.value];
    const reply = await rest(`${SVC}/get_group_member_info`, body);
    clear(tbody);
    for (const m of reply.MemberList || []) tbody.append(memberRow(groupId, m, load));
    count.textContent = `${reply.MemberNum} member${reply.MemberNum === 1 ? "" : "s"}`;
    const full = (reply.MemberList || []).length === MEMBER_PAGE;
    nextPage = community ? (reply.Next || null) : (full ? offset + MEMBER_PAGE : null);
    next.disabled = nextPage === null;
    first.disabled = pageNo === 1;
    pageLabel.textContent = `page ${pageNo}`;
  }
  roleFilter.addEventListener("change", () => {
    offset = 0;
    cursor = "";
    pageNo = 1;
    run(null, load);
  });
  next.addEventListener("click", () => run(next, async () => {
    if (community) cursor = nextPage;
    else offset = nextPage;
    pageNo += 1;
    await load();
  }));
  first.addEventListener("click", () => run(first, async () => {
    offset = 0;
    cursor = "";
    pageNo = 1;
    await load();
  }));

  const addInput = h("input", { testid: "group-add-member", placeholder: "UserID" });
  const addButton = h("button", { type: "submit", testid: "group-add-member-submit" }, "Add member");
  const addForm = h("form", { class: "inline" }, field("Add a member", addInput), addButton);
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    run(addButton, async () => {
      const reply = await rest(`${SVC}/add_group_member`, { GroupId: groupId,
        MemberList: [{ Member_Account: addInput.value.trim() }] });
      const result = (reply.MemberList || [])[0];
      showOk(result && result.Result === 2 ? "Already a member." : `Added ${addInput.value.trim()}.`);
      addInput.value = "";
      await load();
    });
  });
  const section = h("section", { class: "card" }, h("h2", null, "Members"),
    h("div", { class: "toolbar" }, field("Role", roleFilter), count),
    has(`${SVC}/add_group_member`) ? addForm : null,
    tableEl, h("div", { class: "pager" }, first, pageLabel, next));
  run(null, load);
  return section;
}

function memberRow(groupId, member, reload) {
  const account = member.Member_Account;
  const now = Date.now() / 1000;
  const muted = member.ShutUpUntil && member.ShutUpUntil > now ? time(member.ShutUpUntil * 1000) : "";
  const actions = h("td", { class: "actions" });
  if (has(`${SVC}/forbid_send_msg`)) {
    const mute = button(muted ? "Unmute" : "Mute 10 min", { class: "secondary", testid: "group-member-mute" });
    mute.addEventListener("click", () => run(mute, async () => {
      await rest(`${SVC}/forbid_send_msg`, { GroupId: groupId, Members_Account: [account],
        MuteTime: muted ? 0 : 600 });
      showOk(muted ? `Unmuted ${account}.` : `Muted ${account} for 10 minutes.`);
      await reload();
    }));
    actions.append(mute);
  }
  if (member.Role !== "Owner" && has(`${SVC}/delete_group_member`)) {
    const remove = button("Remove", { class: "danger", testid: "group-member-remove" });
    remove.addEventListener("click", () => {
      if (!confirm(`Remove ${account} from ${groupId}?`)) return;
      run(remove, async () => {
        await rest(`${SVC}/delete_group_member`, { GroupId: groupId, MemberToDel_Account: [account] });
        showOk(`Removed ${account}.`);
        await reload();
      });
    });
    actions.append(remove);
  }
  return h("tr", { testid: "group-member-row", dataset: { account, role: member.Role } },
    h("td", null, account), h("td", { testid: "group-member-role" }, member.Role),
    h("td", null, time(member.JoinTime * 1000)), h("td", null, muted), actions);
}

