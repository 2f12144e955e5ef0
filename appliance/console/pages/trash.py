"""Trash: deleted queue entries still restorable on the selected nodes (mailTrash), and restore
or purge of the selected rows or of every match, each node's count first, then its result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, request, url_for

from appliance.console import web
from appliance.console.pages import Page
from appliance.console.tracking import DEFAULT_SIZE, PAGE_SIZES, page_size, text_of

bp = Blueprint("trash", __name__)
PAGE = Page(name="trash", title="Trash", path="/trash", blueprint=bp)

OPERATIONS = {"restore": "mailTrashRestore", "purge": "mailTrashPurge"}
LABELS = {"restore": "Restore", "purge": "Purge"}
_MAX_STACK = 200


@dataclasses.dataclass(frozen=True)
class TrashView:
    filter: str = ""  # HQL on the trash: the queue's fields, `deleted` and `deletedby`
    size: int = DEFAULT_SIZE

    @classmethod
    def of(cls, args: Mapping[str, str]) -> "TrashView":
        return cls(filter=args.get("filter", "").strip(), size=page_size(args))

    def query(self) -> dict[str, str]:
        out = {"filter": self.filter} if self.filter else {}
        if self.size != DEFAULT_SIZE:
            out["size"] = str(self.size)
        return out


def _row(label: str, item: Any) -> dict[str, Any]:
    return {"node": label, "id": int(item.id), "key": f"{label}|{int(item.id)}",
            "msgid": text_of(item.msgid), "sender": text_of(item.msgfrom),
            "recipient": text_of(item.msgto), "subject": text_of(item.msgsubject),
            "state": text_of(item.msgqueue), "retries": int(item.msgretries or 0),
            "deleted": web.stamp(item.msgdeleted), "deletedby": text_of(item.msgdeletedby)}


@bp.get("/trash")
def index() -> str:
    view = TrashView.of(request.args)
    members = web.selected()
    stack = web.cursors("trash", (view.filter, view.size, web.current().node))
    number = web.page_number(len(stack))
    with web.cluster(members) as client:
        page = client.trash(filter=view.filter, limit=view.size, cursor=stack[number - 1] or None)
    more = any(page.cursor.get(label, 0) < total for label, total in page.totals.items())
    if more:
        del stack[number:]
        if len(stack) < _MAX_STACK:
            stack.append(page.cursor)
    actions = [a for a, op in OPERATIONS.items() if web.can(op)]
    return web.render("trash.html", title="Trash", view=view, number=number,
                      rows=[_row(label, item) for label, item in page.items],
                      totals=page.totals, total=sum(page.totals.values()), errors=page.errors,
                      has_next=more and len(stack) > number, actions=actions, labels=LABELS,
                      page_sizes=PAGE_SIZES, link=lambda **kw: _link(view, **kw))


def _link(view: TrashView, **extra: Any) -> str:
    args = view.query()
    args.update({k: str(v) for k, v in extra.items()})
    return url_for("trash.index") + ("?" + urlencode(args) if args else "")


@bp.post("/trash/act")
def act() -> str:
    action = request.form.get("op", "")
    if action not in OPERATIONS:
        web.forbidden(f"unknown action {action!r}")
    web.require(OPERATIONS[action])
    scope = "all" if request.form.get("scope") == "all" else "selected"
    confirmed = request.form.get("confirm") == "1"
    view = TrashView.of(request.form)
    members = web.selected()
    chosen = web.selection(members) if scope == "selected" else {}
    if scope == "selected" and not chosen:
        return web.render("act_panel.html", stage="empty")
    with web.cluster([m for m in members if scope == "all" or m.label in chosen]) as client:
        if scope == "all":
            helper = client.trash_restore if action == "restore" else client.trash_purge
            result = helper(filter=view.filter, preview=not confirmed)
        else:
            # Queue ids are per node: each node gets the ids chosen of its own rows.
            result = client.call_each({label: {"filter": " or ".join(f"queueid={i}" for i in ids),
                                               **({} if confirmed else {"preview": True})}
                                       for label, ids in chosen.items()}, OPERATIONS[action])
    if not confirmed:
        counts = {label: int(v or 0) for label, v in result.values.items()}
        return web.render("act_panel.html", stage="confirm", action=action, scope=scope,
                          labels=LABELS, counts=counts, errors=result.errors, view=view,
                          chosen=chosen, noun="trashed entries")
    return web.render("act_panel.html", stage="done", action=action, labels=LABELS,
                      results=web.per_node_results(result))
