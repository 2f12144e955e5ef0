"""Mail tracking: history, queue and quarantine in one list across nodes, with actions."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from appliance_client.cluster import BULK_OPERATIONS
from appliance_client.errors import NodeError
from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response
from sqlalchemy import delete, select

from appliance.console import web
from appliance.console.nodes import Member, items
from appliance.console.pages import Page
from appliance.console.tracking import (ACTIONS, PAGE_SIZES, SHOW, Cursor, View, record_of,
                                        row_of, search, text_of)
from appliance.db.models_console import ConsoleFilter

bp = Blueprint("tracking", __name__)
PAGE = Page(name="tracking", title="Tracking", path="/tracking", blueprint=bp)

SINGLE = {"retry": "mailQueueRetry", "duplicate": "mailQueueRetry", "bounce": "mailQueueBounce",
          "delete": "mailQueueDelete", "hold": "mailQueueHold"}
LABELS = {"retry": "Retry", "duplicate": "Retry as duplicate", "bounce": "Bounce",
          "delete": "Delete", "hold": "Hold"}
_MAX_STACK = 200
_MAX_FILTERS = 100


def _cursors(view: View, node: str) -> list[Cursor]:
    """The start cursors of the pages seen of this view (page 1's is empty), in the session."""
    return web.cursors("tracking", (tuple(sorted(view.query().items())), node))


def _allowed_actions() -> list[str]:
    return [a for a, op in SINGLE.items() if web.can(op)]


@bp.get("/tracking")
def index() -> Any:
    view = View.of(request.args)
    members = web.selected()
    node = web.current().node
    stack = _cursors(view, node)
    number = web.page_number(len(stack))
    problem = ""
    result = None
    try:
        view.hql()
    except ValueError as exc:
        problem = str(exc)
    if not problem:
        with web.cluster(members) as client:
            result = search(client, members, view, stack[number - 1])
        if result.more:
            del stack[number:]
            if len(stack) < _MAX_STACK:
                stack.append(result.cursor)
    context = dict(
        title="Tracking", view=view, result=result, problem=problem, number=number,
        has_next=bool(result and result.more and len(stack) > number),
        link=lambda **kw: _link(view, **kw), actions=_allowed_actions(), labels=LABELS,
        page_sizes=PAGE_SIZES, show_choices=SHOW, action_choices=ACTIONS, members=members,
        saved=_saved(), errors=result.errors if result else {},
        deep_link=_link(view, node=node or None))
    return web.render("tracking.html", **context)


def _link(view: View, **extra: Any) -> str:
    args = view.query()
    args.update({k: str(v) for k, v in extra.items() if v is not None})
    return url_for("tracking.index") + ("?" + urlencode(args) if args else "")


# -- actions ------------------------------------------------------------------------------

@bp.post("/tracking/act")
def act() -> Any:
    action = request.form.get("op", "")  # not "action": that is the view's history-action filter
    if action not in SINGLE:
        web.forbidden(f"unknown action {action!r}")
    scope = request.form.get("scope", "selected")
    operation = SINGLE[action] if scope == "selected" else BULK_OPERATIONS[
        "retry" if action == "duplicate" else action]
    web.require(operation)
    members = web.selected()
    view = View.of(request.form)
    confirmed = request.form.get("confirm") == "1"
    if scope == "selected":
        chosen = web.selection(members)
        if not chosen:
            return web.render("act_panel.html", stage="empty", action=action, labels=LABELS)
        if not confirmed:
            return web.render("act_panel.html", stage="confirm", action=action, scope=scope,
                              labels=LABELS, counts={k: len(v) for k, v in chosen.items()},
                              errors={}, view=view, chosen=chosen)
        results = _run_selected(members, action, chosen)
        return web.render("act_panel.html", stage="done", action=action, labels=LABELS,
                          results=results)
    try:
        hql = view.hql()
    except ValueError as exc:
        web.forbidden(str(exc))
    with web.cluster(members) as client:
        if not confirmed:
            counted = client.call("mailQueueCount", filter=hql)
            counts = {label: int(v) for label, v in counted.values.items()}
            return web.render("act_panel.html", stage="confirm", action=action, scope=scope,
                              labels=LABELS, counts=counts, errors=counted.errors, view=view,
                              chosen={})
        done = client.bulk("retry" if action == "duplicate" else action, filter=hql,
                           duplicate=action == "duplicate")
    return web.render("act_panel.html", stage="done", action=action, labels=LABELS,
                      results=web.per_node_results(done))


def _run_selected(members: list[Member], action: str,
                  chosen: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    operation = SINGLE[action]
    with web.cluster([m for m in members if m.label in chosen]) as client:
        calls = []
        for label, ids in chosen.items():
            for ident in ids:
                kwargs: dict[str, Any] = {"id": ident}
                if action == "duplicate":
                    kwargs["duplicate"] = True
                calls.append((label, ident, client.fanout.stage(client.nodes[label], operation,
                                                                **kwargs)))
        client.fanout.dispatch()
    results: dict[str, dict[str, Any]] = {}
    for label, ident, call in calls:
        entry = results.setdefault(label, {"done": 0, "failed": []})
        if call.error is None:
            entry["done"] += 1
        else:
            entry["failed"].append((ident, call.error.message))
    return results


# -- the inspector ------------------------------------------------------------------------

@bp.get("/tracking/inspect")
def inspect() -> Any:
    label = request.args.get("on", "")
    source = request.args.get("source", "queue")
    try:
        ident = int(request.args.get("id", ""))
    except ValueError:
        web.forbidden("id must be a number")
    members = [m for m in web.nodes().members(web.current())[0] if m.label == label]
    if not members:
        web.forbidden(f"no node {label!r}")
    history = source == "history"
    hql = f"historyid={ident}" if history else f"queueid={ident}"
    error: NodeError | None = None
    record: dict[str, Any] = {}
    row = None
    preview: dict[str, Any] = {}
    log_lines: list[str] = []
    log_error = ""
    with web.cluster(members, timeout=30) as client:
        found = client.call("mailHistory" if history else "mailQueue", filter=hql, offset=0,
                            limit=1)
        if label in found.errors:
            error = found.errors[label]
        else:
            listed = items(getattr(found.values[label], "result", found.values[label]))
            if listed:
                row = row_of(label, "history" if history else "queue", listed[0])
                record = record_of(listed[0])
        if row is not None and web.can("commandRun"):
            path = text_of(record.get("msgpath"))
            if path and not history:
                preview = _preview(client, label, path)
            log_lines, log_error = _log_lines(client, label, row.msgid)
        elif row is not None:
            log_error = "this user's access level may not run commands (previewmessage, searchlog)"
        stuck = _explain(client, label, ident) if row is not None and not history else {}
    timeline = _timeline(row.msgid) if row is not None else {}
    return web.render("tracking_inspect.html", title="Message", row=row, record=record,
                      error=error, preview=preview, log_lines=log_lines, log_error=log_error,
                      node=label, source=source, ident=ident, stuck=stuck, timeline=timeline)


def _explain(client: Any, label: str, ident: int) -> dict[str, Any]:
    """Why the queue entry waits (mailQueueExplain), in words: its summary and main fields."""
    if not web.can("mailQueueExplain"):
        return {"error": "this user's access level may not call mailQueueExplain"}
    result = client.explain(ident)
    if label in result.errors:
        return {"error": result.errors[label].message}
    info = result.values[label]
    return {"summary": text_of(info.summary), "waitson": text_of(info.waitson),
            "meaning": text_of(info.meaning), "lastreply": text_of(info.lastreply),
            "enhancedcode": text_of(info.enhancedcode),
            "nextretry": web.stamp(info.nextretry), "retriesleft": info.retriesleft}


def _timeline(msgid: str) -> dict[str, Any]:
    """Every event of the message on every node that saw it (mailTimeline, merged by time)."""
    if not msgid or not web.can("mailTimeline"):
        return {"error": "" if not msgid else "this user's access level may not call mailTimeline"}
    with web.cluster(web.nodes().members(web.current())[0], timeout=30) as client:
        entries, result = client.timeline(msgid)
    events = [{"node": e.node, "when": web.stamp(e.event.ts), "kind": text_of(e.event.kind),
               "queueid": int(e.event.queueid or 0), "summary": text_of(e.event.summary),
               "detail": [(text_of(p.first), text_of(p.second))
                          for p in items(getattr(e.event, "detail", None))]} for e in entries]
    return {"events": events, "errors": result.errors}


MARK = "console-preview"


def _command(client: Any, label: str, argv: list[str], *, deadline: float) -> tuple[str, str]:
    out = bytearray()
    for _node, chunk in client.run_command(argv, poll_interval=0.1,
                                           deadline=time.monotonic() + deadline):
        out += chunk
        if len(out) > 4 << 20:
            break
    failure = client.errors.get(label)
    return out.decode("utf-8", "replace").replace("\r\n", "\n"), (failure.message if failure else "")


def _preview(client: Any, label: str, path: str) -> dict[str, Any]:
    text, failure = _command(client, label, ["previewmessage", "-t", path, MARK], deadline=20)
    if failure:
        return {"error": failure}
    sections: dict[str, list[str]] = {"HEADERS": []}
    current = "HEADERS"
    for line in text.split("\n"):
        if line.startswith(MARK + "|"):
            current = line[len(MARK) + 1:].strip()
            sections[current] = []
            continue
        sections.setdefault(current, []).append(line)
    return {"headers": "\n".join(sections.get("HEADERS", [])).strip("\n"),
            "text": "\n".join(sections.get("TEXT", [])).strip("\n"),
            "html": "\n".join(sections.get("HTML", [])).strip("\n"),
            "attachments": [l for l in sections.get("ATTACHMENTS", []) if l.strip()]}


def _log_lines(client: Any, label: str, msgid: str) -> tuple[list[str], str]:
    if not msgid:
        return [], ""
    text, failure = _command(client, label, ["searchlog", "-n", "500", "--", msgid], deadline=20)
    return [line for line in text.split("\n") if line.strip()], failure


# -- saved filters ------------------------------------------------------------------------

def _store() -> Any:
    from flask import current_app

    return current_app.extensions["console"].store


def _saved() -> list[tuple[str, str]]:
    store = _store()
    if store is None:
        return []
    with store.transaction(read_only=True) as session:
        rows = session.execute(select(ConsoleFilter.name, ConsoleFilter.query)
                               .where(ConsoleFilter.username == web.current().user,
                                      ConsoleFilter.page == "tracking")
                               .order_by(ConsoleFilter.name)).all()
    return [(str(name), str(query)) for name, query in rows]


@bp.post("/tracking/filters")
def save_filter() -> Response:
    name = request.form.get("name", "").strip()[:100]
    view = View.of(request.form)
    if not name:
        web.forbidden("a saved filter needs a name")
    store = _store()
    if store is None:
        web.forbidden("saved filters need the node's store")
    query = urlencode(view.query())
    user = web.current().user
    with store.transaction() as session:
        count = len(session.execute(select(ConsoleFilter.id).where(
            ConsoleFilter.username == user, ConsoleFilter.page == "tracking")).all())
        existing = session.execute(select(ConsoleFilter).where(
            ConsoleFilter.username == user, ConsoleFilter.page == "tracking",
            ConsoleFilter.name == name)).scalar_one_or_none()
        if existing is not None:
            existing.query = query
        elif count >= _MAX_FILTERS:
            web.forbidden(f"at most {_MAX_FILTERS} saved filters per user")
        else:
            session.add(ConsoleFilter(username=user, name=name, query=query, created=time.time()))
    return redirect(url_for("tracking.index") + ("?" + query if query else ""), code=303)


@bp.post("/tracking/filters/delete")
def delete_filter() -> Response:
    name = request.form.get("name", "")
    store = _store()
    if store is not None:
        with store.transaction() as session:
            session.execute(delete(ConsoleFilter).where(
                ConsoleFilter.username == web.current().user, ConsoleFilter.page == "tracking",
                ConsoleFilter.name == name))
    return redirect(url_for("tracking.index"), code=303)
