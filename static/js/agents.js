/* Agents page: live status and current bead; pause/resume; create. */
"use strict";
(function () {
  const {api, act, events, el, formJSON} = window.Loom;
  const table = document.getElementById("agents-table");

  function show(row, status, beadId) {
    const badge = row.querySelector('[data-field="status"]');
    badge.textContent = status;
    badge.className = "badge status-" + status;
    row.querySelectorAll("button[data-action]").forEach(function (b) {
      b.hidden = (b.dataset.action === "pause") === (status === "paused");
    });
    if (beadId !== undefined) {
      const cell = row.querySelector('[data-field="bead"]');
      cell.textContent = "";
      if (beadId) cell.appendChild(el("a", {href: "/beads/" + beadId, text: "#" + beadId}));
    }
  }

  events.subscribe({types: ["agent.status_changed"]});
  events.on(function (e) {
    if (e.type !== "agent.status_changed") return;
    const row = table.querySelector('tr[data-agent-id="' + e.agent_id + '"]');
    if (row && e.data && e.data.status) show(row, e.data.status, "bead_id" in e.data ? e.data.bead_id : undefined);
    else if (!row && e.data && e.data.new) window.location.reload();
  });
  events.onReset(function () { window.location.reload(); });

  table.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr");
    const agent = await act(button, function () {
      return api("POST", "/agents/" + row.dataset.agentId + "/" + button.dataset.action);
    }, button.dataset.action === "pause" ? "Paused" : "Resumed");
    show(row, agent.status);
  });

  const form = document.getElementById("agent-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const raw = formJSON(form);
      const body = {name: raw.name, persona: raw.persona};
      if (raw.project_id) body.project_id = Number(raw.project_id);
      await act(form.querySelector("button"), function () { return api("POST", "/agents", body); }, "Agent created");
      window.location.reload();
    });
  }
})();
