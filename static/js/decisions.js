/* Decisions inbox: decide with a rationale; new escalations appear live. */
"use strict";
(function () {
  const {api, act, events, el} = window.Loom;
  const waiting = document.getElementById("waiting");
  const count = document.getElementById("waiting-total");

  function bind(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = {decision: form.elements.decision.value};
      if (form.elements.rationale.value) body.rationale = form.elements.rationale.value;
      await act(form.querySelector("button"), function () {
        return api("POST", "/decisions/" + form.dataset.decisionId + "/decide", body);
      }, "Decided");
      const card = form.closest(".decision");
      const decided = document.getElementById("decided");
      decided.prepend(el("li", {}, [el("a", {href: "/beads/" + form.dataset.decisionId,
                                             text: "#" + form.dataset.decisionId}), " — ",
                                    el("strong", {text: body.decision})]));
      card.remove();
      count.textContent = String(Math.max(0, Number(count.textContent) - 1));
    });
  }
  document.querySelectorAll(".decide-form").forEach(bind);

  function card(bead) {
    const meta = bead.meta || {};
    const section = el("section", {class: "card decision", "data-decision-id": bead.id}, [
      el("h2", {}, [el("a", {href: "/beads/" + bead.id, text: "#" + bead.id}), " " + bead.title]),
      el("p", {text: meta.question || bead.description || ""})]);
    if ((meta.options || []).length) {
      section.appendChild(el("ol", {}, meta.options.map(function (o) { return el("li", {text: o}); })));
    }
    if (waiting.dataset.canDecide === "true") {
      const form = el("form", {class: "decide-form", "data-decision-id": bead.id}, [
        el("label", {for: "decision-" + bead.id, text: "Decision"}),
        el("input", {id: "decision-" + bead.id, name: "decision", required: true, maxLength: 4000}),
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
      const empty = waiting.querySelector(".empty");
      if (empty) empty.remove();
      api("GET", "/beads/" + e.bead_id).then(function (bead) {
        if (waiting.querySelector('.decision[data-decision-id="' + bead.id + '"]')) return;
        waiting.prepend(card(bead));
        count.textContent = String(Number(count.textContent) + 1);
      });
    } else if (e.type === "bead.closed") {
      const card = waiting.querySelector('.decision[data-decision-id="' + e.bead_id + '"]');
      if (card) { card.remove(); count.textContent = String(Math.max(0, Number(count.textContent) - 1)); }
    }
  });
})();
