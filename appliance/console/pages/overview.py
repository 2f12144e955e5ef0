"""Overview, the default page: per node its status and queue by state, with links onwards."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from appliance.console import web
from appliance.console.nodes import items
from appliance.console.pages import Page

bp = Blueprint("overview", __name__)
PAGE = Page(name="overview", title="Overview", path="/", blueprint=bp)


@bp.get("/")
def index() -> str:
    members = web.selected()
    with web.cluster(members) as client:
        status = client.call("systemStatus")
    rows: list[dict[str, Any]] = []
    for member in members:
        value = status.values.get(member.label)
        queue = {str(s.state): int(s.count) for s in items(getattr(value, "queue", None))}
        rows.append({"member": member, "status": value, "queue": queue,
                     "error": status.errors.get(member.label)})
    return web.render("overview.html", title="Overview", rows=rows, errors=status.errors)
