/* Projects page: create a project, change its git strategy. */
"use strict";
(function () {
  const {api, act, formJSON} = window.Loom;
  const form = document.getElementById("project-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = formJSON(form);
      const project = await act(form.querySelector("button"), function () { return api("POST", "/projects", body); },
                                null);
      Loom.toast("Project " + project.name + " created with its team", "ok");
      window.location.assign("/beads?project_id=" + project.id);
    });
  }
  document.querySelectorAll(".strategy-form").forEach(function (f) {
    f.addEventListener("submit", async function (event) {
      event.preventDefault();
      await act(f.querySelector("button"), function () {
        return api("PATCH", "/projects/" + f.dataset.projectId, {git_strategy: f.elements.git_strategy.value});
      }, "Saved");
    });
  });
})();
