"""Node operations: login, getSerial, getVersion, getUptime, systemStatus."""

from __future__ import annotations

from typing import Any

from spyne import Boolean, Long, ServiceBase, Unicode, rpc

from appliance.config.revisions import current_revision
from appliance.queue.store import counts_by_state
from appliance.soap.calls import Call
from appliance.soap.wire import StateCount, SystemStatus


class NodeService(ServiceBase):  # type: ignore[misc]
    @rpc(_returns=Boolean, _out_variable_name="result")
    def login(ctx: Any) -> bool:
        # The gateway has already checked the credentials; reaching here means they are good.
        return True

    @rpc(_returns=Unicode, _out_variable_name="result")
    def getSerial(ctx: Any) -> str:
        return _call(ctx).node.serial

    @rpc(_returns=Unicode, _out_variable_name="result")
    def getVersion(ctx: Any) -> str:
        return _call(ctx).node.version

    @rpc(_returns=Long, _out_variable_name="result")
    def getUptime(ctx: Any) -> int:
        call = _call(ctx)
        return int(call.now() - call.node.started)

    @rpc(_returns=SystemStatus, _out_variable_name="result")
    def systemStatus(ctx: Any) -> SystemStatus:
        call = _call(ctx)
        with call.read() as session:
            # A restricted user's counts are of its own entries (API.md, access levels).
            counts = counts_by_state(session, where=call.restriction())
            revision = current_revision(session) or 0
        node = call.node
        return SystemStatus(
            serial=node.serial, hostname=node.hostname, version=node.version,
            uptime=int(call.now() - node.started),
            queue=[StateCount(state=s, count=n) for s, n in sorted(counts.items())],
            configrevision=revision,
        )


def _call(ctx: Any) -> Call:
    call: Call = ctx.udc
    return call
