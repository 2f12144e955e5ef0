// Log search: starts the search on every node, polls for new lines, counts them per node in
// the badges, and renders only the lines in view (virtual scrolling), so that tens of
// thousands of lines do not hog the browser. Lines are set as text, never as HTML.
(function () {
  "use strict";
  var ROW = 18;          // px per line; .log-view .line has the same height in console.css
  var OVERSCAN = 20;
  var MAX_KEPT = 200000; // the oldest lines are dropped past this

  Console.onLoad(function (root) {
    var form = root.querySelector ? root.querySelector("#logsearch-form") : null;
    if (!form || form.dataset.wired) { return; }
    form.dataset.wired = "1";
    var view = document.getElementById("log-view");
    var spacer = view.querySelector(".spacer");
    var box = view.querySelector(".lines");
    var stopBtn = document.getElementById("stop");
    var resumeBtn = document.getElementById("resume");
    var status = document.getElementById("status");
    var errorLine = document.getElementById("search-error");
    var lineCount = document.getElementById("line-count");
    var lines = [];      // [node, text]
    var search = null;   // the current search id
    var timer = null;
    var polling = false;
    var stick = true;    // keep the newest line in view while following

    function post(url, data) {
      var body = new URLSearchParams(data || {});
      var node = form.getAttribute("data-node");
      var target = url + (node ? "?node=" + encodeURIComponent(node) : "");
      return fetch(target, {method: "POST", body: body, credentials: "same-origin",
        headers: {"X-CSRF-Token": Console.csrfToken()}}).then(function (r) {
          return r.text().then(function (text) {
            var value = null;
            try { value = JSON.parse(text); } catch (e) { value = {error: text.trim()}; }
            if (!r.ok && !value.error) { value.error = "HTTP " + r.status; }
            return value;
          });
        });
    }

    function showError(message) {
      errorLine.textContent = message || "";
      errorLine.classList.toggle("hidden", !message);
    }

    function badges(state) {
      Object.keys(state.counts || {}).forEach(function (node) {
        var badge = document.querySelector('#badges .badge[data-node="' + CSS.escape(node) + '"]');
        if (!badge) { return; }
        badge.querySelector(".count").textContent = String(state.counts[node]);
        var failed = state.errors && state.errors[node];
        badge.classList.toggle("bad", !!failed);
        badge.title = failed ? failed : "";
      });
      stopBtn.disabled = !state.running;
      resumeBtn.disabled = state.running || !search;
      status.textContent = state.running ? "following…" : (search ? "stopped" : "");
      var errs = Object.keys(state.errors || {}).map(function (n) { return n + ": " + state.errors[n]; });
      showError(errs.join("; "));
    }

    function render() {
      spacer.style.height = (lines.length * ROW) + "px";
      var first = Math.max(0, Math.floor(view.scrollTop / ROW) - OVERSCAN);
      var last = Math.min(lines.length, Math.ceil((view.scrollTop + view.clientHeight) / ROW) + OVERSCAN);
      box.style.transform = "translateY(" + (first * ROW) + "px)";
      var rows = [];
      for (var i = first; i < last; i++) {
        var div = document.createElement("div");
        div.className = "line";
        div.setAttribute("data-index", String(i));
        var node = document.createElement("span");
        node.className = "node";
        node.textContent = lines[i][0];
        var text = document.createElement("span");
        text.className = "text";
        text.textContent = lines[i][1];
        div.appendChild(node);
        div.appendChild(text);
        rows.push(div);
      }
      box.replaceChildren.apply(box, rows);
      lineCount.textContent = String(lines.length);
    }

    view.addEventListener("scroll", function () {
      stick = view.scrollTop + view.clientHeight >= view.scrollHeight - ROW * 2;
      window.requestAnimationFrame(render);
    });

    function schedule() {
      if (timer === null) { timer = window.setTimeout(tick, 400); }
    }

    function tick() {
      timer = null;
      if (!search || polling) { return; }
      polling = true;
      post(form.getAttribute("data-poll"), {id: search}).then(function (state) {
        polling = false;
        if (state.error) { showError(state.error); return; }
        if (state.lines && state.lines.length) {
          Array.prototype.push.apply(lines, state.lines);
          if (lines.length > MAX_KEPT) { lines.splice(0, lines.length - MAX_KEPT); }
          render();
          if (stick) { view.scrollTop = view.scrollHeight; }
        }
        badges(state);
        if (state.running) { schedule(); }
      }, function (err) { polling = false; showError(String(err)); });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      var fields = {text: data.get("text") || "", after: data.get("after") || "",
                    max: data.get("max") || "", follow: data.get("follow") ? "1" : ""};
      lines = [];
      render();
      post(form.getAttribute("data-start"), fields).then(function (state) {
        if (state.error) { showError(state.error); return; }
        search = state.id;
        badges(state);
        schedule();
      });
    });
    stopBtn.addEventListener("click", function () {
      if (!search) { return; }
      post(form.getAttribute("data-stop"), {id: search}).then(badges);
    });
    resumeBtn.addEventListener("click", function () {
      if (!search) { return; }
      post(form.getAttribute("data-resume"), {id: search}).then(function (state) {
        badges(state);
        schedule();
      });
    });
    document.getElementById("clear").addEventListener("click", function () {
      lines = [];
      render();
    });
    render();
  });
})();
