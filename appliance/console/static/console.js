// The console's own script: no inline handlers anywhere, so everything is wired up here.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Every htmx request carries the session's CSRF token (the server checks it on every
  // state-changing request).
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // A refused or failed htmx request shows its message (as text) where the answer would go.
  document.addEventListener("htmx:responseError", function (event) {
    var target = event.detail.target;
    if (target) {
      var p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      p.textContent = (event.detail.xhr.responseText || "request failed").trim();
      target.replaceChildren(p);
    }
  });

  // Selects marked data-autosubmit submit their form when changed (the node selector).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el && el.matches && el.matches("[data-autosubmit]") && el.form) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });

  // Forms and buttons with data-confirm ask first; the text is read as text, never as HTML.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var text = form && form.getAttribute && form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  // A page's own script registers here: Console.onLoad(fn) runs fn(root) for the document and
  // for every fragment htmx swaps in.
  var loaders = [];
  window.Console = {
    csrfToken: csrfToken,
    onLoad: function (fn) {
      loaders.push(fn);
      if (document.readyState !== "loading") { fn(document); }
    }
  };
  document.addEventListener("DOMContentLoaded", function () {
    loaders.forEach(function (fn) { fn(document); });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    loaders.forEach(function (fn) { fn(event.detail.target); });
  });
})();
