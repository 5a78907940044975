/* Notifications: new ones appear live, mark read (one or all), and the preferences form. */
"use strict";
(function () {
  const {api, act, events, el, timeAgo, setUnread} = window.Loom;
  const list = document.getElementById("notifications");
  const pageUnread = document.getElementById("page-unread");
  const readAll = document.getElementById("read-all");

  function showUnread(n) {
    pageUnread.textContent = String(n);
    readAll.disabled = n === 0;
    setUnread(n);
  }

  function markedRead(id) {
    const item = list.querySelector('[data-notification-id="' + id + '"]');
    if (!item) return;
    item.classList.remove("unread-item");
    const button = item.querySelector(".mark-read");
    if (button) button.remove();
  }

  function bindMarkRead(button) {
    button.addEventListener("click", async function () {
      const id = button.dataset.notificationId;
      await act(button, function () { return api("POST", "/notifications/" + id + "/read"); });
      markedRead(id);
      const data = await api("GET", "/notifications?limit=1");
      showUnread(data.unread);
    });
  }
  list.querySelectorAll(".mark-read").forEach(bindMarkRead);
  list.querySelectorAll("time").forEach(function (t) { t.textContent = timeAgo(t.dateTime); });

  readAll.addEventListener("click", async function () {
    const result = await act(readAll, function () { return api("POST", "/notifications/read-all"); },
                             "All marked read");
    list.querySelectorAll(".unread-item").forEach(function (item) { markedRead(item.dataset.notificationId); });
    showUnread(result.unread);
  });

  function render(n) {
    const title = n.link ? el("a", {href: n.link, class: "title", text: n.title}) : el("span", {class: "title", text: n.title});
    const button = el("button", {type: "button", class: "quiet mark-read", "data-notification-id": n.id, text: "Mark read"});
    bindMarkRead(button);
    const children = [el("span", {class: "badge", text: n.type}), " ", title];
    if (n.body) children.push(el("div", {class: "muted body", text: n.body}));
    children.push(el("time", {class: "muted", datetime: n.created_at, text: " " + timeAgo(n.created_at) + " "}), button);
    return el("li", {class: "notification unread-item", "data-notification-id": n.id}, children);
  }

  events.on(function (event) {
    if (!event.type.startsWith("notification.") || !event.data) return;
    if (typeof event.data.unread === "number") showUnread(event.data.unread);
    if (event.type === "notification.created" && event.data.notification) {
      if (list.querySelector('[data-notification-id="' + event.data.notification.id + '"]')) return;
      const empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.prepend(render(event.data.notification));
    } else if (event.type === "notification.read") {
      if (event.data.all) list.querySelectorAll(".unread-item").forEach(function (i) { markedRead(i.dataset.notificationId); });
      (event.data.ids || []).forEach(markedRead);
    }
  });

  const form = document.getElementById("prefs-form");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const boxes = Array.from(form.querySelectorAll('input[name="types"]'));
    const checked = boxes.filter(function (i) { return i.checked; }).map(function (i) { return i.value; });
    const types = checked.length === boxes.length ? null : checked;  // null: every type, new ones too
    const body = {types: types, min_priority: Number(form.elements.min_priority.value),
                  quiet_start: form.elements.quiet_start.value || null, quiet_end: form.elements.quiet_end.value || null,
                  webhook_url: form.elements.webhook_url.value || null,
                  webhook_enabled: form.elements.webhook_enabled.checked};
    if (form.elements.webhook_secret.value) body.webhook_secret = form.elements.webhook_secret.value;
    const saved = await act(form.querySelector('button[type="submit"]'), function () {
      return api("PUT", "/notifications/preferences", body);
    }, "Preferences saved");
    form.elements.webhook_secret.value = "";
    const box = document.getElementById("new-secret");
    if (saved.webhook_secret) {
      box.hidden = false;
      box.textContent = "Your webhook secret (shown once; your receiver checks X-Loom-Signature with it): " +
        saved.webhook_secret;
    } else box.hidden = true;
  });
})();
