/* The beads board: cards move between columns live; the create form posts to the API. */
"use strict";
(function () {
  const {api, act, events, el, formJSON} = window.Loom;
  const filters = JSON.parse(document.getElementById("board-filters").textContent);
  const board = document.getElementById("board");
  const agentNames = JSON.parse(document.getElementById("board-agents").textContent);
  function agentName(id) { return agentNames[id] || "agent " + id; }

  function column(status) { return board.querySelector('.column[data-status="' + status + '"] .cards'); }
  function total(status, delta) {
    const badge = board.querySelector('[data-total="' + status + '"]');
    if (badge) badge.textContent = String(Math.max(0, Number(badge.textContent) + delta));
  }

  function matches(bead) {
    if (filters.project_id && bead.project_id !== filters.project_id) return false;
    if (filters.priority !== null && filters.priority !== undefined && bead.priority !== filters.priority) return false;
    if (filters.type && bead.type !== filters.type) return false;
    if (filters.tag && !(bead.tags || []).includes(filters.tag)) return false;
    if (filters.assigned_to && bead.assigned_to !== filters.assigned_to) return false;
    return true;
  }

  function card(bead) {
    const meta = el("span", {class: "meta"}, [
      el("span", {class: "badge prio-" + bead.priority, "data-field": "priority", text: "P" + bead.priority}),
      el("span", {class: "badge", "data-field": "type", text: bead.type})]);
    (bead.tags || []).forEach(function (t) { meta.appendChild(el("span", {class: "badge", text: t})); });
    if (bead.blocked_by && bead.blocked_by.length) {
      meta.appendChild(el("span", {title: "blocked by", text: "after #" + bead.blocked_by.join(", #")}));
    }
    meta.appendChild(el("span", {"data-field": "assignee", text: bead.assigned_to ? agentName(bead.assigned_to) : ""}));
    return el("a", {class: "bead-card flash", href: "/beads/" + bead.id, "data-bead-id": bead.id,
                    "data-project-id": bead.project_id}, [
      el("strong", {text: "#" + bead.id}), " ", el("span", {"data-field": "title", text: bead.title}), meta]);
  }

  function findCard(id) { return board.querySelector('.bead-card[data-bead-id="' + id + '"]'); }

  events.on(function (e) {
    const data = e.data || {};
    if (e.type === "bead.created") {
      const bead = Object.assign({id: e.bead_id, project_id: e.project_id}, data);
      if (!matches(bead) || findCard(bead.id)) return;
      column(bead.status || "open").prepend(card(bead));
      total(bead.status || "open", 1);
    } else if (e.type === "bead.status_changed") {
      let node = findCard(e.bead_id);
      if (!node) {
        const bead = Object.assign({id: e.bead_id, project_id: e.project_id, tags: []}, data);
        if (!data.title || !matches(bead)) return;
        node = card(bead);
        total(data.to, 1);
      } else {
        const from = node.closest(".column").dataset.status;
        total(from, -1);
        total(data.to, 1);
        node.classList.remove("flash");
        void node.offsetWidth;  // restart the highlight
        node.classList.add("flash");
      }
      const assignee = node.querySelector('[data-field="assignee"]');
      if (assignee) assignee.textContent = data.to === "in_progress" && (data.assigned_to || e.agent_id)
        ? agentName(data.assigned_to || e.agent_id) : assignee.textContent;
      column(data.to).prepend(node);
    } else if (e.type === "bead.updated") {
      const node = findCard(e.bead_id);
      if (node && data.title) node.querySelector('[data-field="title"]').textContent = data.title;
    } else if (e.type === "bead.deleted") {
      const node = findCard(e.bead_id);
      if (node) { total(node.closest(".column").dataset.status, -1); node.remove(); }
    }
  });
  events.onReset(function () { window.location.reload(); });

  const form = document.getElementById("bead-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const raw = formJSON(form);
      const body = {project_id: Number(raw.project_id), title: raw.title, priority: Number(raw.priority),
                    type: raw.type};
      if (raw.description) body.description = raw.description;
      if (raw.acceptance) body.acceptance = raw.acceptance;
      if (raw.tags) body.tags = raw.tags.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
      if (raw.blocked_by) {
        body.blocked_by = raw.blocked_by.split(/[\s,]+/).filter(Boolean).map(function (x) {
          return Number(x.replace(/^#/, ""));
        });
      }
      const bead = await act(form.querySelector("button[type=submit]"),
                             function () { return api("POST", "/beads", body); }, null);
      Loom.toast("Created bead #" + bead.id, "ok");
      form.elements.title.value = "";
      form.elements.description.value = "";
      form.elements.blocked_by.value = "";
    });
  }
})();
