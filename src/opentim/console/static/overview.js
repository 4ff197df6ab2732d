// #/overview: this process's connections, online members and messages per second for the
// app, with a live chart (one sample a second), and the webhook counters.

import { get } from "./api.js";
import { chartColor, drawChart } from "./chart.js";
import { field, h, showError } from "./dom.js";

const SERIES = [
  { key: "connections", index: 1, label: "Connections", axis: "left" },
  { key: "online", index: 2, label: "Online members", axis: "left" },
  { key: "messages", index: 3, label: "Messages/s", axis: "right" },
];

export async function overviewPage(main) {
  const value = (testid) => h("span", { class: "value", testid }, "–");
  const connections = value("overview-connections");
  const online = value("overview-online");
  const messages = value("overview-messages");
  const webhooks = value("overview-webhooks");
  const canvas = h("canvas", { class: "chart", testid: "overview-chart", role: "img",
    "aria-label": "Connections, online members and messages per second, last two minutes" });
  const roomId = h("input", { name: "group", placeholder: "@TGS#… or your GroupId",
    testid: "overview-room-id", required: true });
  const open = h("form", { class: "inline" }, field("Open a live room", roomId),
    h("button", { type: "submit", testid: "overview-room-open" }, "Open"));
  open.addEventListener("submit", (event) => {
    event.preventDefault();
    if (roomId.value.trim()) location.hash = `#/rooms/${encodeURIComponent(roomId.value.trim())}`;
  });
  main.append(
    h("h1", null, "Overview"),
    h("div", { class: "cards" },
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Connections"), connections),
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Online members"), online),
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Messages/s"), messages),
      h("div", { class: "card stat" }, h("span", { class: "label" }, "Webhooks sent / failed"),
        webhooks)),
    h("section", { class: "card" },
      h("div", { class: "legend" }, SERIES.map((s) =>
        h("span", { class: "key" }, h("span", { class: "swatch" }), s.label))),
      canvas,
      h("p", { class: "muted small" },
        "Counted by this server process (gateway connections, members online in live groups, ",
        "group and one-to-one messages sent). Messages/s on the right-hand scale.")),
    h("section", { class: "card" }, open));
  // (colours set as properties: the CSP allows no inline style attributes)
  main.querySelectorAll(".legend .swatch").forEach((el, i) => {
    el.style.background = chartColor(SERIES[i].key);
  });

  let stopped = false;
  let failures = 0;
  async function refresh() {
    try {
      const reply = await get("overview?seconds=120");
      failures = 0;
      connections.textContent = String(reply.Connections);
      online.textContent = String(reply.OnlineMembers);
      messages.textContent = String(reply.MessagesPerSecond);
      webhooks.textContent = `${reply.Webhooks.Sent} / ${reply.Webhooks.Failed}`;
      canvas.dataset.samples = String(reply.History.length);
      drawChart(canvas, reply.History, SERIES);
    } catch (err) {
      if (++failures === 3) showError(err);
    }
  }
  await refresh();
  const timer = setInterval(() => {
    if (!stopped) refresh();
  }, 1000);
  const resize = () => refresh();
  window.addEventListener("resize", resize);
  return () => {
    stopped = true;
    clearInterval(timer);
    window.removeEventListener("resize", resize);
  };
}
