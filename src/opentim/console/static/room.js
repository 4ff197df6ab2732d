// #/rooms/<id>: a live room. The online count and the online list (get_members, newest
// first, paged, a mark filter) updated from the console's WebSocket (members joining and
// leaving within a second), marks and robots, the room's messages as they arrive and a box
// to send one as the App admin; mute and ban where the server has them.

import { has, random32, rest } from "./api.js";
import { button, clear, clock, field, h, run, showError, showOk, words } from "./dom.js";

const AV = "group_open_avchatroom_http_svc";
const SVC = "group_open_http_svc";
const MAX_ROWS = 1000; // rows kept in the list (a page is 500; live joins are prepended)
const MAX_MESSAGES = 200;

export async function roomPage(main, groupId) {
  const onlineCount = h("span", { class: "value", testid: "room-online-count" }, "–");
  const rate = h("span", { class: "value small", testid: "room-message-rate" }, "0");
  const status = h("span", { class: "live-status", testid: "room-live-status",
    dataset: { state: "connecting" } }, "connecting…");
  const typeLabel = h("span", { class: "muted", testid: "room-type" });

  // --- the online list ---------------------------------------------------------------------
  const markFilter = h("input", { type: "number", min: 0, name: "mark", list: "room-marks-known",
    placeholder: "any", testid: "room-mark-filter", "aria-describedby": "room-mark-hint" });
  const filterForm = h("form", { class: "inline", testid: "room-mark-filter-form" },
    field("Mark", markFilter),
    h("button", { type: "submit", testid: "room-mark-filter-apply" }, "Filter"),
    button("Clear", { class: "secondary", testid: "room-mark-filter-clear" }),
    h("datalist", { id: "room-marks-known" }, h("option", { value: 500 }, "500 robots / always online"),
      h("option", { value: 600 }, "600 hidden")),
    h("span", { id: "room-mark-hint", class: "hint" },
      "500: robots and always-online members · 600: hidden members · 1000 and up: your marks"));
  const list = h("ol", { class: "members", testid: "room-members", "aria-live": "off" });
  const shownCount = h("span", { class: "muted", testid: "room-members-shown" });
  const first = button("Newest", { class: "secondary", testid: "room-members-first" });
  const next = button("Next page", { class: "secondary", testid: "room-members-next", disabled: true });

  const rows = new Map(); // account -> row element (the list as shown)
  const marks = new Map(); // account -> marks learned from marks_changed / modify_user_info
  let filter = null; // the Mark of get_members, or null
  let firstPage = true;
  let nextTimestamp = 0;
  let refetchTimer = null;
  let reads = 0; // get_members reads started: only the latest one's answer is shown

  function marksText(account) {
    const held = marks.get(account);
    return held && held.length ? held.join(", ") : "";
  }

  function memberRow(account, nick, joinTime) {
    const marksEl = h("span", { class: "marks", testid: "room-member-marks" }, marksText(account));
    const actions = h("span", { class: "actions" });
    const edit = button("Marks", { class: "secondary small", testid: "room-member-edit-marks",
      "aria-label": `Edit the marks of ${account}` });
    edit.addEventListener("click", () => {
      marksAccount.value = account;
      marksValues.value = marksText(account);
      marksValues.focus();
    });
    actions.append(edit);
    if (has(`${SVC}/forbid_send_msg`)) {
      const mute = button("Mute", { class: "secondary small", testid: "room-member-mute",
        "aria-label": `Mute ${account} for 10 minutes` });
      mute.addEventListener("click", () => run(mute, async () => {
        await rest(`${SVC}/forbid_send_msg`, { GroupId: groupId, Members_Account: [account], MuteTime: 600 });
        showOk(`Muted ${account} for 10 minutes.`);
      }));
      actions.append(mute);
    }
    if (has(`${SVC}/ban_group_member`)) {
      const ban = button("Ban", { class: "danger small", testid: "room-member-ban",
        "aria-label": `Ban ${account} for an hour` });
      ban.addEventListener("click", () => {
        if (!confirm(`Ban ${account} from ${groupId} for an hour?`)) return;
        run(ban, async () => {
          await rest(`${SVC}/ban_group_member`, { GroupId: groupId, Members_Account: [account], Duration: 3600 });
          showOk(`Banned ${account} for an hour.`);
        });
      });
      actions.append(ban);
    }
    return h("li", { class: "member", testid: "room-member-row", dataset: { account } },
      h("span", { class: "account", testid: "room-member-account" }, account),
      h("span", { class: "nick", testid: "room-member-nick" }, nick || ""),
      h("span", { class: "joined muted" }, joinTime ? clock(joinTime * 1000) : ""),
      marksEl, actions);
  }

  function updateShown() {
    shownCount.textContent = `${rows.size} shown${filter === null ? "" : ` with mark ${filter}`}`;
  }

  function trim() {
    while (rows.size > MAX_ROWS) {
      const last = list.lastElementChild;
      if (!last) break;
      rows.delete(last.dataset.account);
      last.remove();
    }
  }

  async function loadPage(timestamp) {
    const body = { GroupId: groupId, Timestamp: timestamp };
    if (filter !== null) body.Mark = filter;
    const read = ++reads;
    const reply = await rest(`${AV}/get_members`, body);
    if (read !== reads) return; // a later read is under way: its answer is newer
    clear(list);
    rows.clear();
    for (const m of reply.MemberList || []) {
      if (rows.has(m.Member_Account)) continue;
      const row = memberRow(m.Member_Account, m.NickName, m.JoinTime);
      rows.set(m.Member_Account, row);
      list.append(row);
    }
    firstPage = timestamp === 0;
    nextTimestamp = reply.NextTimestamp || 0;
    next.disabled = !nextTimestamp;
    first.disabled = firstPage;
    updateShown();
  }

  // With a mark filter the list is read again (at most once a second) when members or marks
  // change: a joining member's marks are not in members_changed.
  function refetchSoon() {
    if (refetchTimer || !firstPage) return;
    refetchTimer = setTimeout(() => {
      refetchTimer = null;
      loadPage(0).catch(showError);
    }, 300);
  }

  // Members announced by members_changed come without a nick: read up to 100 of them a
  // second with portrait_get (never the whole room).
  const nickWanted = new Set();
  let nickTimer = null;
  function wantNick(account) {
    if (!has("profile/portrait_get")) return;
    nickWanted.add(account);
    if (!nickTimer) nickTimer = setTimeout(readNicks, 1000);
  }
  async function readNicks() {
    nickTimer = null;
    const accounts = [...nickWanted].filter((a) => rows.has(a)).slice(0, 100);
    for (const a of accounts) nickWanted.delete(a);
    if (nickWanted.size > 1000) nickWanted.clear(); // fell far behind: give up on the rest
    if (nickWanted.size) nickTimer = setTimeout(readNicks, 1000);
    if (!accounts.length) return;
    try {
      const reply = await rest("profile/portrait_get", { To_Account: accounts, TagList: ["Tag_Profile_IM_Nick"] });
      for (const item of reply.UserProfileItem || []) {
        const row = rows.get(item.To_Account);
        const nick = (item.ProfileItem || []).find((p) => p.Tag === "Tag_Profile_IM_Nick");
        if (row && nick) row.querySelector(".nick").textContent = String(nick.Value);
      }
    } catch {
      // (accounts deleted meanwhile, or the call refused: the rows keep their account only)
    }
  }

  function membersChanged(frame) {
    if (filter !== null) {
      for (const account of frame.Offline || []) {
        const row = rows.get(account);
        if (row) {
          row.remove();
          rows.delete(account);
        }
      }
      if ((frame.Online || []).length) refetchSoon();
      updateShown();
      return;
    }
    for (const account of frame.Offline || []) {
      marks.delete(account);
      const row = rows.get(account);
      if (row) {
        row.remove();
        rows.delete(account);
      }
    }
    if (firstPage) {
      for (const account of frame.Online || []) {
        if (rows.has(account)) continue;
        const row = memberRow(account, "", Math.floor(frame.EventTime / 1000));
        row.classList.add("new");
        rows.set(account, row);
        list.prepend(row);
        wantNick(account);
      }
      trim();
    }
    updateShown();
  }

  function marksChanged(items) {
    let refetch = false;
    for (const item of items) {
      marks.set(item.Member_Account, item.Marks);
      const row = rows.get(item.Member_Account);
      if (row) row.querySelector(".marks").textContent = marksText(item.Member_Account);
      const holds = item.Marks.includes(filter);
      if (filter !== null && (Boolean(row) !== holds)) refetch = true;
      if (filter === null && row && item.Marks.includes(600)) {
        row.remove();
        rows.delete(item.Member_Account);
      }
    }
    if (refetch) refetchSoon();
    updateShown();
  }

  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = markFilter.value.trim();
    filter = value === "" ? null : Number(value);
    run(null, () => loadPage(0));
  });
  filterForm.querySelector('[data-testid="room-mark-filter-clear"]').addEventListener("click", () => {
    markFilter.value = "";
    filter = null;
    run(null, () => loadPage(0));
  });
  next.addEventListener("click", () => run(next, () => loadPage(nextTimestamp)));
  first.addEventListener("click", () => run(first, () => loadPage(0)));

  // --- marks and robots --------------------------------------------------------------------
  const marksAccount = h("input", { testid: "room-marks-account", placeholder: "UserID(s)" });
  const marksValues = h("input", { testid: "room-marks-values", placeholder: "1000, 1001" });
  const setMarks = h("button", { type: "submit", testid: "room-marks-set" }, "Set marks");
  const deleteMarks = button("Delete marks", { class: "secondary", testid: "room-marks-delete" });
  const marksForm = h("form", { class: "card", testid: "room-marks-form" }, h("h2", null, "Marks"),
    h("div", { class: "row" }, field("Members", marksAccount), field("Marks", marksValues)),
    h("div", { class: "actions" }, setMarks, deleteMarks));
  async function modifyMarks(commandType, btn) {
    await run(btn, async () => {
      const accounts = words(marksAccount.value);
      const values = words(marksValues.value).map(Number);
      const reply = await rest(`${AV}/modify_user_info`, { GroupId: groupId, CommandType: commandType,
        MemberList: accounts.map((a) => ({ Member_Account: a, Marks: values })) });
      marksChanged(reply.MemberList || []);
      showOk(commandType === 1 ? "Marks set." : "Marks deleted.");
    });
  }
  marksForm.addEventListener("submit", (event) => {
    event.preventDefault();
    modifyMarks(1, setMarks);
  });
  deleteMarks.addEventListener("click", () => modifyMarks(2, deleteMarks));

  const robotAccount = h("input", { testid: "room-robot-account", placeholder: "UserID(s)" });
  const addRobot = h("button", { type: "submit", testid: "room-robot-add" }, "Add robots");
  const removeRobot = button("Remove robots", { class: "secondary", testid: "room-robot-remove" });
  const robotForm = h("form", { class: "card", testid: "room-robot-form" }, h("h2", null, "Robots"),
    h("p", { class: "muted small" }, "Robots are listed online (mark 500) without a connection."),
    field("Accounts", robotAccount), h("div", { class: "actions" }, addRobot, removeRobot));
  async function robots(command, btn) {
    await run(btn, async () => {
      await rest(`${AV}/${command}`, { GroupId: groupId, Member_Account: words(robotAccount.value) });
      showOk(command === "add_robots" ? "Robots added." : "Robots removed.");
    });
  }
  robotForm.addEventListener("submit", (event) => {
    event.preventDefault();
    robots("add_robots", addRobot);
  });
  removeRobot.addEventListener("click", () => robots("del_robots", removeRobot));

  // --- messages ----------------------------------------------------------------------------
  const messages = h("ol", { class: "messages", testid: "room-messages", "aria-live": "polite" });
  const sendText = h("input", { testid: "room-send-text", placeholder: "A message to the room",
    "aria-label": "Message text", maxlength: 4000 });
  const sendButton = h("button", { type: "submit", testid: "room-send-submit" }, "Send");
  const sendForm = h("form", { class: "inline send", testid: "room-send-form" }, sendText, sendButton);
  if (!has(`${SVC}/send_group_msg`)) {
    sendText.disabled = true;
    sendButton.disabled = true;
    sendText.placeholder = "send_group_msg is not available on this server";
  }
  sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = sendText.value;
    if (!text.trim()) return;
    run(sendButton, async () => {
      await rest(`${SVC}/send_group_msg`, { GroupId: groupId, Random: random32(),
        MsgBody: [{ MsgType: "TIMTextElem", MsgContent: { Text: text } }] });
      sendText.value = "";
      sendText.focus();
    });
  });

  function messageText(body) {
    return (body || []).map((e) => {
      const c = e.MsgContent || {};
      if (e.MsgType === "TIMTextElem") return c.Text || "";
      if (e.MsgType === "TIMCustomElem") return `[custom] ${c.Data || ""}`;
      if (e.MsgType === "TIMFaceElem") return `[face ${c.Index}]`;
      return `[${e.MsgType}]`;
    }).join(" ");
  }

  function addMessage(frame) {
    const item = h("li", { class: "message", testid: "room-message",
      dataset: { seq: String(frame.MsgSeq || ""), from: frame.From_Account || "" } },
    h("span", { class: "time muted" }, clock((frame.MsgTime || 0) * 1000)),
    h("span", { class: "from", testid: "room-message-from" }, frame.From_Account || "(App admin)"),
    h("span", { class: "text", testid: "room-message-text" },
      frame.event === "group_system_notification" ? `[notification] ${frame.Content || ""}`
        : messageText(frame.MsgBody)));
    const atBottom = messages.scrollTop + messages.clientHeight >= messages.scrollHeight - 8;
    messages.append(item);
    while (messages.children.length > MAX_MESSAGES) messages.firstElementChild.remove();
    if (atBottom) messages.scrollTop = messages.scrollHeight;
  }

  function note(text) {
    messages.append(h("li", { class: "message note", testid: "room-note" }, text));
  }

  function recalled(frame) {
    for (const seq of frame.MsgSeqList || []) {
      const value = typeof seq === "object" ? seq.MsgSeq : seq;
      const item = messages.querySelector(`[data-seq="${Number(value)}"]`);
      if (item) item.classList.add("recalled");
    }
  }

  // --- the WebSocket -----------------------------------------------------------------------
  let socket = null;
  let stopped = false;
  let retry = null;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/console/api/live?group=${encodeURIComponent(groupId)}`);
    status.textContent = "connecting…";
    status.dataset.state = "connecting";
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      switch (frame.event) {
        case "hello":
          status.textContent = "live";
          status.dataset.state = "live";
          typeLabel.textContent = frame.Type;
          onlineCount.textContent = String(frame.Online);
          // Whoever joined before the socket entered the room is in no members_changed
          // (the first read may have been answered before that): read the page again.
          if (firstPage) loadPage(0).catch(showError);
          break;
        case "tick":
          onlineCount.textContent = String(frame.Online);
          rate.textContent = String(frame.MessagesPerSecond);
          break;
        case "members_changed":
          membersChanged(frame);
          break;
        case "marks_changed":
          marksChanged(frame.MemberList || []);
          break;
        case "group_message":
        case "group_system_notification":
          addMessage(frame);
          break;
        case "group_message_recalled":
          recalled(frame);
          break;
        case "removed_from_group":
          note(`The group was ${frame.Reason === "GroupDestroyed" ? "dismissed" : "left"}.`);
          break;
        case "session_ended":
          note(`Session ended: ${frame.Reason}`);
          break;
        case "error":
          showError({ code: frame.ErrorCode, info: frame.ErrorInfo });
          break;
        default:
          break;
      }
    });
    socket.addEventListener("close", (event) => {
      status.textContent = `closed (${event.code})`;
      status.dataset.state = "closed";
      if (!stopped && ![4001, 4003, 4004].includes(event.code)) {
        retry = setTimeout(connect, 2000);
      }
    });
  }

  main.append(
    h("p", null, h("a", { href: `#/groups/${encodeURIComponent(groupId)}` }, "← Group profile")),
    h("div", { class: "room-head" },
      h("h1", { testid: "room-title" }, groupId), typeLabel, status),
    h("div", { class: "cards" },
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Online"), onlineCount),
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Messages/s"), rate)),
    h("div", { class: "room" },
      h("section", { class: "card members-card" }, h("h2", null, "Online members"), filterForm,
        h("div", { class: "toolbar" }, shownCount, h("span", { class: "pager" }, first, next)), list),
      h("div", { class: "side" },
        h("section", { class: "card messages-card" }, h("h2", null, "Messages"), messages, sendForm),
        marksForm, robotForm)));
  connect(); // first, so that nobody joining during the first read is missed
  try {
    await loadPage(0);
  } catch (err) {
    showError(err);
  }
  return () => {
    stopped = true;
    clearTimeout(retry);
    clearTimeout(refetchTimer);
    clearTimeout(nickTimer);
    if (socket) socket.close(1000);
  };
}

