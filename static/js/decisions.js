/* Decisions inbox: decide with a rationale; new escalations appear live, decided ones move to the list below
   (once each, whoever decided them: this page, another person, or a close). */
"use strict";
(function () {
  const {api, act, events, el} = window.Loom;
  const waiting = document.getElementById("waiting");
  const count = document.getElementById("waiting-total");
  const decided = document.getElementById("decided");
  const decidedTotal = document.getElementById("decided-total");

  function bump(node, by) { node.textContent = String(Math.max(0, Number(node.textContent) + by)); }

  function cardOf(id) { return waiting.querySelector('.decision[data-decision-id="' + id + '"]'); }

  function takeOut(id) {
    /* The card leaves the inbox (once: the page's own answer and the bead.closed event both come here). */
    const card = cardOf(id);
    if (!card) return;
    card.remove();
    bump(count, -1);
    if (!waiting.querySelector(".decision")) waiting.appendChild(el("p", {class: "card empty", text: "Nothing waits for a decision."}));
  }

  function showDecided(bead) {
    if (decided.querySelector('[data-decided-id="' + bead.id + '"]')) return;
    const meta = bead.meta || {};
    const placeholder = decided.querySelector(".empty");
    if (placeholder) placeholder.remove();
    const parts = [el("a", {href: "/beads/" + bead.id, text: "#" + bead.id}), " " + (bead.title || "") + " — ",
                   el("strong", {text: meta.decision || "closed without a decision"})];
    if (meta.rationale) parts.push(" ", el("span", {class: "muted", text: "(" + meta.rationale + ")"}));
    if (meta.decided_by) parts.push(" ", el("span", {class: "muted", text: "by " + meta.decided_by}));
    decided.prepend(el("li", {"data-decided-id": bead.id}, parts));
    bump(decidedTotal, 1);
  }

  function bind(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = {decision: form.elements.decision.value};
      if (form.elements.rationale.value) body.rationale = form.elements.rationale.value;
      const bead = await act(form.querySelector("button"), function () {
        return api("POST", "/decisions/" + form.dataset.decisionId + "/decide", body);
      }, "Decided");
      takeOut(form.dataset.decisionId);
      showDecided(bead && bead.id ? bead : {id: form.dataset.decisionId, meta: body});
    });
  }
  document.querySelectorAll(".decide-form").forEach(bind);

  function card(bead) {
    /* The same card the server renders: question, options (also offered as suggestions), who asked. */
    const meta = bead.meta || {};
    const section = el("section", {class: "card decision", "data-decision-id": bead.id}, [
      el("h2", {}, [el("a", {href: "/beads/" + bead.id, text: "#" + bead.id}), " " + bead.title]),
      el("p", {text: meta.question || bead.description || ""})]);
    const options = meta.options || [];
    if (options.length) section.appendChild(el("ol", {}, options.map(function (o) { return el("li", {text: o}); })));
    if (meta.escalated_from) {
      section.appendChild(el("p", {class: "muted"}, ["Asked by bead ", el("a", {href: "/beads/" + meta.escalated_from,
        text: "#" + meta.escalated_from}), ", which waits on it."]));
    }
    if (waiting.dataset.canDecide === "true") {
      const input = el("input", {id: "decision-" + bead.id, name: "decision", required: true, maxLength: 4000});
      input.setAttribute("list", "options-" + bead.id);
      const form = el("form", {class: "decide-form", "data-decision-id": bead.id}, [
        el("label", {for: "decision-" + bead.id, text: "Decision"}), input,
        el("datalist", {id: "options-" + bead.id}, options.map(function (o) { return el("option", {value: o}); })),
        el("label", {for: "rationale-" + bead.id, text: "Rationale"}),
        el("textarea", {id: "rationale-" + bead.id, name: "rationale", maxLength: 8000}),
        el("button", {type: "submit", text: "Decide"})]);
      bind(form);
      section.appendChild(form);
    }
    return section;
  }

  events.subscribe({types: ["bead.created", "bead.closed"]});
  events.on(function (e) {
    const d = e.data || {};
    if (e.type === "bead.created" && d.type === "decision") {
      api("GET", "/beads/" + e.bead_id).then(function (bead) {
        if (cardOf(bead.id) || bead.status !== "open") return;
        const empty = waiting.querySelector(".empty");
        if (empty) empty.remove();
        waiting.appendChild(card(bead));  // oldest first, as the server lists them
        bump(count, 1);
      }).catch(function () {});
    } else if (e.type === "bead.closed" && cardOf(e.bead_id)) {
      takeOut(e.bead_id);
      api("GET", "/beads/" + e.bead_id).then(showDecided).catch(function () {});
    }
  });
})();
