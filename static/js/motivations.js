/* Motivations page: create and edit per kind, enable/disable, trigger now, delete; the history grows live. */
"use strict";
(function () {
  const {api, act, events, el} = window.Loom;
  const table = document.getElementById("motivations-table");
  const history = document.getElementById("history");
  const historyTotal = document.getElementById("history-total");
  const form = document.getElementById("motivation-form");
  const projectNames = JSON.parse(document.getElementById("project-names").textContent || "{}");
  let editing = null;  // the id of the motivation the form edits, or null for a new one

  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : "never"; }

  function addFiring(f) {
    if (history.querySelector('tr[data-firing-id="' + f.id + '"]')) return;
    const empty = history.querySelector("tr.empty");
    if (empty) empty.remove();
    const bead = f.bead_id ? [el("a", {href: "/beads/" + f.bead_id, text: "#" + f.bead_id})] : [];
    history.tBodies[0].prepend(el("tr", {"data-firing-id": f.id}, [
      el("td", {text: when(f.fired_at)}), el("td", {text: f.motivation_name || ""}),
      el("td", {}, [el("span", {class: "badge outcome-" + f.outcome, text: f.outcome})]),
      el("td", {text: f.project_id ? (projectNames[f.project_id] || "#" + f.project_id) : "—"}),
      el("td", {}, bead), el("td", {class: "muted", text: f.detail || ""})]));
    historyTotal.textContent = String(Number(historyTotal.textContent) + 1);
    const row = table.querySelector('tr[data-motivation-id="' + f.motivation_id + '"]');
    if (row && f.outcome !== "skipped") {
      row.querySelector('[data-field="last"]').textContent = when(f.fired_at);
      const count = row.querySelector('[data-field="count"]');
      count.textContent = String(Number(count.textContent) + 1);
    }
  }

  events.subscribe({types: ["motivation.fired"]});
  events.on(function (e) {
    if (e.type !== "motivation.fired" || !e.data) return;
    const d = e.data;
    addFiring({id: d.firing_id, motivation_id: d.motivation_id, motivation_name: d.name, outcome: d.outcome,
               detail: d.detail, fired_at: d.fired_at || e.ts, project_id: e.project_id, bead_id: e.bead_id});
  });
  events.onReset(function () { window.location.reload(); });

  table.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr");
    const id = row.dataset.motivationId;
    const motivation = JSON.parse(row.dataset.motivation);
    if (button.dataset.action === "trigger") {
      const body = {};
      const chosen = document.getElementById("trigger-project").value;
      if (!motivation.project_id && chosen) body.project_id = Number(chosen);
      const firing = await act(button, function () {
        return api("POST", "/motivations/" + id + "/trigger", body);
      }, "Fired");
      addFiring(firing);
    } else if (button.dataset.action === "delete") {
      if (!window.confirm("Delete the motivation \u201c" + motivation.name + "\u201d? Its history goes with it.")) return;
      await act(button, function () { return api("DELETE", "/motivations/" + id); }, "Deleted");
      row.remove();
    } else if (button.dataset.action === "edit") {
      fill(motivation);
    }
  });

  table.addEventListener("change", async function (event) {
    const box = event.target.closest('input[data-action="toggle"]');
    if (!box) return;
    const row = box.closest("tr");
    try {
      const saved = await act(box, function () {
        return api("PATCH", "/motivations/" + row.dataset.motivationId, {enabled: box.checked});
      }, box.checked ? "Enabled" : "Disabled");
      row.dataset.motivation = JSON.stringify(saved);  // the edit form starts from what is saved
    } catch (err) {
      box.checked = !box.checked;
    }
  });

  if (!form) return;
  const field = function (name) { return form.elements.namedItem(name); };

  function showKind() {
    const kind = field("kind").value;
    form.querySelectorAll("fieldset[data-kind]").forEach(function (set) { set.hidden = set.dataset.kind !== kind; });
  }
  field("kind").addEventListener("change", showKind);

  function fill(m) {
    editing = m.id;
    field("name").value = m.name;
    field("kind").value = m.kind;
    field("cooldown_s").value = m.cooldown_s;
    if (m.interval_s) field("interval_s").value = m.interval_s;
    if (m.cron) field("cron").value = m.cron;
    if (m.event) field("event").value = m.event;
    if (m.idle_minutes) field("idle_minutes").value = m.idle_minutes;
    if (m.threshold) {
      field("metric").value = m.threshold.metric;
      field("op").value = m.threshold.op || ">";
      field("value").value = m.threshold.value;
    }
    field("project_id").value = m.project_id || "";
    field("persona").value = m.persona || "";
    const template = m.bead_template || {};
    field("title").value = template.title || "";
    field("bead_description").value = template.description || "";
    field("priority").value = String(template.priority === undefined ? 2 : template.priority);
    field("type").value = template.type || "task";
    field("description").value = m.description || "";
    field("wake_agent").checked = m.wake_agent;
    field("enabled").checked = m.enabled;
    document.getElementById("form-h").textContent = "Edit \u201c" + m.name + "\u201d";
    document.getElementById("m-submit").textContent = "Save changes";
    document.getElementById("m-cancel").style.display = "";
    showKind();
    form.scrollIntoView({behavior: "smooth"});
  }

  document.getElementById("m-cancel").addEventListener("click", function () { window.location.reload(); });

  function body() {
    const kind = field("kind").value;
    const out = {name: field("name").value.trim(), kind: kind, cooldown_s: Number(field("cooldown_s").value || 0),
                 project_id: field("project_id").value ? Number(field("project_id").value) : null,
                 persona: field("persona").value || null, wake_agent: field("wake_agent").checked,
                 enabled: field("enabled").checked, description: field("description").value};
    if (kind === "interval") out.interval_s = Number(field("interval_s").value);
    if (kind === "calendar") out.cron = field("cron").value.trim();
    if (kind === "event") out.event = field("event").value;
    if (kind === "idle") out.idle_minutes = Number(field("idle_minutes").value);
    if (kind === "threshold") {
      out.threshold = {metric: field("metric").value, op: field("op").value, value: Number(field("value").value)};
    }
    const title = field("title").value.trim();
    out.bead_template = title ? {title: title, description: field("bead_description").value,
                                 priority: Number(field("priority").value), type: field("type").value} : null;
    return out;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const payload = body();
    const saved = await act(document.getElementById("m-submit"), function () {
      return editing ? api("PATCH", "/motivations/" + editing, payload) : api("POST", "/motivations", payload);
    }, editing ? "Saved" : "Motivation created");
    if (saved) window.location.reload();
  });
  showKind();
})();
