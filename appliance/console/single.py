"""One call to one node for the pages that act on a single node (graphs, scripts, config,
terminal), and the JSON shape of their answers and failures."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from appliance_client.errors import NodeError, NodeFault
from flask import Response, jsonify, request

from appliance.console import web
from appliance.console.nodes import Member
from appliance.errors import ApplianceError

F = TypeVar("F", bound=Callable[..., Any])


class CallFailed(Exception):
    """A node answered with a fault (`fault` true) or did not answer at all."""

    def __init__(self, member: str, message: str, *, fault: bool) -> None:
        super().__init__(message)
        self.member = member
        self.message = message
        self.fault = fault


def member(label: str | None = None) -> Member:
    """The node named `label` among those the session may address, else the first selected
    one (this node when the whole cluster is selected)."""
    everyone, _ = web.nodes().members(web.current())
    if label:
        for m in everyone:
            if m.label == label:
                return m
        raise CallFailed(label, f"no node {label!r} in this cluster", fault=True)
    chosen = web.selected()
    own = [m for m in chosen if m.own]
    return (own or chosen)[0]


def call(target: Member, operation: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
    """`operation` on `target` as the session's user; CallFailed with the node's words."""
    with web.cluster([target], timeout=timeout) as client:
        result = client.call(operation, **kwargs)
    if target.label in result.values:
        return result.values[target.label]
    error: NodeError | None = result.errors.get(target.label)
    message = error.message if error is not None else "no answer"
    raise CallFailed(target.label, message, fault=isinstance(error, NodeFault))


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def json_view(fn: F) -> F:
    """A view answering JSON: a node's fault is 400 with its message, a node that did not
    answer 502, bad input 400 — always `{"error": ..., "node": ...}`, never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CallFailed as exc:
            return _error(exc.message, 400 if exc.fault else 502, node=exc.member)
        except ApplianceError as exc:
            return _error(str(exc), 400)

    return wrapper  # type: ignore[return-value]


def _error(message: str, status: int, *, node: str = "") -> Response:
    response = jsonify({"error": message, "node": node})
    response.status_code = status
    return response
