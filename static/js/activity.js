/* Activity feed: new lines appear on top and aggregated lines update their count, live, within the filters. */
"use strict";
(function () {
  const {events, el, timeAgo} = window.Loom;
  const list = document.getElementById("activity");
  const total = document.getElementById("activity-total");
  const want = list.dataset;
  const projects = JSON.parse(want.projects || "{}");

  function matches(line) {
    return (!want.projectId || String(line.project_id) === want.projectId) &&
           (!want.type || line.type === want.type) && (!want.actor || line.actor === want.actor);
  }

  function render(line) {
    const summary = line.bead_id ? el("a", {href: "/beads/" + line.bead_id, text: line.summary})
                                 : document.createTextNode(line.summary);
    const item = el("li", {class: "activity-item", "data-activity-id": line.id}, [
      el("span", {class: "etype", text: line.type}), " ", el("span", {class: "summary"}, [summary]), " "]);
    if (line.count > 1) item.appendChild(el("span", {class: "badge count-badge", text: "×" + line.count}));
    if (line.project_id) item.appendChild(el("span", {class: "muted", text: " " + (projects[line.project_id] || "#" + line.project_id)}));
    item.appendChild(el("time", {class: "muted", datetime: line.last_at, text: " " + timeAgo(line.last_at)}));
    return item;
  }

  document.querySelectorAll(".activity-item time").forEach(function (t) { t.textContent = timeAgo(t.dateTime); });
  if (want.live !== "true") return;
  events.on(function (event) {
    if (event.type !== "activity.created" && event.type !== "activity.updated") return;
    const line = event.data;
    if (!line || !matches(line)) return;
    const old = list.querySelector('[data-activity-id="' + line.id + '"]');
    if (old) old.remove();
    else if (event.type === "activity.created") total.textContent = String(Number(total.textContent) + 1);
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(render(line));
    while (list.children.length > 200) list.lastElementChild.remove();
  });
})();
