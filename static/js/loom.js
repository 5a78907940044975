/* Loom's page runtime: the JSON API with CSRF, the live event stream (websocket with resume), toasts. */
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const body = document.body;

  class ApiError extends Error {
    constructor(status, error) {
      super(error && error.message ? error.message : "HTTP " + status);
      this.status = status;
      this.code = error && error.code;
      this.field = error && error.field;
    }
  }

  /** Call the JSON API (`path` under /api/v1); resolves to the decoded body, rejects with ApiError. */
  async function api(method, path, payload) {
    const init = {method: method, credentials: "same-origin",
                  headers: {"Accept": "application/json", "X-CSRF-Token": csrf}};
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch("/api/v1" + path, init);
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      if (response.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); }
      throw new ApiError(response.status, data && data.error);
    }
    return data;
  }

  function toast(message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast " + (kind || "info");
    item.textContent = message;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, kind === "error" ? 8000 : 4000);
  }

  /** Run an API call from a button or form: disable it meanwhile, toast the outcome. */
  // A failed action already told the user (a toast); its rejection is not also an uncaught console error.
  window.addEventListener("unhandledrejection", function (event) {
    if (event.reason && event.reason.reported) event.preventDefault();
  });

  async function act(control, fn, okMessage) {
    if (control) control.disabled = true;
    try {
      const result = await fn();
      if (okMessage) toast(okMessage, "ok");
      return result;
    } catch (err) {
      toast(err.message + (err.field ? " (" + err.field + ")" : ""), "error");
      if (err && typeof err === "object") err.reported = true;  // shown: callers may let it go unhandled
      throw err;
    } finally {
      if (control) control.disabled = false;
    }
  }

  // ------------------------------------------------------------------ the live event stream
  // One websocket per page. Handlers get every event (pages filter); on reconnect the server replays
  // what was missed after the last id we saw; "stream.reset" means the gap was too long: reload data.
  const handlers = [];
  const resetHandlers = [];
  const status = document.getElementById("live-status");
  // Resume from the newest event the server knew when it rendered this page: nothing in between is lost.
  let socket = null, lastId = body.dataset.lastEventId || null, retry = 0, filter = {}, stopped = false;

  function setStatus(text, state) {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = lastId ? "?since=" + encodeURIComponent(lastId) : "";
    socket = new WebSocket(scheme + location.host + "/ws/events" + query);
    socket.onopen = function () {
      retry = 0;
      setStatus("live", "live");
      if (Object.keys(filter).length) socket.send(JSON.stringify({subscribe: filter}));
    };
    socket.onmessage = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.type === "stream.closed") {  // the login ended (logged out, disabled, key revoked): no reconnect
        stopped = true;
        setStatus("signed out", "down");
        window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (event.type === "stream.reset") { resetHandlers.forEach(function (h) { h(); }); }
      if (event.id) lastId = event.id;
      if (event.type === "stream.keepalive" || event.type === "stream.hello") return;
      handlers.forEach(function (h) {
        try { h(event); } catch (err) { console.error("event handler failed", err); }
      });
    };
    socket.onclose = function () {
      socket = null;
      if (stopped) return;
      setStatus("reconnecting…", "down");
      const delay = Math.min(10000, 500 * Math.pow(2, retry++)) * (0.75 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }

  const events = {
    /** Call `handler(event)` for every live event. */
    on: function (handler) { handlers.push(handler); },
    /** Called when the server could not replay the gap: refetch what the page shows. */
    onReset: function (handler) { resetHandlers.push(handler); },
    /** Narrow the stream server-side: {project_id?, bead_id?, types?: [...]}. */
    subscribe: function (f) {
      filter = f || {};
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({subscribe: filter}));
    },
    lastId: function () { return lastId; },
    socket: function () { return socket; },
    stop: function () { stopped = true; if (socket) socket.close(); },
  };

  // ------------------------------------------------------------------ small DOM helpers
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) {
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "href" ||
               key === "type" || key === "for" || key === "id" || key === "title" || key === "name") {
        node.setAttribute(key, value === true ? "" : value);
      } else node[key] = value;
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function timeAgo(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return new Date(iso).toLocaleString();
  }

  function formJSON(form) {
    const out = {};
    new FormData(form).forEach(function (value, key) { if (value !== "") out[key] = value; });
    return out;
  }

  // Phone-width menu.
  const toggle = document.querySelector(".nav-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      document.getElementById("main-nav").classList.toggle("open", open);
    });
  }

  // The unread-notifications badge in the header stays live.
  const unread = document.getElementById("unread-count");
  function setUnread(n) {
    if (!unread) return;
    unread.dataset.count = String(n);
    unread.textContent = n > 0 ? String(n) : "";
  }
  events.on(function (event) {
    if (!unread || !event.type.startsWith("notification.")) return;
    const n = event.data && typeof event.data.unread === "number" ? event.data.unread : null;
    if (n !== null) setUnread(n);
    if (event.type === "notification.created" && event.data && event.data.title) toast(event.data.title, "info");
  });

  window.Loom = {api: api, act: act, toast: toast, events: events, el: el, timeAgo: timeAgo, formJSON: formJSON,
                 setUnread: setUnread, ApiError: ApiError, userId: Number(body.dataset.userId || 0)};
  if (body.dataset.userId) connect();
})();
