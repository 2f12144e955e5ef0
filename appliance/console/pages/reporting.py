"""Reporting: every graph of every node (graphFile's RRD read here, drawn by uPlot in the
browser), real-time graphs from `statd -g`, stat() counters, math over series, pie charts."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request

from appliance.console import expr, series, single, web
from appliance.console.nodes import items
from appliance.console.pages import Page
from appliance.errors import InvalidInput

bp = Blueprint("reporting", __name__)
PAGE = Page(name="reporting", title="Reporting", path="/reporting", blueprint=bp)

MAX_EXPRESSIONS = 8
RANGE_TITLES = {"1h": "last hour", "6h": "6 hours", "1d": "day", "1w": "week", "1m": "month",
                "1y": "year"}


@bp.get("/reporting")
def index() -> str:
    members = web.selected()
    with web.cluster(members) as client:
        listed = client.call("graphList")
    nodes = [{"member": m, "graphs": sorted(str(g) for g in items(listed.values.get(m.label))),
              "error": listed.errors.get(m.label)} for m in members]
    chosen = request.args.get("range", "1d")
    return web.render("reporting.html", title="Reporting", nodes=nodes, errors=listed.errors,
                      ranges=RANGE_TITLES, chosen=chosen if chosen in series.RANGES else "1d",
                      expressions=_expressions_of(request.args.getlist("legend"),
                                                  request.args.getlist("expr")),
                      live=web.can("commandRun"))


@bp.get("/reporting/graph")
@single.json_view
def graph() -> Any:
    target = single.member(request.args.get("node"))
    name = request.args.get("graph", "")
    start, end = series.time_range(request.args.get("range", "1d"), now=int(time.time()))
    raw = single.call(target, "graphFile", name=name)
    data = series.read_rrd(bytes(raw or b""), start=start, end=end).as_json()
    data["node"], data["graph"] = target.label, name
    _add_expressions(data, _expressions_of(request.args.getlist("legend"), request.args.getlist("expr")))
    return jsonify(data)


@bp.post("/reporting/live/start")
@single.json_view
def live_start() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    name = str(body.get("name") or "").strip()
    if not name:
        raise InvalidInput("name a graph or counter for the real-time graph")
    cid = single.call(target, "commandRun", argv={"item": [b"statd", b"-g", name.encode()]})
    return jsonify({"id": str(cid), "node": target.label, "name": name})


@bp.post("/reporting/live/poll")
@single.json_view
def live_poll() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    stream = series.StatdStream(str(body.get("rest") or ""))
    ended = ""
    try:
        chunks = items(single.call(target, "commandPoll", commandid=str(body.get("id") or "")))
    except single.CallFailed as exc:
        if not exc.fault:
            raise
        chunks, ended = [], exc.message  # "command … has ended (…)": drained and over
    samples = stream.feed([bytes(c) for c in chunks])
    data = series.live_points(samples, now=time.time())
    given = body.get("expressions") or []
    pairs = [(str(e.get("legend") or ""), str(e.get("expr") or "")) for e in given if isinstance(e, dict)]
    _add_expressions(data, _expressions_of([p[0] for p in pairs], [p[1] for p in pairs]),
                     length=len(samples))
    data.update(rest=stream.rest, ended=ended)
    return jsonify(data)


@bp.post("/reporting/live/stop")
@single.json_view
def live_stop() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    try:
        single.call(target, "commandStop", commandid=str(body.get("id") or ""))
    except single.CallFailed as exc:
        if not exc.fault:  # an ended command is as good as stopped
            raise
    return jsonify({"stopped": True})


@bp.get("/reporting/counters")
@single.json_view
def counters() -> Any:
    """stat() counters of the selected nodes (the page graphs them as they change)."""
    keys = {k: request.args.get(k, "") for k in ("key1", "key2", "key3")}
    with web.cluster() as client:
        result = client.call("statList", offset=0, limit=500, **keys)
    rows = [{"node": label, "key1": r.key1, "key2": r.key2, "key3": r.key3, "count": int(r.count),
             "updated": int(r.updated or 0)}
            for label, value in result.values.items() for r in items(value)]
    return jsonify({"rows": rows, "errors": {k: e.message for k, e in result.errors.items()},
                    "now": time.time()})


@bp.get("/reporting/pie")
@single.json_view
def pie() -> Any:
    """Slices from stat() counters (summed by one key) or from one rate() namespace's buckets."""
    kind = request.args.get("kind", "stat")
    with web.cluster() as client:
        if kind == "rate":
            ns = request.args.get("ns", "")
            if not ns:
                raise InvalidInput("name the rate() namespace")
            result = client.call("hslRate", ns=ns, entry=request.args.get("entry", ""), offset=0,
                                 limit=1000)
            rows = [(str(r.entry), float(r.count)) for v in result.values.values() for r in items(v)]
        elif kind == "stat":
            by = request.args.get("by", "key1")
            if by not in ("key1", "key2", "key3"):
                raise InvalidInput("by must be key1, key2 or key3")
            keys = {k: request.args.get(k, "") for k in ("key1", "key2", "key3")}
            result = client.call("statList", offset=0, limit=1000, **keys)
            rows = [(str(getattr(r, by) or "-"), float(r.count))
                    for v in result.values.values() for r in items(v)]
        else:
            raise InvalidInput("kind must be stat or rate")
    slices = series.pie_slices(rows)
    return jsonify({"labels": [s[0] for s in slices], "values": [s[1] for s in slices],
                    "errors": {k: e.message for k, e in result.errors.items()}})


def _expressions_of(legends: list[str], texts: list[str]) -> list[tuple[str, str]]:
    pairs = [(legend.strip() or text.strip(), text.strip())
             for legend, text in zip(legends + [""] * len(texts), texts) if text.strip()]
    if len(pairs) > MAX_EXPRESSIONS:
        raise InvalidInput(f"at most {MAX_EXPRESSIONS} custom series")
    return pairs


def _add_expressions(data: dict[str, Any], pairs: list[tuple[str, str]], *,
                     length: int | None = None) -> None:
    """Custom series appended to `data`; one that does not fit this graph is reported, not
    fatal (a page's expression names the sources of one graph, not of every graph)."""
    named = dict(zip(data["names"], data["values"]))
    skipped = []
    for legend, text in pairs:
        try:
            values = expr.evaluate(text, named, length=length if length is not None else len(data["ts"]))
        except expr.ExpressionError as exc:
            skipped.append({"legend": legend, "expr": text, "error": str(exc), "position": exc.position})
            continue
        data["names"].append(legend)
        data["values"].append(values)
        for key in ("units", "kinds"):
            if key in data:
                data[key].append("" if key == "units" else "EXPR")
    data["skipped"] = skipped
