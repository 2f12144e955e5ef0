"""Terminal: appliance commands (commandRun) in an ANSI terminal (xterm.js) with input
(commandPush), Ctrl-C (commandSignal), resize (commandTermsize) and polled output."""

from __future__ import annotations

import shlex
from typing import Any

from flask import Blueprint, jsonify, request

from appliance.console import single, web
from appliance.console.nodes import items
from appliance.console.pages import Page
from appliance.errors import InvalidInput

bp = Blueprint("terminal", __name__)
PAGE = Page(name="terminal", title="Terminal", path="/terminal", blueprint=bp)


@bp.get("/terminal")
def index() -> str:
    members, _ = web.nodes().members(web.current())
    target = single.member(request.args.get("node"))
    commands: list[Any] = []
    error = ""
    try:
        commands = items(single.call(target, "commandList"))
    except single.CallFailed as exc:
        error = exc.message
    return web.render("terminal.html", title="Terminal", target=target, node_choices=members,
                      commands=[{"name": str(c.name), "usage": str(c.usage or "")} for c in commands],
                      error=error, can_run=web.can("commandRun"))


@bp.post("/terminal/run")
@single.json_view
def run() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    try:
        argv = shlex.split(str(body.get("line") or ""))
    except ValueError as exc:
        raise InvalidInput(f"cannot split the command line: {exc}") from None
    if not argv:
        raise InvalidInput("type a command (commandList shows them)")
    cid = single.call(target, "commandRun", argv={"item": [a.encode() for a in argv]},
                      cols=_size(body.get("cols"), 80), rows=_size(body.get("rows"), 24))
    return jsonify({"id": str(cid), "node": target.label})


@bp.post("/terminal/poll")
@single.json_view
def poll() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    try:
        chunks = items(single.call(target, "commandPoll", commandid=str(body.get("id") or "")))
    except single.CallFailed as exc:
        if not exc.fault:
            raise
        return jsonify({"output": "", "ended": exc.message})
    text = b"".join(bytes(c) for c in chunks).decode("utf-8", "replace")
    return jsonify({"output": text, "ended": ""})


@bp.post("/terminal/input")
@single.json_view
def push() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    single.call(target, "commandPush", commandid=str(body.get("id") or ""),
                data=str(body.get("data") or "").encode("utf-8"))
    return jsonify({"ok": True})


@bp.post("/terminal/signal")
@single.json_view
def signal() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    single.call(target, "commandSignal", commandid=str(body.get("id") or ""),
                signal=str(body.get("signal") or "interrupt"))
    return jsonify({"ok": True})


@bp.post("/terminal/resize")
@single.json_view
def resize() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    single.call(target, "commandTermsize", commandid=str(body.get("id") or ""),
                cols=_size(body.get("cols"), 80), rows=_size(body.get("rows"), 24))
    return jsonify({"ok": True})


def _size(value: Any, default: int) -> int:
    try:
        return max(1, min(10000, int(value)))
    except (TypeError, ValueError):
        return default
