"""Saved views of one user on one page (the console's own table, console_filter): a name and
the query string that reproduces the view."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from appliance.console import web
from appliance.db.models_console import ConsoleFilter
from appliance.errors import InvalidInput

MAX_PER_PAGE = 50


def _store() -> Any:
    return current_app.extensions["console"].store


def listed(page: str) -> list[tuple[str, str]]:
    store = _store()
    if store is None:
        return []
    with store.transaction(read_only=True) as session:
        rows = session.execute(select(ConsoleFilter.name, ConsoleFilter.query).where(
            ConsoleFilter.username == web.current().user, ConsoleFilter.page == page,
        ).order_by(ConsoleFilter.name)).all()
    return [(str(name), str(query)) for name, query in rows]


def save(page: str, name: str, query: str) -> None:
    name = name.strip()[:100]
    if not name:
        raise InvalidInput("a saved view needs a name")
    store = _store()
    if store is None:
        raise InvalidInput("saved views need the node's store")
    user = web.current().user
    with store.transaction() as session:
        mine = (ConsoleFilter.username == user, ConsoleFilter.page == page)
        existing = session.execute(select(ConsoleFilter).where(
            *mine, ConsoleFilter.name == name)).scalar_one_or_none()
        if existing is not None:
            existing.query = query
            return
        if len(session.execute(select(ConsoleFilter.id).where(*mine)).all()) >= MAX_PER_PAGE:
            raise InvalidInput(f"at most {MAX_PER_PAGE} saved views per page")
        session.add(ConsoleFilter(username=user, page=page, name=name, query=query,
                                  created=time.time()))


def remove(page: str, name: str) -> None:
    store = _store()
    if store is None:
        return
    with store.transaction() as session:
        session.execute(delete(ConsoleFilter).where(
            ConsoleFilter.username == web.current().user, ConsoleFilter.page == page,
            ConsoleFilter.name == name))
