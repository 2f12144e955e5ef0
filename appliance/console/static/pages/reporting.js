// Reporting: RRD graphs per node (JSON from /reporting/graph), the real-time statd graph,
// stat() counters graphed as they change, and pie charts.
(function () {
  "use strict";
  var G = null;
  var LIVE_WINDOW = 300; // seconds of real-time points kept on screen

  function expressions() {
    var legends = document.querySelectorAll('#expressions input[name="legend"]');
    var texts = document.querySelectorAll('#expressions input[name="expr"]');
    var out = [];
    for (var i = 0; i < texts.length; i++) {
      if (texts[i].value.trim()) { out.push({ legend: legends[i].value.trim(), expr: texts[i].value.trim() }); }
    }
    return out;
  }

  function loadCard(card) {
    var params = new URLSearchParams({ node: card.dataset.node, graph: card.dataset.graph,
                                       range: card.dataset.range });
    expressions().forEach(function (e) { params.append("legend", e.legend); params.append("expr", e.expr); });
    var box = card.querySelector(".plot");
    var note = card.querySelector(".graph-note");
    G.request("GET", "/reporting/graph?" + params.toString()).then(function (data) {
      G.plot(box, data.ts, data.values, data.names, data.units);
      card.setAttribute("data-points", String(data.ts.length));
      card.setAttribute("data-series", data.names.join("|"));
      var skipped = (data.skipped || []).map(function (s) { return s.legend + ": " + s.error; });
      G.say(note, "step " + data.step + " s" + (skipped.length ? " · not drawn: " + skipped.join("; ") : ""));
    }).catch(function (err) {
      G.say(note, err.message, "bad");
    });
  }

  // --- real-time -------------------------------------------------------------------------
  var live = null;

  function liveStart() {
    var node = document.getElementById("live-node").value;
    var name = document.getElementById("live-name").value.trim();
    var status = document.getElementById("live-status");
    liveStop();
    G.request("POST", "/reporting/live/start", { node: node, name: name }).then(function (started) {
      live = { node: started.node, id: started.id, rest: "", ts: [], columns: {}, names: [], timer: null };
      document.getElementById("live-start").disabled = true;
      document.getElementById("live-stop").disabled = false;
      G.say(status, "running statd -g " + started.name + " on " + started.node);
      livePoll();
    }).catch(function (err) { G.say(status, err.message, "bad"); });
  }

  function livePoll() {
    if (!live) { return; }
    var current = live;
    G.request("POST", "/reporting/live/poll", { node: current.node, id: current.id, rest: current.rest,
                                                 expressions: expressions() }).then(function (data) {
      if (live !== current) { return; }
      current.rest = data.rest || "";
      data.names.forEach(function (name) {
        if (current.names.indexOf(name) < 0) {
          current.names.push(name);
          current.columns[name] = current.ts.map(function () { return null; });
        }
      });
      data.ts.forEach(function (t, i) {
        current.ts.push(t);
        current.names.forEach(function (name) {
          var at = data.names.indexOf(name);
          current.columns[name].push(at < 0 ? null : data.values[at][i]);
        });
      });
      var drop = Math.max(0, current.ts.length - LIVE_WINDOW);
      if (drop) {
        current.ts.splice(0, drop);
        current.names.forEach(function (n) { current.columns[n].splice(0, drop); });
      }
      if (current.ts.length) {
        G.plot(document.getElementById("live-plot"), current.ts,
               current.names.map(function (n) { return current.columns[n]; }), current.names);
      }
      if (data.ended) {
        G.say(document.getElementById("live-status"), data.ended, "bad");
        liveStop();
        return;
      }
      current.timer = setTimeout(livePoll, 1000);
    }).catch(function (err) {
      G.say(document.getElementById("live-status"), err.message, "bad");
      liveStop();
    });
  }

  function liveStop() {
    if (!live) { return; }
    var ending = live;
    live = null;
    clearTimeout(ending.timer);
    document.getElementById("live-start").disabled = false;
    document.getElementById("live-stop").disabled = true;
    G.request("POST", "/reporting/live/stop", { node: ending.node, id: ending.id }).catch(function () {});
  }

  // --- stat() counters -------------------------------------------------------------------
  var counting = null;

  function countersStart(form) {
    if (counting) { clearTimeout(counting.timer); }
    counting = { params: new URLSearchParams(new FormData(form)).toString(), last: {}, ts: [], columns: {}, names: [] };
    countersPoll(counting);
  }

  function countersPoll(state) {
    G.request("GET", "/reporting/counters?" + state.params).then(function (data) {
      if (counting !== state) { return; }
      var now = data.now;
      var rates = {};
      data.rows.forEach(function (r) {
        var key = [r.node, r.key1, r.key2, r.key3].filter(Boolean).join(" ");
        var before = state.last[key];
        if (before) { rates[key] = Math.max(0, (r.count - before.count) / Math.max(0.001, now - before.at)); }
        state.last[key] = { count: r.count, at: now };
      });
      Object.keys(rates).slice(0, 10).forEach(function (key) {
        if (state.names.indexOf(key) < 0 && state.names.length < 10) {
          state.names.push(key);
          state.columns[key] = state.ts.map(function () { return null; });
        }
      });
      if (Object.keys(rates).length || state.ts.length) {
        state.ts.push(now);
        state.names.forEach(function (n) { state.columns[n].push(n in rates ? rates[n] : null); });
      }
      var status = document.getElementById("counter-status");
      G.say(status, data.rows.length + " counters · per second since the last look");
      if (state.names.length && state.ts.length) {
        G.plot(document.getElementById("counter-plot"), state.ts,
               state.names.map(function (n) { return state.columns[n]; }), state.names);
      }
      state.timer = setTimeout(function () { countersPoll(state); }, 2000);
    }).catch(function (err) { G.say(document.getElementById("counter-status"), err.message, "bad"); });
  }

  // --- pies -------------------------------------------------------------------------------
  function drawPie(form) {
    var params = new URLSearchParams(new FormData(form));
    params.set("kind", form.dataset.kind);
    var canvas = form.querySelector("canvas");
    G.request("GET", "/reporting/pie?" + params.toString()).then(function (data) {
      if (canvas.chart) { canvas.chart.destroy(); }
      canvas.chart = new window.Chart(canvas, {
        type: "pie",
        data: { labels: data.labels, datasets: [{ data: data.values, backgroundColor: G.colors }] },
        options: { animation: false, responsive: false, plugins: { legend: { position: "bottom" } } }
      });
      canvas.setAttribute("data-slices", String(data.labels.length));
    }).catch(function (err) { canvas.setAttribute("data-error", err.message); });
  }

  function init() {
    G = window.ConsoleGraphs;
    document.querySelectorAll(".graph-card").forEach(loadCard);
    var start = document.getElementById("live-start");
    if (start) {
      start.addEventListener("click", liveStart);
      document.getElementById("live-stop").addEventListener("click", liveStop);
      window.addEventListener("pagehide", liveStop);
    }
    var counterForm = document.getElementById("counter-form");
    counterForm.addEventListener("submit", function (e) { e.preventDefault(); countersStart(counterForm); });
    document.querySelectorAll(".pie-form").forEach(function (form) {
      form.addEventListener("submit", function (e) { e.preventDefault(); drawPie(form); });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
