"""Overview, the default page: per node its status, queue by state, messages per minute, disk,
errors, with links into tracking and log search. The cards refresh themselves (htmx)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request

from appliance.console import web
from appliance.console.nodes import Member, items
from appliance.console.pages import Page

bp = Blueprint("overview", __name__)
PAGE = Page(name="overview", title="Overview", path="/", blueprint=bp)
ERROR_WINDOW = 24 * 3600


def _total(value: Any) -> int:
    return int(getattr(value, "totalhits", 0) or 0)


def _statd(client: Any, members: list[Member]) -> dict[str, dict[str, str]]:
    """`statd -l` of every node: the node's counters, among them its disk use."""
    out: dict[str, bytearray] = {m.label: bytearray() for m in members}
    for label, chunk in client.run_command(["statd", "-l"], poll_interval=0.1,
                                           deadline=time.monotonic() + 10):
        out[label] += chunk
    values: dict[str, dict[str, str]] = {}
    for label, raw in out.items():
        for line in raw.decode("utf-8", "replace").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep:
                values.setdefault(label, {})[key] = value
    return values


def _cards() -> dict[str, Any]:
    members = web.selected()
    now = int(time.time())
    minute, day = f"time>={now - 60}", f"time>={now - ERROR_WINDOW}"
    with web.cluster(members) as client:
        staged: dict[str, dict[str, Any]] = {}
        for m in members:
            node = client.nodes[m.label]
            staged[m.label] = {
                "status": client.fanout.stage(node, "systemStatus"),
                "queued_minute": client.fanout.stage(node, "mailQueueCount", filter=minute),
                "done_minute": client.fanout.stage(
                    node, "mailHistory", filter=f"{minute} and not action=DEFER", offset=0,
                    limit=1, options={"totalhits": True}),
                "errors": client.fanout.stage(
                    node, "mailHistory", filter=f"{day} and (action=ERROR or action=BOUNCE)",
                    offset=0, limit=1, options={"totalhits": True}),
            }
        client.fanout.dispatch()
        answering = [m for m in members if staged[m.label]["status"].error is None]
        stats = _statd(client, answering) if answering and web.can("commandRun") else {}
        command_errors = dict(getattr(client, "errors", {}) or {})
    rows = []
    errors = {}
    for m in members:
        calls = staged[m.label]
        status = calls["status"]
        if status.error is not None:
            errors[m.label] = status.error
            rows.append({"member": m, "error": status.error})
            continue
        value = status.result()
        queue = {str(s.state): int(s.count) for s in items(getattr(value, "queue", None))}
        per_minute = None
        if calls["queued_minute"].ok and calls["done_minute"].ok:
            per_minute = int(calls["queued_minute"].result()) + _total(calls["done_minute"].result())
        node_stats = stats.get(m.label, {})
        disk = node_stats.get("system-storage-usage")
        rows.append({
            "member": m, "error": None, "status": value, "queue": queue,
            "queued": sum(queue.values()), "per_minute": per_minute,
            "errors_day": _total(calls["errors"].result()) if calls["errors"].ok else None,
            "quarantined": node_stats.get("mail-quarantine-count"),
            "disk": disk, "cpu": node_stats.get("system-cpu-usage"),
            "stats_error": command_errors[m.label].message if m.label in command_errors else "",
        })
    return {"rows": rows, "errors": errors, "may_run": web.can("commandRun"),
            "error_hours": ERROR_WINDOW // 3600}


@bp.get("/")
def index() -> str:
    context = _cards()
    if web.htmx() and request.args.get("fragment") == "cards":
        return web.render("_overview_cards.html", **context)
    return web.render("overview.html", title="Overview", **context)
