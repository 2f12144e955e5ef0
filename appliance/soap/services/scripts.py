"""scriptTest: run a policy script against a test message and envelope (nothing real is touched).

It runs code the caller sends, so it is audited like a change and refused to read-only users.
"""

from __future__ import annotations

from typing import Any

from spyne import ByteArray, ComplexModel, ServiceBase, Unicode, rpc

from appliance.policy.http import DEFAULT_ALLOW, UrllibHttpClient
from appliance.policy.queue import count_queued
from appliance.policy.scripttest import ScriptTestEnvelope, run_script_test
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call
from appliance.soap.wire import TNS, Strings, items


class ScriptEnvelope(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "scriptEnvelope"
    _type_info = [
        ("sender", Unicode), ("recipients", Strings), ("clientip", Unicode), ("helo", Unicode),
        ("saslusername", Unicode), ("saslpassword", Unicode), ("listener", Unicode),
        ("transport", Unicode),
    ]


class ScriptTestItem(ComplexModel):
    """kind: decision | output | call | error; text is base64 (scripts may print any bytes)."""

    __namespace__ = TNS
    __type_name__ = "scriptTestItem"
    _type_info = [("kind", Unicode), ("text", ByteArray)]


ScriptTestItems = items(ScriptTestItem, "scriptTestItemArray")


class ScriptService(ServiceBase):  # type: ignore[misc]
    @rpc(Unicode, Unicode, ByteArray, ScriptEnvelope, _returns=ScriptTestItems, _out_variable_name="result",
         _udd=MUTATING)
    def scriptTest(ctx: Any, flow: str | None, script: str | None, message: Any,
                   envelope: ScriptEnvelope | None) -> list[ScriptTestItem]:
        call: Call = ctx.udc

        restriction = call.restriction()  # a restricted user counts its own entries only

        def queue_metric(field: str, value: str) -> int:
            with call.read() as session:
                return count_queued(session, field=field, value=value, where=restriction)

        body = _bytes(message)
        arguments = {"flow": flow, "script": script, "message": body}
        # File options (ca_file) are refused: their errors would tell the caller what exists
        # on the node's disk.
        http = UrllibHttpClient(allow=lambda: _http_allow(call), files=False)
        lines = call.run_outside(arguments, lambda: run_script_test(
            flow=flow or "", script=script or "", message=body, envelope=_envelope(envelope),
            http=http, queue_metric=queue_metric,
        ))
        return [ScriptTestItem(kind=line.kind, text=[line.text.encode("utf-8", "replace")]) for line in lines]


def _http_allow(call: Call) -> list[str] | tuple[str, ...]:
    config = call.node.config()
    return config.policy.http_allow if config is not None else DEFAULT_ALLOW


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else b"".join(value)


def _envelope(env: ScriptEnvelope | None) -> ScriptTestEnvelope:
    if env is None:
        return ScriptTestEnvelope()
    default = ScriptTestEnvelope()
    return ScriptTestEnvelope(
        sender=env.sender or "", recipients=tuple(env.recipients or default.recipients),
        client_ip=env.clientip or default.client_ip, helo=env.helo or default.helo,
        sasl=env.saslusername or "", password=env.saslpassword or "",
        listener=env.listener or default.listener, transport=env.transport or default.transport,
    )
