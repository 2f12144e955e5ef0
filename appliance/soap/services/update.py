"""The old API's software update operations: the node is updated by its package manager."""

from __future__ import annotations

from typing import Any

from spyne import ServiceBase, Unicode, rpc

from appliance.errors import Unsupported
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done

HOW = ("updates come from the package manager (pip or the distribution's packages), "
       "not through the API; install a new version there and restart the node")


def status_text(version: str) -> str:
    return f"appliance {version} is running; no update is pending here: {HOW}"


class UpdateService(ServiceBase):  # type: ignore[misc]
    @rpc(_returns=Unicode, _out_variable_name="result")
    def updateDownloadStatus(ctx: Any) -> str:
        call: Call = ctx.udc
        return status_text(call.node.version)

    @rpc(_udd=MUTATING)
    def updateDownloadStart(ctx: Any) -> None:
        _refuse(ctx.udc)

    @rpc(_udd=MUTATING)
    def updateDownloadCancel(ctx: Any) -> None:
        _refuse(ctx.udc)

    @rpc(_udd=MUTATING)
    def updateInstall(ctx: Any) -> None:
        _refuse(ctx.udc)


def _refuse(call: Call) -> None:
    """A fault that says why, audited like every other refused change."""

    def body(session: Any) -> Done[None]:
        raise Unsupported(f"{call.operation}: appliance {call.node.version} is running; {HOW}")

    call.mutate({}, body)
