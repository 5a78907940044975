/* A bead's page: the step timeline streams live (tokens as they arrive), status and buttons follow events. */
"use strict";
(function () {
  const {api, act, events, el, toast} = window.Loom;
  const data = JSON.parse(document.getElementById("bead-data").textContent);
  const bead = data.bead;
  const timeline = document.getElementById("timeline");
  events.subscribe({project_id: bead.project_id});  // this bead, and its neighbours' statuses

  function short(value, n) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > n ? text.slice(0, n) + "…" : text;
  }

  function describe(action) {
    if (!action || typeof action !== "object") return String(action);
    const main = action.path || action.command || action.message || action.title || action.reason || action.text ||
                 action.query || "";
    return action.type + (main ? " " + short(main, 120) : "");
  }

  function stepKey(runId, seq) { return "step-" + runId + "-" + seq; }

  function renderStep(step) {
    const failed = (step.results || []).some(function (r) { return r.status === "error"; }) || step.parse_error;
    const item = el("li", {id: stepKey(step.run_id, step.seq),
                           class: (step.kind === "pair" ? "pair " : "") + (failed ? "error" : "")}, [
      el("div", {class: "head"}, [
        el("strong", {text: (step.kind === "pair" ? "Pair turn " : "Turn ") + step.seq +
                            (step.author ? " · " + step.author : "")}),
        el("span", {text: [step.model, (step.prompt_tokens || 0) + "+" + (step.completion_tokens || 0) + " tokens",
                           step.latency_ms ? Math.round(step.latency_ms) + " ms" : ""].filter(Boolean).join(" · ")}),
      ]),
    ]);
    if (step.notes) item.appendChild(el("p", {text: step.notes}));
    if (step.parse_error) item.appendChild(el("p", {class: "error", text: "Unreadable reply: " + step.parse_error}));
    const results = el("ul", {class: "results"});
    (step.actions || []).forEach(function (action, i) {
      const result = (step.results || [])[i] || {};
      const line = el("li", {class: "result-" + (result.status || "ok")}, [describe(action)]);
      if (result.output) {
        line.appendChild(el("details", {}, [el("summary", {text: "output"}),
                                            el("pre", {text: short(result.output, 8000)})]));
      }
      results.appendChild(line);
    });
    item.appendChild(results);
    item.appendChild(el("details", {}, [el("summary", {text: "LLM reply"}), el("pre", {text: step.response || ""})]));
    return item;
  }

  function runningItem(runId, seq) {
    let item = document.getElementById(stepKey(runId, seq));
    if (!item) {
      item = el("li", {id: stepKey(runId, seq), class: "running"}, [
        el("div", {class: "head"}, [el("strong", {text: "Turn " + seq}), el("span", {text: "thinking…"})]),
        el("div", {class: "stream", "data-field": "stream", "aria-label": "streamed reply"})]);
      timeline.appendChild(item);
      document.getElementById("no-steps").hidden = true;
    }
    return item;
  }

  data.steps.forEach(function (step) { timeline.appendChild(renderStep(step)); });

  async function refreshStep(runId, seq) {
    const page = await api("GET", "/beads/" + bead.id + "/steps?limit=500");
    document.getElementById("step-count").textContent = "(" + page.total + ")";
    const step = page.items.find(function (s) { return s.run_id === runId && s.seq === seq; });
    if (!step) return;
    const fresh = renderStep(step);
    const old = document.getElementById(stepKey(runId, seq));
    if (old) old.replaceWith(fresh); else timeline.appendChild(fresh);
  }

  function setStatus(status, reason) {
    const badge = document.getElementById("bead-status");
    badge.textContent = status.replace("_", " ");
    badge.className = "badge status-" + status;
    bead.status = status;
    document.getElementById("bead-reason").textContent = reason || "";
    const actions = document.getElementById("bead-actions");
    if (!actions) return;
    actions.querySelectorAll("button").forEach(function (button) {
      const action = button.dataset.action;
      button.hidden = (action === "unblock" && status !== "blocked") || (action !== "unblock" && status === "closed");
    });
  }

  events.on(function (e) {
    if (e.type === "bead.status_changed" && e.bead_id !== bead.id) {
      document.querySelectorAll('[data-graph-bead="' + e.bead_id + '"]').forEach(function (badge) {
        badge.textContent = e.data.to.replace("_", " ");
        badge.className = "badge status-" + e.data.to;
      });
    }
    if (e.bead_id !== bead.id) return;
    const d = e.data || {};
    if (e.type === "step.started") runningItem(d.run_id, d.seq);
    else if (e.type === "llm.delta") {
      const stream = runningItem(d.run_id, d.seq).querySelector('[data-field="stream"]');
      if (stream) { stream.textContent += d.text || ""; stream.scrollTop = stream.scrollHeight; }
    } else if (e.type === "step.finished") refreshStep(d.run_id, d.seq);
    else if (e.type === "bead.status_changed") {
      setStatus(d.to, d.reason);
      const who = document.getElementById("bead-assignee");
      const agent = data.agents[d.assigned_to || e.agent_id];
      who.textContent = d.to === "in_progress" ? "agent " + (agent ? agent.name : (d.assigned_to || e.agent_id)) : "";
    } else if (e.type === "run.started" || e.type === "run.finished") {
      const list = document.getElementById("runs");
      const empty = list.querySelector(".empty");
      if (empty) empty.remove();
      let row = list.querySelector('[data-run-id="' + d.run_id + '"]');
      if (!row) { row = el("li", {"data-run-id": d.run_id}); list.appendChild(row); }
      const agent = data.agents[e.agent_id];
      row.textContent = "run " + d.run_id + " · " + (agent ? agent.name : "agent " + e.agent_id) + " · " +
        (d.status || "running") + (d.iterations !== undefined ? " · " + d.iterations + " steps" : "") +
        (d.reason ? " (" + d.reason + ")" : "");
    } else if (e.type === "bead.commented") {
      const list = document.getElementById("comments");
      const empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.appendChild(el("li", {}, [el("strong", {text: d.author}), " ",
                                     el("span", {class: "muted", text: (e.ts || "").slice(0, 16)}),
                                     el("div", {class: "stream", text: d.text})]));
    }
  });
  events.onReset(function () { window.location.reload(); });

  const actions = document.getElementById("bead-actions");
  if (actions) {
    actions.addEventListener("click", async function (event) {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const action = button.dataset.action;
      if (action === "escalate") {
        const form = document.getElementById("escalate-form");
        form.hidden = !form.hidden;
        if (!form.hidden) form.elements.reason.focus();
        return;
      }
      let body = {};
      if (action === "close") {
        const reason = prompt("Why is this bead closed?", "done");
        if (reason === null) return;
        body = {reason: reason};
      }
      const updated = await act(button, function () { return api("POST", "/beads/" + bead.id + "/" + action, body); },
                                action === "redispatch" ? "Back in the queue" : "Done");
      setStatus(updated.status, updated.status_reason);
    });
  }

  const escalate = document.getElementById("escalate-form");
  if (escalate) {
    escalate.addEventListener("submit", async function (event) {
      event.preventDefault();
      const options = escalate.elements.options.value.split("\n").map(function (o) { return o.trim(); }).filter(Boolean);
      const body = {reason: escalate.elements.reason.value};
      if (escalate.elements.question.value) body.question = escalate.elements.question.value;
      if (options.length) body.options = options;
      const decision = await act(escalate.querySelector("button"), function () {
        return api("POST", "/beads/" + bead.id + "/escalate", body);
      }, null);
      toast("Decision #" + decision.id + " created", "ok");
      escalate.hidden = true;
    });
  }

  document.querySelectorAll(".decide-form").forEach(function (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = {decision: form.elements.decision.value};
      if (form.elements.rationale.value) body.rationale = form.elements.rationale.value;
      await act(form.querySelector("button"), function () {
        return api("POST", "/decisions/" + form.dataset.decisionId + "/decide", body);
      }, "Decided");
      form.replaceWith(el("p", {}, [el("strong", {text: "Decided: "}), body.decision]));
    });
  });

  const comment = document.getElementById("comment-form");
  if (comment) {
    comment.addEventListener("submit", async function (event) {
      event.preventDefault();
      await act(comment.querySelector("button"), function () {
        return api("POST", "/beads/" + bead.id + "/comments", {text: comment.elements.text.value});
      }, null);
      comment.reset();
    });
  }
})();
