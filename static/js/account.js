/* Account page: create and revoke my API keys. */
"use strict";
(function () {
  const {api, act, el} = window.Loom;
  const form = document.getElementById("key-form");
  const shown = document.getElementById("new-key");
  const rows = document.getElementById("keys");

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const days = Number(form.elements.days.value || 0);
    const body = {name: name};
    if (days > 0) body.expires_at = new Date(Date.now() + days * 86400000).toISOString();
    const key = await act(form.querySelector("button"), function () { return api("POST", "/auth/api-keys", body); },
                          "Key created");
    shown.hidden = false;
    shown.textContent = "Your new key (shown only now): " + key.key;
    const empty = rows.querySelector(".empty");
    if (empty) empty.remove();
    rows.prepend(el("tr", {"data-id": key.id}, [
      el("td", {text: key.name}), el("td", {}, [el("code", {text: key.prefix})]),
      el("td", {text: key.expires_at || "never"}), el("td", {text: "—"}), el("td", {text: ""})]));
    form.reset();
  });

  rows.addEventListener("click", async function (event) {
    const button = event.target.closest("button.revoke");
    if (!button || !confirm("Revoke this key? Scripts using it stop working.")) return;
    await act(button, function () { return api("DELETE", "/auth/api-keys/" + button.dataset.id); }, "Key revoked");
    button.replaceWith(document.createTextNode("revoked"));
  });
})();
