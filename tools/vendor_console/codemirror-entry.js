// Entry of the CodeMirror 6 bundle the web console serves as
// static/vendor/codemirror/codemirror.bundle.js. esbuild turns it into one
// IIFE that sets window.CM; the console's pages use only what is exported here.
export { basicSetup, minimalSetup } from "codemirror";
export { EditorState, Compartment, StateEffect, StateField } from "@codemirror/state";
export { EditorView, keymap, lineNumbers, Decoration } from "@codemirror/view";
export { StreamLanguage, syntaxHighlighting, defaultHighlightStyle } from "@codemirror/language";
export { indentWithTab, history, undo, redo } from "@codemirror/commands";
export { lintGutter, setDiagnostics, forceLinting, linter } from "@codemirror/lint";
export { MergeView, unifiedMergeView, getChunks } from "@codemirror/merge";
export { lua } from "@codemirror/legacy-modes/mode/lua";
export { toml } from "@codemirror/legacy-modes/mode/toml";
