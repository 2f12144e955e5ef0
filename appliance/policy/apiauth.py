"""API access delegated to a script: `api_auth(username, password, operation, arguments)`.

The script returns accept() to allow the call, reject(...) to refuse it, or nothing to leave
the decision to the built-in access levels (appliance.access.levels). A script failure falls
back to the built-in levels too: they are the configured truth, the script only refines it.
The SOAP layer calls `ApiAuthScript.decide` after the credentials are known and before the
built-in level check; `True` -> allowed, `False` -> Forbidden, `None` -> the built-in check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from appliance.policy.functions import Bindings, Functions, RunContext
from appliance.policy.sandbox import Limits, Sandbox, ScriptError, to_lua

log = logging.getLogger(__name__)

SCRIPT_ID = "api-auth"  # the config's scripts["api-auth"], when present, decides API access
HANDLER = "api_auth"


class ApiAuthScript:
    def __init__(self, text: str, *, functions: Functions = Functions(), limits: Limits = Limits()) -> None:
        self._bindings = Bindings(functions, script=SCRIPT_ID)
        self._sandbox = Sandbox(text, name=SCRIPT_ID, limits=limits,
                                functions=self._bindings.table(), deadline=self._bindings.deadline)
        runtime = self._sandbox.runtime
        self._bindings.to_lua = lambda value: to_lua(runtime, value)

    def decide(self, username: str, password: str, operation: str,
               arguments: Mapping[str, Any]) -> bool | None:
        with self._sandbox.lock:
            self._bindings.ctx = RunContext(flow=HANDLER, label=f"[api {username}]", metadata_writable=False)
            try:
                result = self._sandbox.call(HANDLER, username, password, operation, _plain(arguments),
                                            session={"username": username, "operation": operation})
            except ScriptError as exc:
                log.error("api-auth script failed for %s calling %s, using the built-in levels: %s",
                          username, operation, exc)
                return None
        decision = result.get("decision") if isinstance(result, dict) else None
        log.info("api-auth %s %s: %s", username, operation, decision or "built-in levels")
        if decision == "accept":
            return True
        if decision in ("reject", "defer"):
            return False
        return None


def _plain(arguments: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[str(key)] = value
        elif isinstance(value, (list, tuple)):
            out[str(key)] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        else:
            out[str(key)] = str(value)
    return out
