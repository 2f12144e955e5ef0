// Terminal: xterm.js draws; a command line is read here and run with commandRun; while a
// command runs, keys go to its input (commandPush), Ctrl-C to commandSignal, and resizes to
// commandTermsize; output is polled.
(function () {
  "use strict";

  // The console's CSP allows no inline style: xterm.js keeps its measurements and theme in
  // <style> elements, which the browser would refuse once they are in the document. Those
  // elements are kept out of the document, and their text is carried into constructed style
  // sheets (CSSOM), which the policy allows.
  function bridgeStyles(root) {
    var append = Element.prototype.appendChild;
    Element.prototype.appendChild = function (child) {
      if (child && child.tagName === "STYLE" && root.contains(this)) {
        adopt(child);
        return child;
      }
      return append.call(this, child);
    };
    function adopt(style) {
      var sheet = new CSSStyleSheet();
      document.adoptedStyleSheets = document.adoptedStyleSheets.concat([sheet]);
      var carry = function () { sheet.replaceSync(style.textContent || ""); };
      carry();
      new MutationObserver(carry).observe(style, { childList: true, characterData: true, subtree: true });
    }
  }

  function init() {
    var box = document.getElementById("terminal");
    if (!box || !window.Terminal) { return; }
    var G = window.ConsoleGraphs;
    bridgeStyles(box);
    var term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, scrollback: 5000 });
    var fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    box.term = term; // the browser tests read the screen through this
    var node = box.dataset.node;
    var prompt = node + "> ";
    var line = "";
    var history = [];
    var back = 0;
    var running = null;

    function setState(state) { box.setAttribute("data-state", state); }
    function showPrompt() { term.write("\r\n\x1b[1;32m" + prompt + "\x1b[0m"); line = ""; setState("idle"); }

    function run(text) {
      if (!text.trim()) { showPrompt(); return; }
      history.push(text);
      back = 0;
      term.write("\r\n");
      setState("starting");
      G.request("POST", "/terminal/run", { node: node, line: text, cols: term.cols, rows: term.rows })
        .then(function (started) {
          running = { id: started.id };
          setState("running");
          poll(running);
        })
        .catch(function (err) {
          term.write("\x1b[31m" + err.message.replace(/\n/g, "\r\n") + "\x1b[0m");
          showPrompt();
        });
    }

    function poll(command) {
      if (running !== command) { return; }
      G.request("POST", "/terminal/poll", { node: node, id: command.id }).then(function (r) {
        if (r.output) { term.write(r.output); }
        if (r.ended) {
          running = null;
          term.write("\x1b[2m[" + r.ended.replace(/^command \S+ /, "") + "]\x1b[0m");
          showPrompt();
          return;
        }
        setTimeout(function () { poll(command); }, 50);
      }).catch(function (err) {
        running = null;
        term.write("\r\n\x1b[31m" + err.message + "\x1b[0m");
        showPrompt();
      });
    }

    function send(path, body) {
      if (!running) { return; }
      body.node = node;
      body.id = running.id;
      G.request("POST", path, body).catch(function (err) { term.write("\r\n\x1b[31m" + err.message + "\x1b[0m\r\n"); });
    }

    term.onData(function (data) {
      if (running) {
        if (data === "\x03") { term.write("^C"); send("/terminal/signal", { signal: "interrupt" }); return; }
        send("/terminal/input", { data: data.replace(/\r/g, "\n") });
        return;
      }
      if (box.getAttribute("data-state") !== "idle") { return; }
      for (var i = 0; i < data.length; i++) {
        var ch = data[i];
        if (ch === "\r") { run(line); return; }
        if (ch === "\x03") { term.write("^C"); showPrompt(); return; }
        if (ch === "\x7f" || ch === "\b") {
          if (line.length) { line = line.slice(0, -1); term.write("\b \b"); }
          continue;
        }
        if (data.slice(i, i + 3) === "\x1b[A" || data.slice(i, i + 3) === "\x1b[B") {
          back = Math.max(0, Math.min(history.length, back + (data[i + 2] === "A" ? 1 : -1)));
          var recalled = back ? history[history.length - back] : "";
          term.write("\b \b".repeat(line.length) + recalled);
          line = recalled;
          i += 2;
          continue;
        }
        if (ch >= " " && ch !== "\x7f") { line += ch; term.write(ch); }
      }
    });

    term.onResize(function (size) { send("/terminal/resize", { cols: size.cols, rows: size.rows }); });
    window.addEventListener("resize", function () { fit.fit(); });
    term.write("\x1b[1mappliance commands on " + node + "\x1b[0m (type one, e.g. queuestat; Ctrl-C interrupts)");
    showPrompt();
    term.focus();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
