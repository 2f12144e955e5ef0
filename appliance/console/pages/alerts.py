"""Alerts: the saved queries with thresholds of the selected nodes (alertList) and their state,
firing ones first; each node evaluates its own queue."""

from __future__ import annotations

from flask import Blueprint

from appliance.console import web
from appliance.console.nodes import items
from appliance.console.pages import Page

bp = Blueprint("alerts", __name__)
PAGE = Page(name="alerts", title="Alerts", path="/alerts", blueprint=bp)


@bp.get("/alerts")
def index() -> str:
    with web.cluster() as client:
        result = client.alerts()
    rows = [{"node": label, "alert": a} for label, value in result.values.items()
            for a in items(value)]
    rows.sort(key=lambda r: (r["alert"].state != "firing", r["alert"].owner, r["alert"].name,
                             r["node"]))
    return web.render("alerts.html", title="Alerts", rows=rows, errors=result.errors,
                      stamp=web.stamp, firing=sum(1 for r in rows if r["alert"].state == "firing"))
