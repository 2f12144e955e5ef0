"""Users and access levels (admins only): userList, userAdd, userDelete, userPasswordSet on
the selected nodes, each node's result shown."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from appliance.console import web
from appliance.console.nodes import items
from appliance.console.pages import Page

bp = Blueprint("users", __name__)
PAGE = Page(name="users", title="Users", path="/users", blueprint=bp, admin_only=True)
ROLES = ("admin", "readonly", "custom", "metrics")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _page(results: dict[str, str] | None = None, done: str = "") -> str:
    members = web.selected()
    with web.cluster(members) as client:
        listed = client.call("userList")
    users: dict[str, dict[str, Any]] = {}
    for label, value in listed.values.items():
        for item in items(value):
            entry = users.setdefault(str(item.username), {
                "role": str(item.role), "restriction": str(item.restriction or ""),
                "operations": [str(o) for o in items(item.operations)],
                "commands": [str(c) for c in items(item.commands)], "nodes": []})
            entry["nodes"].append(label)
    return web.render("users.html", title="Users", users=users, members=members,
                      errors=listed.errors, roles=ROLES, results=results or {}, done=done,
                      me=web.current().user)


def _outcome(result: Any) -> dict[str, str]:
    out = {label: "done" for label in result.values}
    out.update({label: f"refused: {err.message}" for label, err in result.errors.items()})
    return out


@bp.get("/users")
def index() -> str:
    return _page()


@bp.post("/users/add")
def add() -> str:
    web.require("userAdd")
    form = request.form
    role = form.get("role", "readonly")
    with web.cluster() as client:
        result = client.call("userAdd", username=form.get("username", "").strip(),
                             password=form.get("password", ""), role=role,
                             operations={"item": _lines(form.get("operations", ""))},
                             restriction=form.get("restriction", ""),
                             commands={"item": _lines(form.get("commands", ""))})
    return _page(_outcome(result), f"add {form.get('username', '').strip()}")


@bp.post("/users/delete")
def delete() -> str:
    web.require("userDelete")
    name = request.form.get("username", "")
    with web.cluster() as client:
        result = client.call("userDelete", username=name)
    if result.values:
        current_app.extensions["console"].sessions.drop_user(name)
    return _page(_outcome(result), f"delete {name}")


@bp.post("/users/password")
def password() -> str:
    web.require("userPasswordSet")
    name = request.form.get("username", "")
    new = request.form.get("password", "")
    with web.cluster() as client:
        result = client.call("userPasswordSet", username=name, password=new)
    if result.values:
        session = web.current()
        current_app.extensions["console"].sessions.drop_user(name, keep=session.id)
        if name == session.user:
            session.password = new  # this session goes on as its user, with the new password
    return _page(_outcome(result), f"new password for {name}")
