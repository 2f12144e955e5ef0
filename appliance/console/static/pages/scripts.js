// Scripts: CodeMirror 6 with the Lua mode, a merge view against the running revision,
// scriptTest results, and saving as a new revision.
(function () {
  "use strict";

  function init() {
    var page = document.getElementById("script-page");
    if (!page || !window.CM) { return; }
    var CM = window.CM, G = window.ConsoleGraphs;
    G.styleAttributesThroughCSSOM();
    var canSave = page.dataset.canSave === "yes";
    var running = document.getElementById("script-running").value;
    var dirty = document.getElementById("dirty");
    var lua = CM.StreamLanguage.define(CM.lua);

    var editorRoot = G.shadowRoot(document.getElementById("editor"));
    var view = new CM.EditorView({
      parent: editorRoot, root: editorRoot,
      state: CM.EditorState.create({
        doc: document.getElementById("script-text").value,
        extensions: [CM.basicSetup, CM.EditorView.theme({ "&": { maxHeight: "520px" }, ".cm-scroller": { overflow: "auto", fontSize: "12px" } }), lua, CM.keymap.of([CM.indentWithTab]),
                     CM.EditorState.readOnly.of(!canSave), CM.EditorView.editable.of(canSave),
                     CM.EditorView.updateListener.of(function (update) {
                       if (update.docChanged) { markDirty(); }
                     })]
      })
    });
    page.editor = view; // the browser tests read and set the text through this

    function text() { return view.state.doc.toString(); }
    function markDirty() {
      dirty.textContent = text() === running ? "" : "changed, not saved";
      if (merge) { showDiff(); }
    }

    var merge = null;
    var diffBox = document.getElementById("diff");
    function showDiff() {
      if (merge) { merge.destroy(); }
      diffBox.classList.remove("hidden");
      var readOnly = [CM.basicSetup, lua, CM.EditorState.readOnly.of(true), CM.EditorView.editable.of(false)];
      var mergeRoot = G.shadowRoot(diffBox);
      merge = new CM.MergeView({ a: { doc: running, extensions: readOnly },
                                 b: { doc: text(), extensions: readOnly },
                                 parent: mergeRoot, root: mergeRoot,
                                 collapseUnchanged: { margin: 3, minSize: 4 } });
      diffBox.setAttribute("data-chunks", String(merge.chunks.length));
    }
    document.getElementById("show-diff").addEventListener("click", function () {
      if (merge) { merge.destroy(); merge = null; diffBox.classList.add("hidden"); return; }
      showDiff();
    });

    var status = document.getElementById("save-status");
    var save = document.getElementById("save");
    if (save) {
      save.addEventListener("click", function () {
        save.disabled = true;
        G.request("POST", "/scripts/save", { node: page.dataset.node, id: page.dataset.script, text: text(),
                                             comment: document.getElementById("save-comment").value })
          .then(function (done) {
            running = text();
            markDirty();
            status.setAttribute("data-revision", String(done.revision));
            G.say(status, "saved as revision " + done.revision);
          })
          .catch(function (err) { G.say(status, err.message, "bad"); })
          .then(function () { save.disabled = false; });
      });
    }

    var form = document.getElementById("test-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var fields = new FormData(form);
        var decision = document.getElementById("decision");
        var list = document.getElementById("test-result");
        decision.textContent = "running…";
        decision.setAttribute("data-decision", "");
        list.textContent = "";
        G.request("POST", "/scripts/test", {
          node: page.dataset.node, flow: fields.get("flow"), script: text(), message: fields.get("message"),
          envelope: { sender: fields.get("sender"), recipients: fields.get("recipients"),
                      clientip: fields.get("clientip"), helo: fields.get("helo"),
                      saslusername: fields.get("saslusername") }
        }).then(function (result) {
          decision.textContent = result.decision || "(none)";
          decision.setAttribute("data-decision", result.decision || "");
          result.lines.forEach(function (line) {
            var li = document.createElement("li");
            li.className = "kind-" + line.kind;
            var kind = document.createElement("span");
            kind.className = "kind";
            kind.textContent = line.kind;
            li.appendChild(kind);
            li.appendChild(document.createTextNode(line.text));
            list.appendChild(li);
          });
        }).catch(function (err) {
          decision.textContent = "error";
          decision.setAttribute("data-decision", "error");
          var li = document.createElement("li");
          li.className = "kind-error";
          li.textContent = err.message;
          list.appendChild(li);
        });
      });
    }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
