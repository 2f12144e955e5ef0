"""Cluster operations: clusterNodeList, clusterJoin, clusterNodeAdd, clusterNodeRemove."""

from __future__ import annotations

from typing import Any

from spyne import ComplexModel, Long, ServiceBase, Unicode, rpc

from appliance.cluster.dsn import redacted
from appliance.cluster.service import ClusterService as ClusterOps
from appliance.errors import InvalidInput, StoreUnavailable
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, required
from appliance.soap.wire import TNS, items

class ClusterNodeItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "clusterNode"
    _type_info = [
        ("serial", Unicode), ("name", Unicode), ("url", Unicode), ("lastseen", Long),
        ("configrevision", Long), ("status", Unicode), ("problem", Unicode),
    ]

ClusterNodes = items(ClusterNodeItem, "clusterNodeArray")

class ZeepRemoteNode:
    """cluster.service.RemoteNode over SOAP: calls clusterJoin on the other node."""

    def join(self, url: str, *, username: str, password: str, dsn: str) -> str:
        import requests
        from zeep import Client, Settings
        from zeep.transports import Transport

        session = requests.Session()
        session.auth = (username, password)
        try:
            client = Client(url.rstrip("/") + "/?wsdl", transport=Transport(session=session, timeout=30),
                            settings=Settings(strict=False))
            client.service.clusterJoin(dsn=dsn)
            return str(client.service.getSerial())
        except Exception as exc:
            raise StoreUnavailable(f"node at {url} could not join: {exc}") from exc

class ClusterService(ServiceBase):  # type: ignore[misc]
    @rpc(_returns=ClusterNodes, _out_variable_name="result")
    def clusterNodeList(ctx: Any) -> list[ClusterNodeItem]:
        return [ClusterNodeItem(serial=n.serial, name=n.name, url=n.url, lastseen=int(n.lastseen),
                                configrevision=n.configrevision, status=n.status, problem=n.problem)
                for n in _service(ctx).node_list()]

    @rpc(Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def clusterJoin(ctx: Any, dsn: str | None) -> int:
        service = _service(ctx)
        return ctx.udc.run_outside({"dsn": redacted(dsn or "")},
                       lambda: service.join(required(dsn, "dsn")))

    @rpc(Unicode, Unicode, Unicode, _returns=Unicode, _out_variable_name="result", _udd=MUTATING)
    def clusterNodeAdd(ctx: Any, url: str | None, username: str | None,
                       password: str | None) -> str:
        service = _service(ctx)
        return ctx.udc.run_outside({"url": url, "username": username, "password": password},
                       lambda: service.node_add(required(url, "url"),
                                                username=required(username, "username"),
                                                password=password or "", remote=ZeepRemoteNode()))

    @rpc(Unicode, _udd=MUTATING)
    def clusterNodeRemove(ctx: Any, serial: str | None) -> None:
        service = _service(ctx)
        ctx.udc.run_outside({"serial": serial},
                lambda: service.node_remove(required(serial, "serial")))


def _service(ctx: Any) -> ClusterOps:
    call: Call = ctx.udc
    service = call.node.cluster_service
    if service is None:
        raise InvalidInput("clustering is not available on this node")
    return service


