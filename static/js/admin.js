/* Admin page: roles, enable/disable, new users, revoke keys. */
"use strict";
(function () {
  const {api, act, formJSON} = window.Loom;
  const users = document.getElementById("users-table");
  users.addEventListener("change", async function (event) {
    const row = event.target.closest("tr");
    if (!row) return;
    let body = null;
    if (event.target.classList.contains("role")) body = {role: event.target.value};
    if (event.target.classList.contains("active")) body = {is_active: event.target.checked};
    if (!body) return;
    try {
      await act(event.target, function () { return api("PATCH", "/users/" + row.dataset.userId, body); }, "Saved");
    } catch (err) {
      window.location.reload();
    }
  });
  document.getElementById("user-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const form = event.target;
    await act(form.querySelector("button"), function () { return api("POST", "/users", formJSON(form)); },
              "User created");
    window.location.reload();
  });
  document.getElementById("all-keys").addEventListener("click", async function (event) {
    const button = event.target.closest("button.revoke");
    if (!button || !confirm("Revoke this key?")) return;
    await act(button, function () { return api("DELETE", "/auth/api-keys/" + button.dataset.id); }, "Revoked");
    button.replaceWith(document.createTextNode("revoked"));
  });
})();
