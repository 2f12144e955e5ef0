"""Scripts: each flow's Lua script in an editor, tried in the sandbox (scriptTest) against a
test message and envelope, diffed against the running revision, saved as a new revision."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, request, url_for

from appliance.console import single, web
from appliance.console.nodes import items
from appliance.console.pages import Page
from appliance.errors import InvalidInput

bp = Blueprint("scripts", __name__)
PAGE = Page(name="scripts", title="Scripts", path="/scripts", blueprint=bp)

FLOWS = ("connect", "auth", "mail_from", "rcpt_to", "data", "pre_delivery", "post_delivery")
TEST_MESSAGE = ("From: sender@example.org\r\nTo: test@example.com\r\nSubject: test message\r\n"
                "Message-ID: <test@example.org>\r\n\r\nHello.\r\n")


@bp.get("/scripts")
@bp.get("/scripts/<script_id>")
def index(script_id: str = "") -> Any:
    if request.args.get("new"):
        return redirect(url_for("scripts.index", script_id=request.args["new"].strip()))
    target = single.member(request.args.get("node"))
    error, scripts = "", []
    try:
        keys = items(single.call(target, "configKeys"))
    except single.CallFailed as exc:
        keys, error = [], exc.message
    for key in keys:
        params = [str(p or "") for p in items(getattr(key, "params", None))]
        if str(key.key).startswith("script_flow__") and len(params) >= 2:
            scripts.append({"id": params[0], "key": str(key.key), "text": params[-1],
                            "running": str(key.effective if key.effective is not None else params[-1]),
                            "source": str(key.source or "")})
    chosen: dict[str, str] | None = next((s for s in scripts if s["id"] == script_id), None)
    if chosen is None and script_id:  # a new script: empty until it is saved
        chosen = {"id": script_id, "key": "", "text": "", "running": "", "source": "new"}
    elif chosen is None and scripts:
        chosen = scripts[0]
    return web.render("scripts.html", title="Scripts", target=target, scripts=scripts,
                      chosen=chosen, error=error, flows=FLOWS, message=TEST_MESSAGE,
                      can_test=web.can("scriptTest"), can_save=web.can("configKeySet"))


@bp.post("/scripts/test")
@single.json_view
def test() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    flow = str(body.get("flow") or "")
    if flow not in FLOWS:
        raise InvalidInput(f"flow must be one of {', '.join(FLOWS)}")
    raw = body.get("envelope")
    given: dict[str, Any] = raw if isinstance(raw, dict) else {}
    recipients = [r.strip() for r in str(given.get("recipients") or "").replace(",", " ").split() if r.strip()]
    envelope = {"sender": str(given.get("sender") or ""), "recipients": {"item": recipients},
                "clientip": str(given.get("clientip") or ""), "helo": str(given.get("helo") or ""),
                "saslusername": str(given.get("saslusername") or "")}
    message = str(body.get("message") or "").replace("\r\n", "\n").replace("\n", "\r\n")
    found = items(single.call(target, "scriptTest", flow=flow, script=str(body.get("script") or ""),
                              message=message.encode("utf-8"), envelope=envelope))
    lines = [{"kind": str(i.kind), "text": _text(i.text)} for i in found]
    decisions = [line["text"] for line in lines if line["kind"] == "decision"]
    return jsonify({"lines": lines, "decision": decisions[-1] if decisions else ""})


@bp.post("/scripts/save")
@single.json_view
def save() -> Any:
    body = single.json_body()
    target = single.member(str(body.get("node") or ""))
    script_id = str(body.get("id") or "").strip()
    if not script_id:
        raise InvalidInput("the script needs an id")
    text = str(body.get("text") or "")
    revision = single.call(target, "configKeySet", key=f"scripts.{script_id}", value=text,
                           comment=str(body.get("comment") or f"script {script_id} from the console"))
    return jsonify({"revision": int(revision), "id": script_id})


def _text(value: Any) -> str:
    if value is None:
        return ""
    raw = value if isinstance(value, bytes) else b"".join(value)
    return raw.decode("utf-8", "replace")
