/* The bead page's pair-programming panel: pause the loop, chat with the agent (its reply streams in over the
   websocket as pair.delta events, for every viewer of the bead), see what its actions did, hand the bead back. */
"use strict";
(function () {
  const {api, act, events, el, toast} = window.Loom;
  const panel = document.getElementById("pair");
  if (!panel) return;
  const beadId = Number(panel.dataset.beadId);
  const chat = document.getElementById("pair-chat");
  const form = document.getElementById("pair-form");
  const box = document.getElementById("pair-message");
  const send = document.getElementById("pair-send");
  const pauseButton = document.getElementById("pair-pause");
  const resumeButton = document.getElementById("pair-resume");
  const stateLine = document.getElementById("pair-state");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let state = "unknown", beadStatus = "", running = false, sending = false;

  function replyId(runId, seq) { return "pair-reply-" + runId + "-" + seq; }

  function short(value, n) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text && text.length > n ? text.slice(0, n) + "…" : (text || "");
  }

  function refreshControls() {
    const closed = beadStatus === "closed" || beadStatus === "blocked";
    box.disabled = send.disabled = running || sending || closed;
    panel.dataset.busy = String(running || sending);
    pauseButton.hidden = state !== "running";
    resumeButton.hidden = state !== "paused";
  }

  function setState(next, pausedBy) {
    state = next;
    panel.dataset.state = next;
    if (next === "paused") {
      stateLine.textContent = "Paused by " + (pausedBy || "someone") + ": the loop waits. Hand the bead back when " +
        "you are done.";
    } else if (next === "running") {
      stateLine.textContent = "The loop is working on this bead. Pause it to pair (it finishes its current step " +
        "first), or just send a message.";
    } else if (beadStatus === "closed") {
      stateLine.textContent = "This bead is closed.";
    } else if (beadStatus === "blocked") {
      stateLine.textContent = "This bead is blocked: unblock it to pair on it.";
    } else {
      stateLine.textContent = "No loop runs on this bead. Send a message to start pairing: the bead is claimed " +
        "for an agent and held for you.";
    }
    refreshControls();
  }

  function setRunning(value) { running = value; refreshControls(); }

  function resultList(results) {
    const list = el("ul", {class: "results"});
    (results || []).forEach(function (r) {
      const line = el("li", {class: "result-" + (r.status || "ok")}, [r.type + (r.output ? ": " + short(r.output.split("\n")[0], 160) : "")]);
      if (r.output && r.output.indexOf("\n") >= 0) {
        line.appendChild(el("details", {}, [el("summary", {text: "output"}), el("pre", {text: short(r.output, 8000)})]));
      }
      list.appendChild(line);
    });
    return list;
  }

  /** The person's message and the agent's reply bubble for one pair turn (created once). */
  function turn(runId, seq, author, message) {
    let reply = document.getElementById(replyId(runId, seq));
    if (!reply) {
      if (message !== undefined) {
        chat.appendChild(el("li", {class: "msg human"}, [el("strong", {text: (author || "someone") + ": "}), message]));
      }
      reply = el("li", {class: "msg agent streaming", id: replyId(runId, seq), "data-seq": seq}, [
        el("strong", {text: "agent"}), el("div", {class: "stream", "data-field": "stream", "aria-label": "reply"})]);
      chat.appendChild(reply);
      chat.scrollTop = chat.scrollHeight;
    }
    return reply;
  }

  function finish(reply, notes, results, error) {
    reply.classList.remove("streaming");
    reply.classList.add("finished");
    reply.querySelectorAll(".results, .notes, .error").forEach(function (n) { n.remove(); });
    const stream = reply.querySelector('[data-field="stream"]');
    if (stream && !stream.closest("details")) {  // the raw reply folds away once it has been read as actions
      const raw = el("details", {class: "raw"}, [el("summary", {text: "LLM reply"})]);
      stream.replaceWith(raw);
      raw.appendChild(stream);
    }
    if (notes) reply.appendChild(el("p", {class: "notes", text: notes}));
    if (error) reply.appendChild(el("p", {class: "error", text: error}));
    if (results && results.length) reply.appendChild(resultList(results));
    const raw = reply.querySelector("details.raw");
    if (raw) reply.appendChild(raw);  // last: notes and results first
    chat.scrollTop = chat.scrollHeight;
  }

  function renderStep(step) {
    const reply = turn(step.run_id, step.seq, step.author, step.request);
    reply.querySelector('[data-field="stream"]').textContent = step.response || "";
    finish(reply, step.notes, step.results, step.parse_error ? "Unreadable reply: " + step.parse_error : null);
  }

  async function load() {
    const data = await api("GET", "/beads/" + beadId + "/pair?limit=500");
    chat.textContent = "";
    data.items.forEach(renderStep);
    beadStatus = data.bead_status;
    setState(data.state, data.paused_by);
  }

  events.on(function (e) {
    if (e.bead_id !== beadId) return;
    const d = e.data || {};
    const shown = e.type.startsWith("pair.") && document.getElementById(replyId(d.run_id, d.seq));
    if ((e.type === "pair.started" || e.type === "pair.delta") && shown && shown.classList.contains("finished")) {
      return;  // replayed after the transcript already showed this turn whole
    }
    if (e.type === "pair.started") {
      turn(d.run_id, d.seq, d.author, d.message);
      setRunning(true);
    } else if (e.type === "pair.delta") {
      const stream = turn(d.run_id, d.seq).querySelector('[data-field="stream"]');
      stream.textContent += d.text || "";
      stream.scrollTop = stream.scrollHeight;
    } else if (e.type === "pair.finished") {
      finish(turn(d.run_id, d.seq), d.notes, d.results, d.error ? d.error.message : null);
      setRunning(false);
    } else if (e.type === "pair.paused") {
      setState("paused", d.paused_by);
    } else if (e.type === "pair.resumed") {
      setState("running");
    } else if (e.type === "run.started") {
      if (state !== "paused") setState("running");
    } else if (e.type === "run.finished") {
      setRunning(false);
      setState("none");
    } else if (e.type === "bead.status_changed") {
      beadStatus = d.to;
      setState(state === "unknown" ? "none" : state, null);
    }
  });
  events.onReset(function () { load(); });

  /** POST /pair and read its event stream to the end: the text itself arrives over the websocket. */
  async function pairTurn(message) {
    const response = await fetch("/api/v1/pair", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": csrf},
      body: JSON.stringify({bead_id: beadId, message: message})});
    if (!response.ok) {
      let error = null;
      try { error = (await response.json()).error; } catch (e) { error = null; }
      throw new Error(error ? error.message : "HTTP " + response.status);
    }
    box.value = "";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", failure = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const name = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (!name || !data) continue;
        const payload = JSON.parse(data);
        if (name === "error") failure = payload.message;
        if (name === "done" && !document.getElementById(replyId(payload.step.run_id, payload.step.seq))) {
          renderStep(payload.step);  // the websocket missed this turn: show it from the answer
        }
      }
    }
    if (failure) throw new Error(failure);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const message = box.value.trim();
    if (!message || running || sending) return;
    sending = true;
    refreshControls();
    try {
      await pairTurn(message);
    } catch (err) {
      toast("Pair turn: " + err.message, "error");
    } finally {
      sending = false;
      refreshControls();
      if (!box.disabled) box.focus();
    }
  });

  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  pauseButton.addEventListener("click", async function () {
    const answer = await act(pauseButton, function () { return api("POST", "/beads/" + beadId + "/pause"); },
                             "Paused: the loop stops after its current step");
    setState(answer.state, answer.paused_by);
  });
  resumeButton.addEventListener("click", async function () {
    const answer = await act(resumeButton, function () { return api("POST", "/beads/" + beadId + "/resume"); },
                             "Handed back to the loop");
    setState(answer.state, answer.paused_by);
  });

  load().then(function () { if (location.hash === "#pair" && !box.disabled) box.focus(); })
        .catch(function (err) { stateLine.textContent = "Could not load the pair state: " + err.message; });
})();
