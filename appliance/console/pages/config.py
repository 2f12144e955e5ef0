"""Configuration: revisions with author and time, a diff between any two, revert, the text
edited with every problem shown at its line and column before anything is saved, and the
nodes' own overrides (`local:` keys)."""

from __future__ import annotations

import re
import time
from typing import Any, NoReturn

from flask import Blueprint, abort, jsonify, redirect, request, url_for

from appliance.console import single, web
from appliance.console.nodes import items
from appliance.console.pages import Page
from appliance.errors import InvalidInput

bp = Blueprint("config", __name__)
PAGE = Page(name="config", title="Configuration", path="/config", blueprint=bp)

LOCAL = "local:"
_PROBLEM = re.compile(r"line (\d+), column (\d+): (.*?)(?=; line \d+, column \d+: |$)", re.S)


@bp.get("/config")
def index() -> Any:
    target = single.member(request.args.get("node"))
    error = ""
    try:
        revisions = items(single.call(target, "configRevisionLog", offset=0, limit=50))
        text = str(single.call(target, "configTextGet") or "")
    except single.CallFailed as exc:
        revisions, text, error = [], "", exc.message
    log = [{"id": int(r.id), "ts": int(r.ts), "when": _when(int(r.ts)), "author": str(r.author or ""),
            "comment": str(r.comment or "")} for r in revisions]
    diff, pair = [], _pair(log)
    if pair is not None:
        try:
            diff = _diff_lines(str(single.call(target, "configRevisionDiff", **{"from": pair[0], "to": pair[1]})
                                   or ""))
        except single.CallFailed as exc:
            error = exc.message
    members = web.selected()
    with web.cluster(members) as client:
        keys = client.call("configKeys")
    overrides = [{"node": m.label, "error": keys.errors.get(m.label),
                  "keys": [(str(k.key)[len(LOCAL):], str(k.value or "")) for k in items(keys.values.get(m.label))
                           if str(k.key).startswith(LOCAL)]} for m in members]
    return web.render("config.html", title="Configuration", target=target, log=log, text=text,
                      error=error, pair=pair, diff=diff, overrides=overrides,
                      reverted=request.args.get("reverted", type=int),
                      can_edit=web.can("configTextSet"), can_revert=web.can("configRevisionRevert"),
                      can_override=web.can("configKeySet"))


@bp.post("/config/check")
@single.json_view
def check() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    found = items(single.call(target, "configTest", text=str(body.get("text") or "")))
    return jsonify({"problems": [{"line": int(p.line), "column": int(p.column), "message": str(p.message)}
                                 for p in found]})


@bp.post("/config/save")
@single.json_view
def save() -> Any:
    """configTextSet validates the whole text and saves nothing when it is wrong: its fault
    names every problem's line and column, which the page marks in the editor."""
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    try:
        revision = single.call(target, "configTextSet", text=str(body.get("text") or ""),
                               comment=str(body.get("comment") or "edited in the console"))
    except single.CallFailed as exc:
        problems = problems_of(exc.message)
        if not exc.fault or not problems:
            raise
        response = jsonify({"error": exc.message, "problems": problems, "node": target.label})
        response.status_code = 400
        return response
    return jsonify({"revision": int(revision)})


@bp.post("/config/revert")
def revert() -> Any:
    target = single.member(request.form.get("node"))
    revision = request.form.get("id", type=int)
    if revision is None:
        raise InvalidInput("name the revision to revert to")
    try:
        made = single.call(target, "configRevisionRevert", id=revision,
                           comment=request.form.get("comment") or f"revert to revision {revision}")
    except single.CallFailed as exc:
        _fail(exc)
    return redirect(url_for("config.index", node=request.form.get("node") or None,
                            reverted=int(made)), code=303)


@bp.post("/config/override")
def override() -> Any:
    """Set (or, with an empty value, remove) one node's own value of a key."""
    node = request.form.get("node", "")
    target = single.member(node)
    key = (request.form.get("key") or "").strip().removeprefix(LOCAL)
    if not key:
        raise InvalidInput("name the key to override")
    try:
        single.call(target, "configKeySet", key=LOCAL + key, value=request.form.get("value", ""),
                    comment=f"override of {key} on {target.label}")
    except single.CallFailed as exc:
        _fail(exc)
    return redirect(url_for("config.index"), code=303)


def problems_of(message: str) -> list[dict[str, Any]]:
    """The problems a configTextSet fault names (`line 3, column 5: ...; line ...`)."""
    return [{"line": int(m.group(1)), "column": int(m.group(2)), "message": m.group(3).strip()}
            for m in _PROBLEM.finditer(message)]


def _fail(exc: single.CallFailed) -> NoReturn:
    abort(400 if exc.fault else 502, description=f"{exc.member}: {exc.message}")


def _pair(log: list[dict[str, Any]]) -> tuple[int, int] | None:
    first, second = request.args.get("from", type=int), request.args.get("to", type=int)
    if first is None and second is None:
        return (log[1]["id"], log[0]["id"]) if len(log) >= 2 else None
    if first is None or second is None:
        return None
    return first, second


def _diff_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") and not line.startswith("+++") \
            else "del" if line.startswith("-") and not line.startswith("---") else "same"
        out.append((kind, line))
    return out


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
