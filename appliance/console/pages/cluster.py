"""Cluster: the members the registry lists (clusterNodeList), each one's own answer, and a
guide that joins a node to the cluster (clusterNodeAdd)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, request

from appliance.console import web
from appliance.console.nodes import items
from appliance.console.pages import Page

bp = Blueprint("cluster", __name__)
PAGE = Page(name="cluster", title="Cluster", path="/cluster", blueprint=bp, admin_only=True)


def _page(joined: dict[str, str] | None = None) -> str:
    session = web.current()
    nodes = web.nodes()
    nodes.forget()
    members, registry_error = nodes.members(session)
    own = nodes.own()
    with web.cluster([own]) as client:
        listed = client.call("clusterNodeList")
    with web.cluster(members, timeout=5) as client:
        serials = client.call("getSerial")
    rows = []
    for item in items(listed.values.get(own.label)):
        seen = int(item.lastseen or 0)
        serial = str(item.serial)
        label = own.label if serial == nodes.access.own_serial else next(
            (m.label for m in members if not m.own and m.url == str(item.url or "")), "")
        rows.append({"label": label, "answers": label in serials.values, "serial": serial, "name": str(item.name or ""),
                     "url": str(item.url or ""), "status": str(item.status or ""),
                     "problem": str(item.problem or ""), "revision": int(item.configrevision or 0),
                     "lastseen": dt.datetime.fromtimestamp(seen, dt.timezone.utc).strftime(
                         "%Y-%m-%d %H:%M:%S") if seen else ""})
    clustered = own.label not in listed.errors
    return web.render("cluster.html", title="Cluster", rows=rows, clustered=clustered,
                      registry_error=listed.errors.get(own.label) or registry_error,
                      errors=serials.errors, members=members, joined=joined or {},
                      own=own)


@bp.get("/cluster")
def index() -> str:
    return _page()


@bp.post("/cluster/add")
def add() -> str:
    web.require("clusterNodeAdd")
    own = web.nodes().own()
    with web.cluster([own], timeout=60) as client:
        result = client.call("clusterNodeAdd", url=request.form.get("url", "").strip(),
                             username=request.form.get("username", "").strip(),
                             password=request.form.get("password", ""))
    joined = {"serial": str(result.values.get(own.label, ""))} if own.label in result.values else {
        "error": result.errors[own.label].message}
    return _page(joined)
