// The login page of @buntime/plugin-authn: lists the configured providers
// (GET /_/auth/api/providers) as a link per `oidc` provider and a form per
// `email-password` one. Where to go afterwards (`?redirect=` or
// `?returnTo=`) is handed to the API untouched: the API checks it against
// the allow-list; this page never navigates to it itself.
(function () {
  "use strict";
  var query = new URLSearchParams(window.location.search);
  var redirect = query.get("redirect") || query.get("returnTo");
  var list = document.getElementById("providers");
  var status = document.getElementById("status");

  function item(children) {
    var li = document.createElement("li");
    children.forEach(function (c) { li.appendChild(c); });
    list.appendChild(li);
  }

  function text(tag, value) {
    var el = document.createElement(tag);
    el.textContent = value;
    return el;
  }

  function input(type, name, value, placeholder) {
    var el = document.createElement("input");
    el.type = type;
    el.name = name;
    if (value !== null) el.value = value;
    if (placeholder) { el.placeholder = placeholder; el.required = true; }
    return el;
  }

  function oidc(p) {
    var params = new URLSearchParams({ provider: p.name });
    if (redirect !== null) params.set("redirect", redirect);
    var a = text("a", "Sign in with " + p.name);
    a.href = "/_/auth/api/login?" + params.toString();
    item([a]);
  }

  function password(p) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/_/auth/api/login";
    form.appendChild(text("b", p.name));
    form.appendChild(input("hidden", "provider", p.name));
    if (redirect !== null) form.appendChild(input("hidden", "redirect", redirect));
    form.appendChild(input("email", "email", null, "email"));
    form.appendChild(input("password", "password", null, "password"));
    form.appendChild(text("button", "Sign in"));
    item([form]);
  }

  function bearer(p) {
    var line = document.createElement("span");
    line.appendChild(text("b", p.name));
    line.appendChild(document.createTextNode(": send "));
    line.appendChild(text("code", "Authorization: Bearer <token>"));
    line.appendChild(document.createTextNode(" with a token from "));
    line.appendChild(text("code", p.issuer || ""));
    item([line]);
  }

  fetch("/_/auth/api/providers", { headers: { accept: "application/json" }, credentials: "same-origin" })
    .then(function (res) {
      if (!res.ok) throw new Error("the provider list answered " + res.status);
      return res.json();
    })
    .then(function (body) {
      (body.providers || []).forEach(function (p) {
        if (p.type === "oidc") oidc(p);
        else if (p.type === "email-password") password(p);
        else if (p.type === "jwt") bearer(p);
      });
      if (!list.children.length) status.textContent = "No sign-in method is configured.";
    })
    .catch(function (e) { status.textContent = "The sign-in options cannot be loaded: " + e.message; });
})();
