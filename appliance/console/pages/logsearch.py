"""Log search: one searchlog over every selected node, followed live, with per-node counts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from appliance.console import logsearch, web
from appliance.console.pages import Page

bp = Blueprint("logsearch", __name__)
PAGE = Page(name="logsearch", title="Log search", path="/logsearch", blueprint=bp)
_MAX_SEARCHES = 4  # per session: older ones are stopped


def _searches() -> dict[str, logsearch.Search]:
    found: dict[str, logsearch.Search] = web.current().data.setdefault("logsearch", {})
    return found


def _search() -> logsearch.Search:
    found = _searches().get(request.values.get("id", ""))
    if found is None:
        web.forbidden("no such search (it ended with the session); start it again")
    return found


@bp.get("/logsearch")
def index() -> str:
    return web.render("logsearch.html", title="Log search", members=web.selected(),
                      may_run=web.can("commandRun"), text=request.args.get("text", ""),
                      follow=request.args.get("follow", "1") == "1")


@bp.post("/logsearch/start")
def start() -> Any:
    web.require("commandRun")
    members = web.selected()
    try:
        max_lines = int(request.form.get("max") or 0)
    except ValueError:
        max_lines = 0
    try:
        search = logsearch.new_search(members, text=request.form.get("text", ""),
                                      follow=request.form.get("follow") == "1",
                                      max_lines=max(0, min(max_lines, 100_000)),
                                      after=request.form.get("after", ""))
    except ValueError as exc:
        return jsonify({"error": str(exc)}), 400
    searches = _searches()
    while len(searches) >= _MAX_SEARCHES:
        old = searches.pop(next(iter(searches)))
        with web.cluster([n.member for n in old.nodes.values()]) as client:
            logsearch.stop(client, old)
    with web.cluster(members) as client:
        logsearch.start(client, search)
    searches[search.id] = search
    return jsonify(search.state() | {"nodes": list(search.nodes)})


@bp.post("/logsearch/poll")
def poll() -> Any:
    search = _search()
    with search.lock:
        with web.cluster([n.member for n in search.nodes.values()]) as client:
            lines = logsearch.poll(client, search)
        return jsonify(search.state() | {"lines": lines})


@bp.post("/logsearch/stop")
def stop() -> Any:
    search = _search()
    with search.lock:
        with web.cluster([n.member for n in search.nodes.values()]) as client:
            logsearch.stop(client, search)
        return jsonify(search.state())


@bp.post("/logsearch/resume")
def resume() -> Any:
    web.require("commandRun")
    search = _search()
    with search.lock:
        with web.cluster([n.member for n in search.nodes.values()]) as client:
            logsearch.resume(client, search)
        return jsonify(search.state())
