"""The web console: a Flask (WSGI) application mounted beside SOAP on the API listener.

Flask is mounted as it is into the listener's cheroot WSGI server (no bridge), and renders
Jinja2 templates with autoescaping on for every template; htmx (vendored) swaps fragments.
Everything the console shows or does goes through the node's own SOAP API with the logged-in
user's credentials (appliance.console.nodes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from appliance.console import pages as page_registry
from appliance.console.nodes import Nodes
from appliance.console.security import (CSRF_FIELD, CSRF_HEADER, HEADERS, SAFE_METHODS,
                                        same_origin, token_matches)
from appliance.console.sessions import COOKIE, ConsoleSession, SessionStore
from appliance.soap.auth import Authenticator

HERE = Path(__file__).resolve().parent
PUBLIC_ENDPOINTS = frozenset({"login", "login_post", "static"})


@dataclasses.dataclass
class ConsoleState:
    """What the views reach through `current_app.extensions["console"]`."""

    nodes: Nodes
    authenticator: Authenticator
    sessions: SessionStore
    mutating: dict[str, bool]  # operation -> is it mutating (from the SOAP application)
    pages: list[page_registry.Page]
    store: Any = None  # the node's store, for the console's own small tables (saved filters)


def create_app(*, nodes: Nodes, authenticator: Authenticator, mutating: dict[str, bool],
               sessions: SessionStore | None = None, store: Any = None) -> Flask:
    app = Flask("appliance.console", root_path=str(HERE), template_folder="templates",
                static_folder="static", static_url_path="/static")
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.config.update(MAX_CONTENT_LENGTH=1 << 20, SESSION_COOKIE_NAME="__unused",
                      SEND_FILE_MAX_AGE_DEFAULT=300)
    found = page_registry.load()
    state = ConsoleState(nodes=nodes, authenticator=authenticator,
                         sessions=sessions or SessionStore(), mutating=mutating, pages=found,
                         store=store)
    app.extensions["console"] = state
    for page in found:
        app.register_blueprint(page.blueprint)

    @app.before_request
    def _load_session() -> Any:
        session = state.sessions.get(request.cookies.get(COOKIE))
        g.console_session = session
        g.new_cookie = None
        if request.method not in SAFE_METHODS:
            if not same_origin(request.headers.get("Origin"), request.host, request.scheme):
                return _refuse(403, "cross-origin request refused")
            given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
            if session is None or not token_matches(session.csrf, given):
                return _refuse(403, "missing or wrong CSRF token; reload the page")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if session is None or not session.logged_in:
            if request.headers.get("HX-Request") == "true":
                return Response("", status=401, headers={"HX-Redirect": url_for("login")})
            if request.method in SAFE_METHODS:
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            return _refuse(401, "log in first")
        if "node" in request.args and request.args["node"] != session.node:
            session.node = request.args["node"]
        page = _page_of(request.blueprint)
        if page is not None and page.admin_only and not (session.level and session.level.is_admin):
            return _refuse(403, "this page is for admins")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in HEADERS:
            response.headers.setdefault(name, value)
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        if request.scheme == "https":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        new = getattr(g, "new_cookie", None)
        if new is not None:
            if new:
                response.set_cookie(COOKIE, new, path="/", secure=True, httponly=True,
                                    samesite="Strict")
            else:
                response.delete_cookie(COOKIE, path="/", secure=True, httponly=True,
                                       samesite="Strict")
        return response

    @app.errorhandler(HTTPException)
    def _error(exc: HTTPException) -> Any:
        return _refuse(exc.code or 500, exc.description or exc.name)

    def _page_of(blueprint: str | None) -> page_registry.Page | None:
        return next((p for p in state.pages if p.name == blueprint), None)

    @app.context_processor
    def _layout() -> dict[str, Any]:
        session: ConsoleSession | None = getattr(g, "console_session", None)
        logged_in = session is not None and session.logged_in
        admin = bool(logged_in and session and session.level and session.level.is_admin)
        nav = [p for p in state.pages if admin or not p.admin_only] if logged_in else []
        return {"nav": nav, "session": session if logged_in else None,
                "node_members": (lambda: state.nodes.members(session)) if logged_in and session else None,
                "csrf_token": session.csrf if session is not None else "",
                "csrf_field": _csrf_field, "page": request.blueprint or ""}

    def _csrf_field() -> Markup:
        session: ConsoleSession | None = getattr(g, "console_session", None)
        token = session.csrf if session is not None else ""
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)

    @app.get("/login")
    def login() -> Any:
        session = g.console_session
        if session is not None and session.logged_in:
            return redirect(_next_url())
        if session is None:
            session = state.sessions.new()
            g.console_session = session
            g.new_cookie = session.id
        return render_template("login.html", error="", next=_next_url(), username="")

    @app.post("/login")
    def login_post() -> Any:
        old: ConsoleSession = g.console_session
        name = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        remote = str(request.remote_addr or "")
        if not name or not password:
            return _login_again(old, "enter a user name and password", 400, name)
        checked = authenticator.check(name, password, remote)
        if checked.retry_after:
            response = _login_again(old, "too many failed logins; try again in "
                                    f"{int(checked.retry_after) + 1} s", 429, name)
            response.headers["Retry-After"] = str(int(checked.retry_after) + 1)
            return response
        if checked.level is None:
            return _login_again(old, "wrong user name or password", 401, name)
        made = state.sessions.login(old, user=checked.user, password=password,
                                    level=checked.level)
        g.console_session = made
        g.new_cookie = made.id
        return redirect(_next_url(), code=303)

    def _login_again(old: ConsoleSession, error: str, status: int, name: str) -> Response:
        # A failed attempt gets a fresh pre-login session too: the token it used is spent.
        state.sessions.drop(old.id)
        fresh = state.sessions.new()
        g.console_session = fresh
        g.new_cookie = fresh.id
        body = render_template("login.html", error=error, next=_next_url(), username=name)
        return Response(body, status=status)

    @app.post("/logout")
    def logout() -> Any:
        session: ConsoleSession = g.console_session
        state.sessions.drop(session.id)
        g.console_session = None
        g.new_cookie = ""
        return redirect(url_for("login"), code=303)

    return app


def _next_url() -> str:
    """Where to go after the login: a path on this console, never another site."""
    wanted = request.values.get("next", "") or "/"
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not wanted.startswith("/") or wanted.startswith("//"):
        return "/"
    return wanted


def _refuse(status: int, message: str) -> Response:
    if request.headers.get("HX-Request") == "true" or request.accept_mimetypes.best == "text/plain":
        return Response(message + "\n", status=status, mimetype="text/plain")
    body = render_template("error.html", status=status, message=message)
    return Response(body, status=status)


def node_console(*, authenticator: Authenticator, mutating: dict[str, bool], own_url: Callable[[], str],
                 own_name: Callable[[], str], own_serial: str, own_ca_file: str | None,
                 member_ca_file: str | None, store: Any = None,
                 idle: float = 1800.0) -> Flask:
    """The console of one node (the API process's), reaching that node over loopback."""
    from appliance.console.nodes import NodeAccess
    from appliance.resources import data_path

    access = NodeAccess(own_url=own_url, own_name=own_name, own_serial=own_serial,
                        wsdl=str(data_path("wsdl") / "appliance.wsdl"), own_ca_file=own_ca_file,
                        member_ca_file=member_ca_file)
    return create_app(nodes=Nodes(access), authenticator=authenticator, mutating=mutating,
                      sessions=SessionStore(idle=idle), store=store)
