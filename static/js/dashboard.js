/* Dashboard: counts, agents, providers, Ralph and the activity feed follow the live event stream. */
"use strict";
(function () {
  const {events, el} = window.Loom;
  const feed = document.getElementById("feed");
  const FEED = new Set(["bead.created", "bead.closed", "bead.blocked", "bead.claimed", "run.finished",
                        "agent.status_changed", "provider.health", "ralph.action", "activity.created",
                        "bead.commented"]);

  function bump(scope, status, delta) {
    scope.querySelectorAll('[data-count="' + status + '"]').forEach(function (node) {
      node.textContent = String(Math.max(0, Number(node.textContent) + delta));
    });
  }

  function addToFeed(e) {
    const empty = feed.querySelector(".empty");
    if (empty) empty.remove();
    const data = e.data || {};
    const item = el("li", {"data-event-id": e.id}, [
      el("time", {datetime: e.ts, text: (e.ts || "").slice(11, 19)}), " ",
      el("span", {class: "etype", text: e.type}), " ",
    ]);
    if (e.bead_id) item.appendChild(el("a", {href: "/beads/" + e.bead_id, text: "#" + e.bead_id}));
    item.appendChild(el("span", {class: "muted", text: " " + (data.title || data.message || data.summary ||
                                                                data.status || "")}));
    feed.prepend(item);
    while (feed.children.length > 50) feed.lastElementChild.remove();
  }

  events.on(function (e) {
    const data = e.data || {};
    if (e.type === "bead.created") {
      bump(document.querySelector(".counts"), "open", 1);
      const row = document.querySelector('tr[data-project-id="' + e.project_id + '"]');
      if (row) bump(row, "open", 1);
    }
    if (e.type === "bead.status_changed" && data.from && data.to) {
      [document.querySelector(".counts"), document.querySelector('tr[data-project-id="' + e.project_id + '"]')]
        .forEach(function (scope) { if (scope) { bump(scope, data.from, -1); bump(scope, data.to, 1); } });
    }
    if (e.type === "agent.status_changed" && e.agent_id) {
      const row = document.querySelector('tr[data-agent-id="' + e.agent_id + '"]');
      if (row && data.status) {
        const badge = row.querySelector('[data-field="status"]');
        badge.textContent = data.status;
        badge.className = "badge status-" + data.status;
        if ("bead_id" in data) {
          const cell = row.querySelector('[data-field="bead"]');
          cell.textContent = "";
          if (data.bead_id) cell.appendChild(el("a", {href: "/beads/" + data.bead_id, text: "#" + data.bead_id}));
        }
      }
    }
    if (e.type === "provider.health") {
      const key = data.provider_id === null || data.provider_id === undefined ? "env" : String(data.provider_id);
      const item = document.querySelector('[data-provider="' + key + '"]');
      if (item) {
        const badge = item.querySelector('[data-field="status"]');
        badge.textContent = data.status;
        badge.className = "badge health-" + data.status;
        if (data.latency_ms !== undefined && data.latency_ms !== null) {
          item.querySelector('[data-field="latency"]').textContent = Math.round(data.latency_ms) + " ms";
        }
      }
    }
    if (e.type === "ralph.tick") {
      const ralph = document.getElementById("ralph");
      ralph.dataset.last = e.ts;
      ralph.textContent = "last tick " + (e.ts || "").slice(11, 19) + " UTC (" + (data.duration_ms || 0) + " ms)";
    }
    if (FEED.has(e.type)) addToFeed(e);
  });
  events.onReset(function () { window.location.reload(); });
})();
