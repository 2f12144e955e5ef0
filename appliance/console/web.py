"""What a page's view uses: the current session, the nodes it addresses, rendering, checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

from appliance_client.cluster import Cluster
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


def htmx() -> bool:
    """Is this an htmx request for a fragment (rather than a whole page)?"""
    return request.headers.get("HX-Request") == "true"
