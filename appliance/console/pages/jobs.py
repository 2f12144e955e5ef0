"""Jobs: throttled drains (mailQueueDrain) started on the selected nodes, their progress
(mailQueueJobList: done / remaining / rate / ETA, refreshed by htmx) and cancelling one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, request

from appliance.console import web
from appliance.console.pages import Page

bp = Blueprint("jobs", __name__)
PAGE = Page(name="jobs", title="Jobs", path="/jobs", blueprint=bp)

ACTIONS = ("retry", "bounce", "delete")


def eta(seconds: Any) -> str:
    """An ETA in seconds as `1 h 02 min`, `3 min 05 s` or `42 s`."""
    left = int(float(seconds or 0))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _table() -> dict[str, Any]:
    with web.cluster() as client:
        jobs, errors = client.jobs()
    rows = [{"node": label, "job": job, "total": int(job.done or 0) + int(job.remaining or 0)}
            for label, job in jobs]
    return {"rows": rows, "errors": errors, "eta": eta, "stamp": web.stamp,
            "can_cancel": web.can("mailQueueJobCancel"), "running": any(
                r["job"].state == "RUNNING" for r in rows)}


@bp.get("/jobs")
def index() -> str:
    context = _table()
    if web.htmx() and request.args.get("fragment") == "table":
        return web.render("_jobs_table.html", **context)
    return web.render("jobs.html", title="Jobs", actions=ACTIONS,
                      can_start=web.can("mailQueueDrain"), **context)


@bp.post("/jobs/start")
def start() -> Response | str:
    """A drain on every selected node (each its own job, at `per_minute`): first how many
    entries match on each node and how long that takes at the rate, then, confirmed, the jobs."""
    web.require("mailQueueDrain")
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400, description=f"action must be one of {', '.join(ACTIONS)}")
    try:
        per_minute = int(request.form.get("per_minute", ""))
    except ValueError:
        abort(400, description="per_minute must be a whole number")
    if not 1 <= per_minute <= 600_000:
        abort(400, description="per_minute must be 1 to 600000")
    text = request.form.get("filter", "").strip()
    with web.cluster() as client:
        if request.form.get("confirm") != "1":
            _total, counted = client.count(filter=text)
            counts = {label: int(n) for label, n in counted.values.items()}
            return web.render("_jobs_confirm.html", counts=counts, errors=counted.errors,
                              action=action, per_minute=per_minute, filter=text, eta=eta,
                              longest=max(counts.values(), default=0) * 60 / per_minute)
        result = client.drain(filter=text, action=action, per_minute=per_minute)
    return _done("started", result.values, result.errors)


@bp.post("/jobs/cancel")
def cancel() -> Response:
    web.require("mailQueueJobCancel")
    label = request.form.get("on", "")
    ident = request.form.get("id", "")
    if label not in {m.label for m in web.selected()} or not ident.isdigit():
        abort(400, description="name a node and a job id")
    with web.cluster() as client:
        result = client.job_cancel({label: int(ident)})
    return _done("cancelled", {k: ident for k in result.values}, result.errors)


def _done(what: str, values: dict[str, Any], errors: dict[str, Any]) -> Response:
    """Each node's answer; the list refreshes itself on the event this sends."""
    body = web.render("_jobs_done.html", what=what, values=values, errors=errors)
    return Response(body, headers={"HX-Trigger": "jobs-changed"})
