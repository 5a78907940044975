/* Providers page: live health, check now, add, remove. */
"use strict";
(function () {
  const {api, act, events, formJSON} = window.Loom;
  const table = document.getElementById("providers-table");

  function show(key, p) {
    const row = table.querySelector('tr[data-provider="' + key + '"]');
    if (!row) return;
    const badge = row.querySelector('[data-field="status"]');
    badge.textContent = p.status;
    badge.className = "badge health-" + p.status;
    row.querySelector('[data-field="latency"]').textContent =
      p.latency_ms !== null && p.latency_ms !== undefined ? Math.round(p.latency_ms) + " ms" : "—";
    row.querySelector('[data-field="checked"]').textContent = (p.last_checked_at || new Date().toISOString()).slice(0, 19);
    row.querySelector('[data-field="error"]').textContent = p.last_error || p.error || "";
  }

  events.subscribe({types: ["provider.health"]});
  events.on(function (e) {
    if (e.type !== "provider.health") return;
    const d = e.data || {};
    show(d.provider_id === null || d.provider_id === undefined ? "env" : String(d.provider_id), d);
  });

  table.addEventListener("click", async function (event) {
    const remove = event.target.closest("button.remove");
    if (remove) {
      if (!window.confirm("Remove the provider \u201c" + remove.dataset.name + "\u201d? The loop then uses the next " +
                          "one (or LOOM_PROVIDER_URL).")) return;
      await act(remove, function () { return api("DELETE", "/providers/" + remove.dataset.id); }, "Provider removed");
      remove.closest("tr").remove();
      return;
    }
    const button = event.target.closest("button.check");
    if (!button) return;
    const p = await act(button, function () { return api("POST", "/providers/" + button.dataset.id + "/check"); },
                        "Checked");
    show(String(p.id), p);
  });

  const form = document.getElementById("provider-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      await act(form.querySelector("button"), function () { return api("POST", "/providers", formJSON(form)); },
                "Provider added");
      window.location.reload();
    });
  }
})();
