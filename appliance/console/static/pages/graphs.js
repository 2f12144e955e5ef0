// Shared by the console's own pages: JSON calls with the session's CSRF token, and uPlot charts
// whose data length and series names are mirrored on the element (data-points, data-series).
(function () {
  "use strict";

  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#17becf", "#bcbd22"];

  function csrf() {
    return window.Console ? window.Console.csrfToken() : "";
  }

  // fetch() as the pages use it: same origin, JSON both ways, {error} answers thrown as Error.
  function request(method, url, body) {
    var options = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf();
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { error: text || response.statusText }; }
        if (!response.ok) {
          var err = new Error((data && data.error) || response.statusText);
          err.data = data;
          err.status = response.status;
          throw err;
        }
        return data;
      });
    });
  }

  function seriesOptions(names, units) {
    var out = [{}];
    names.forEach(function (name, i) {
      out.push({ label: name + (units && units[i] ? " " + units[i] : ""), stroke: COLORS[i % COLORS.length],
                 width: 1.5, spanGaps: false,
                 value: function (u, v) { return v == null ? "–" : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)); } });
    });
    return out;
  }

  // A uPlot chart in `box` for ts + columns; redrawn from scratch when the series change.
  function plot(box, ts, columns, names, units) {
    var data = [ts].concat(columns);
    var key = names.join("|") + "#" + (units || []).join("|");
    if (box.uplot && box.uplotKey === key) {
      box.uplot.setData(data);
    } else {
      if (box.uplot) { box.uplot.destroy(); }
      var width = Math.max(240, box.clientWidth || 300);
      box.uplot = new window.uPlot({ width: width, height: 180, series: seriesOptions(names, units),
                                     axes: [{}, { size: 60 }], legend: { live: true } }, data, box);
      box.uplotKey = key;
    }
    box.setAttribute("data-points", String(ts.length));
    box.setAttribute("data-series", names.join("|"));
    return box.uplot;
  }

  // Text into an element, never as HTML (values come from nodes and users).
  function say(el, text, kind) {
    if (!el) { return; }
    el.textContent = text || "";
    el.classList.toggle("bad", kind === "bad");
    el.classList.toggle("muted", kind !== "bad");
  }

  // The console's CSP allows no inline style, and CodeMirror writes a few style attributes
  // (setAttribute("style", ...)), which the browser would refuse. The same declarations set
  // through the CSSOM are allowed: pages with an editor call this before creating one.
  function styleAttributesThroughCSSOM() {
    var set = Element.prototype.setAttribute;
    Element.prototype.setAttribute = function (name, value) {
      if (typeof name === "string" && name.toLowerCase() === "style" && this.style) {
        this.style.cssText = String(value);
        return undefined;
      }
      return set.call(this, name, value);
    };
  }

  // CodeMirror's style sheets go into a <style> element when the editor lives in the
  // document, which the CSP refuses; inside a shadow root they are constructed style sheets
  // (adoptedStyleSheets), which it allows. Editors are created with {parent: root, root: root}.
  function shadowRoot(box) {
    return box.shadowRoot || box.attachShadow({ mode: "open" });
  }

  window.ConsoleGraphs = { request: request, plot: plot, say: say, colors: COLORS,
                           styleAttributesThroughCSSOM: styleAttributesThroughCSSOM,
                           shadowRoot: shadowRoot };
})();
