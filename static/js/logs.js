/* Logs page: new entries arrive live (log.created events), filtered like the page. */
"use strict";
(function () {
  const {events, el} = window.Loom;
  const filters = JSON.parse(document.getElementById("log-filter-data").textContent);
  const rows = document.getElementById("log-rows");
  const follow = document.getElementById("follow");
  events.subscribe({types: ["log.created"]});
  events.on(function (e) {
    if (e.type !== "log.created" || !follow.checked) return;
    const entry = e.data || {};
    if (filters.level && entry.level !== filters.level) return;
    if (filters.source && entry.source !== filters.source) return;
    if (filters.bead_id && entry.bead_id !== filters.bead_id) return;
    const empty = rows.querySelector(".empty");
    if (empty) empty.remove();
    const bead = el("td");
    if (entry.bead_id) bead.appendChild(el("a", {href: "/beads/" + entry.bead_id, text: "#" + entry.bead_id}));
    rows.prepend(el("tr", {class: "level-" + entry.level}, [
      el("td", {text: (entry.ts || "").slice(0, 19)}), el("td", {text: entry.level}), el("td", {text: entry.source}),
      el("td", {text: entry.message}), bead]));
    while (rows.children.length > 500) rows.lastElementChild.remove();
  });
})();
