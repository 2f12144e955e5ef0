"""What a page's view uses: the current session, the nodes it addresses, rendering, checks."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any, NoReturn

from appliance_client.cluster import Cluster, ClusterResult
from flask import abort, current_app, g, render_template, request

from appliance.console.nodes import Member, Nodes
from appliance.console.sessions import ConsoleSession


def current() -> ConsoleSession:
    """The logged-in session of this request (views only run logged in)."""
    session: ConsoleSession = g.console_session
    return session


def nodes() -> Nodes:
    found: Nodes = current_app.extensions["console"].nodes
    return found


def selected() -> list[Member]:
    """The nodes this request addresses: the `node` argument (or the header's choice)."""
    return nodes().selected(current(), request.args.get("node"))


@contextlib.contextmanager
def cluster(members: list[Member] | None = None, *, timeout: float | None = None) -> Iterator[Cluster]:
    """The fan-out client for `members` (default: the selected nodes) as the session's user."""
    with nodes().cluster(current(), members if members is not None else selected(),
                         timeout=timeout) as client:
        yield client


def can(operation: str) -> bool:
    """May the user call `operation`? Decides which controls a page shows; the API still
    checks every call itself."""
    level = current().level
    if level is None:
        return False
    mutating = current_app.extensions["console"].mutating.get(operation, True)
    return level.allows(operation, mutating=mutating)


def require(operation: str) -> None:
    if not can(operation):
        forbidden(f"this user may not call {operation}")


def forbidden(message: str) -> NoReturn:
    abort(403, description=message)


def is_admin() -> bool:
    level = current().level
    return level is not None and level.is_admin


def render(template: str, **context: Any) -> str:
    return render_template(template, **context)


def selection(members: list[Member], *, most: int = 500) -> dict[str, list[int]]:
    """The selected rows of a posted form by node: checkbox values `node|id`, only of the
    addressed `members`, at most `most` ids per node (a page's worth)."""
    known = {m.label for m in members}
    chosen: dict[str, list[int]] = {}
    for value in request.form.getlist("sel"):
        label, _, ident = value.rpartition("|")
        ids = chosen.setdefault(label, []) if label in known and ident.isdigit() else None
        if ids is not None and int(ident) not in ids and len(ids) < most:
            ids.append(int(ident))
    return {label: ids for label, ids in chosen.items() if ids}


def cursors(page: str, key: object) -> list[dict[str, int]]:
    """The start cursors of the pages seen of one view of `page` (page 1's is empty), kept in
    the session; another view (`key`) starts again from page 1."""
    state = current().data.setdefault(page, {})
    if state.get("key") != key:
        state.clear()
        state["key"] = key
        state["cursors"] = [{}]
    stack: list[dict[str, int]] = state["cursors"]
    return stack


def page_number(pages_seen: int) -> int:
    """The `page` argument (1 when absent or bad), no further than the pages seen."""
    try:
        number = max(1, int(request.args.get("page", "1")))
    except ValueError:
        number = 1
    return min(number, pages_seen)


def per_node_results(result: ClusterResult) -> dict[str, dict[str, Any]]:
    """A bulk call's answer per node as the action panels show it: how many, or the error."""
    results: dict[str, dict[str, Any]] = {
        label: {"done": int(v or 0), "failed": []} for label, v in result.values.items()}
    for label, error in result.errors.items():
        results[label] = {"done": 0, "failed": [("all", error.message)], "error": error.message}
    return results


def stamp(ts: Any) -> str:
    """Unix seconds as the console shows them (UTC); 0 or none as a dash."""
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def htmx() -> bool:
    """Is this an htmx request for a fragment (rather than a whole page)?"""
    return request.headers.get("HX-Request") == "true"
