"""Suspensions: delivery held by HQL filter until a time (mailQueueSuspend*), set on the
selected nodes under one id, listed merged by id with what each node holds, removed everywhere."""

from __future__ import annotations

from typing import Any

from appliance_client.cluster import ttl_seconds
from flask import Blueprint, redirect, request, url_for

from appliance.console import web
from appliance.console.pages import Page

bp = Blueprint("suspensions", __name__)
PAGE = Page(name="suspensions", title="Suspensions", path="/suspensions", blueprint=bp)


def _page(*, done: dict[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    ended = request.values.get("ended") == "1"
    with web.cluster() as client:
        rows, result = client.suspensions(ended=ended)
    body = web.render("suspensions.html", title="Suspensions", rows=rows, errors=result.errors,
                      ended=ended, stamp=web.stamp, done=done or {},
                      can_add=web.can("mailQueueSuspend"),
                      can_remove=web.can("mailQueueSuspendRemove"))
    return body, status


@bp.get("/suspensions")
def index() -> tuple[str, int]:
    return _page()


@bp.post("/suspensions/add")
def add() -> Any:
    """One suspension on every selected node under one id (Cluster.suspend)."""
    web.require("mailQueueSuspend")
    text = request.form.get("filter", "").strip()
    reason = request.form.get("reason", "").strip()[:500]
    try:
        ttl = ttl_seconds(request.form.get("ttl", ""))
    except ValueError as exc:
        return _page(done={"what": "add", "problem": str(exc)}, status=400)
    if not text:
        return _page(done={"what": "add", "problem": "a suspension needs a filter (hold the "
                           "whole queue from tracking instead)"}, status=400)
    with web.cluster() as client:
        sid, result = client.suspend(filter=text, ttl=ttl, reason=reason)
    if result.errors:
        return _page(done={"what": "add", "id": sid, "answers": result.values,
                           "errors": result.errors})
    return redirect(url_for("suspensions.index"), code=303)


@bp.post("/suspensions/remove")
def remove() -> Any:
    """End one suspension on every selected node (Cluster.unsuspend); each says how many
    entries it released."""
    web.require("mailQueueSuspendRemove")
    sid = request.form.get("id", "").strip()
    if not sid:
        web.forbidden("name the suspension to remove")
    with web.cluster() as client:
        result = client.unsuspend(sid)
    return _page(done={"what": "remove", "id": sid, "answers": result.values,
                       "errors": result.errors})
