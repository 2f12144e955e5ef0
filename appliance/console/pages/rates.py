"""Rate control: the live rate() buckets of every selected node (hslRate), coloured by the
thresholds the user sets, saved filters per user, and clearing buckets (hslRateClear)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, request, url_for

from appliance.console import saved, web
from appliance.console.nodes import items
from appliance.console.pages import Page
from appliance.errors import InvalidInput

bp = Blueprint("rates", __name__)
PAGE = Page(name="rates", title="Rate control", path="/rates", blueprint=bp)

LIMIT = 500  # buckets per node on one page


@dataclasses.dataclass(frozen=True)
class RateView:
    """What the page shows: which buckets and where the colours change."""

    ns: str = ""
    entry: str = ""
    warn: int = 10
    crit: int = 50

    @classmethod
    def from_args(cls, args: Any) -> "RateView":
        def number(name: str, default: int) -> int:
            try:
                return max(0, int(args.get(name, default)))
            except (TypeError, ValueError):
                return default

        warn, crit = number("warn", cls.warn), number("crit", cls.crit)
        return cls(ns=str(args.get("ns", "")).strip(), entry=str(args.get("entry", "")).strip(),
                   warn=min(warn, crit), crit=max(warn, crit))

    def query(self) -> str:
        return urlencode({"ns": self.ns, "entry": self.entry, "warn": self.warn, "crit": self.crit})

    def level(self, count: int) -> str:
        return "crit" if count >= self.crit else "warn" if count >= self.warn else "ok"


@bp.get("/rates")
def index() -> str:
    view = RateView.from_args(request.args)
    return web.render("rates.html", title="Rate control", view=view, table=_table(view),
                      saved=saved.listed("rates"), can_clear=web.can("hslRateClear"))


@bp.get("/rates/table")
def table() -> str:
    view = RateView.from_args(request.args)
    return web.render("_rates_table.html", view=view, table=_table(view),
                      can_clear=web.can("hslRateClear"))


@bp.post("/rates/clear")
def clear() -> Any:
    """Clear one bucket (ns + entry) on one node, or every bucket the filter shows on the
    selected nodes (entry may be a `%` pattern; empty = all of the namespace)."""
    web.require("hslRateClear")
    view = RateView.from_args(request.form)
    ns, entry = request.form.get("clear_ns", "").strip(), request.form.get("clear_entry", "").strip()
    if not ns:
        abort(400, description="name the namespace to clear")
    node = request.form.get("clear_node", "")
    members = [m for m in web.selected() if not node or m.label == node]
    with web.cluster(members) as client:
        result = client.call("hslRateClear", ns=ns, entry=entry)
    cleared = sum(int(v or 0) for v in result.values.values())
    if web.htmx():
        return web.render("_rates_table.html", view=view, table=_table(view), cleared=cleared,
                          clear_errors=result.errors, can_clear=True)
    return redirect(url_for("rates.index") + "?" + view.query(), code=303)


def _table(view: RateView) -> dict[str, Any]:
    members = web.selected()
    with web.cluster(members) as client:
        result = client.call("hslRate", ns=view.ns, entry=view.entry, offset=0, limit=LIMIT)
    rows: list[dict[str, Any]] = []
    for m in members:
        for r in items(result.values.get(m.label)):
            count = int(r.count or 0)
            rows.append({"node": m.label, "ns": str(r.ns), "entry": str(r.entry), "count": count,
                         "interval": int(r.interval or 0), "expires": int(r.expires or 0),
                         "level": view.level(count)})
    rows.sort(key=lambda r: (-r["count"], r["ns"], r["entry"], r["node"]))
    return {"rows": rows, "errors": result.errors, "levels": {
        k: sum(1 for r in rows if r["level"] == k) for k in ("ok", "warn", "crit")}}


@bp.post("/rates/filters")
def save_filter() -> Any:
    view = RateView.from_args(request.form)
    try:
        saved.save("rates", request.form.get("name", ""), view.query())
    except InvalidInput as exc:
        abort(400, description=str(exc))
    return redirect(url_for("rates.index") + "?" + view.query(), code=303)


@bp.post("/rates/filters/delete")
def delete_filter() -> Any:
    saved.remove("rates", request.form.get("name", ""))
    return redirect(url_for("rates.index"), code=303)
