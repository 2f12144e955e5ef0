// Configuration: the TOML text in CodeMirror; Check (configTest) and Save (configTextSet) mark
// every problem at its line and column in the editor and list them; nothing is saved then.
(function () {
  "use strict";

  function init() {
    var box = document.getElementById("config-editor");
    if (!box || !window.CM) { return; }
    var CM = window.CM, G = window.ConsoleGraphs;
    G.styleAttributesThroughCSSOM();
    var canEdit = box.dataset.canEdit === "yes";
    var saved = document.getElementById("config-text").value;
    var dirty = document.getElementById("config-dirty");
    var editorRoot = G.shadowRoot(document.getElementById("config-cm"));
    var view = new CM.EditorView({
      parent: editorRoot, root: editorRoot,
      state: CM.EditorState.create({
        doc: saved,
        extensions: [CM.basicSetup, CM.EditorView.theme({ "&": { maxHeight: "520px" }, ".cm-scroller": { overflow: "auto", fontSize: "12px" } }), CM.StreamLanguage.define(CM.toml), CM.lintGutter(),
                     CM.EditorState.readOnly.of(!canEdit), CM.EditorView.editable.of(canEdit),
                     CM.EditorView.updateListener.of(function (u) {
                       if (u.docChanged) { dirty.textContent = view.state.doc.toString() === saved ? "" : "changed, not saved"; }
                     })]
      })
    });
    box.editor = view;

    var list = document.getElementById("config-problems");
    var status = document.getElementById("config-status");

    function offsetOf(line, column) {
      var doc = view.state.doc;
      var l = doc.line(Math.min(Math.max(1, line), doc.lines));
      return Math.min(l.from + Math.max(0, column - 1), l.to);
    }

    function show(problems) {
      list.textContent = "";
      var marks = problems.map(function (p) {
        var li = document.createElement("li");
        li.setAttribute("data-line", String(p.line));
        li.setAttribute("data-column", String(p.column));
        li.textContent = "line " + p.line + ", column " + p.column + ": " + p.message;
        list.appendChild(li);
        // One character at the position; at the end of a line, the character before it.
        var at = offsetOf(p.line, p.column);
        var line = view.state.doc.lineAt(at);
        var from = at < line.to ? at : Math.max(line.from, at - 1);
        return { from: from, to: Math.min(from + 1, line.to), severity: "error", message: p.message };
      });
      view.dispatch(CM.setDiagnostics(view.state, marks));
      list.setAttribute("data-count", String(problems.length));
    }

    document.getElementById("config-check").addEventListener("click", function () {
      G.request("POST", "/config/check", { node: box.dataset.node, text: view.state.doc.toString() })
        .then(function (r) {
          show(r.problems);
          G.say(status, r.problems.length ? r.problems.length + " problem(s)" : "no problems");
        })
        .catch(function (err) { G.say(status, err.message, "bad"); });
    });

    var save = document.getElementById("config-save");
    if (save) {
      save.addEventListener("click", function () {
        save.disabled = true;
        G.request("POST", "/config/save", { node: box.dataset.node, text: view.state.doc.toString(),
                                            comment: document.getElementById("config-comment").value })
          .then(function (r) {
            saved = view.state.doc.toString();
            dirty.textContent = "";
            show([]);
            status.setAttribute("data-revision", String(r.revision));
            G.say(status, "saved as revision " + r.revision);
          })
          .catch(function (err) {
            var problems = (err.data && err.data.problems) || [];
            show(problems);
            status.setAttribute("data-revision", "");
            G.say(status, problems.length ? "not saved: " + problems.length + " problem(s)" : err.message, "bad");
          })
          .then(function () { save.disabled = false; });
      });
    }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
