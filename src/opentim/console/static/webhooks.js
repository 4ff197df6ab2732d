// #/webhooks: the app's recent webhook deliveries (this process's last 200): command,
// outcome, HTTP status, latency and attempts, refreshed every two seconds.

import { get } from "./api.js";
import { clear, h, showError, table, time } from "./dom.js";

export async function webhooksPage(main) {
  const counters = h("p", { testid: "webhooks-counters" });
  const note = h("p", { class: "muted", testid: "webhooks-note" });
  const { el: tableEl, tbody } = table(["Time", "Command", "Outcome", "HTTP", "Latency", "Attempts", "Problem"],
    { testid: "webhooks-table" });
  const auto = h("input", { type: "checkbox", checked: true, testid: "webhooks-auto" });
  main.append(h("h1", null, "Webhooks"),
    h("section", { class: "card" },
      h("div", { class: "toolbar" }, counters, h("label", { class: "check" }, auto, "Refresh every 2 s")),
      note, tableEl));

  let failures = 0;
  async function load() {
    try {
      const reply = await get("webhooks");
      failures = 0;
      const c = reply.Counters;
      counters.textContent = `sent ${c.Sent} · failed ${c.Failed} · retried ${c.Retried} · dropped ${c.Dropped}`;
      note.textContent = reply.CallbackUrlSet ? ""
        : "No callback URL is set: set one on the App settings page to receive callbacks.";
      clear(tbody);
      for (const d of reply.Deliveries) {
        tbody.append(h("tr", { testid: "webhooks-row", dataset: { outcome: d.Outcome, command: d.Command } },
          h("td", null, time(d.Time)), h("td", null, d.Command),
          h("td", { class: `outcome ${d.Outcome}` }, d.Outcome),
          h("td", null, d.HttpStatus === null ? "—" : String(d.HttpStatus)),
          h("td", null, `${d.LatencyMs} ms`), h("td", null, String(d.Attempts)),
          h("td", null, d.Problem)));
      }
      if (!reply.Deliveries.length) {
        tbody.append(h("tr", null, h("td", { colspan: 7, class: "muted" }, "No deliveries yet.")));
      }
    } catch (err) {
      if (++failures === 3) showError(err);
    }
  }
  await load();
  const timer = setInterval(() => {
    if (auto.checked) load();
  }, 2000);
  return () => clearInterval(timer);
}
