/* Persona editor: PUT /personas/{name}. */
"use strict";
(function () {
  const {api, act} = window.Loom;
  const form = document.getElementById("persona-form");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const f = form.elements;
    const body = {title: f.title.value, role: f.role.value, description: f.description.value,
                  instructions: f.instructions.value,
                  hints: f.hints.value.split(",").map(function (h) { return h.trim(); }).filter(Boolean)};
    await act(form.querySelector("button"), function () {
      return api("PUT", "/personas/" + encodeURIComponent(form.dataset.name), body);
    }, "Persona saved");
  });
})();
