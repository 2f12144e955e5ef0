"""Per-node errors: every failure of one node is reported without failing the others."""

from __future__ import annotations


class NodeError(Exception):
    """A call to one node failed; `node` names it."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.message = message


class NodeTransportError(NodeError, ConnectionError):
    """The node could not be reached or answered at the HTTP level (refused, TLS, HTTP status)."""

    def __init__(self, node: str, message: str, *, http_status: int = 0, curl_code: int = 0) -> None:
        super().__init__(node, message)
        self.http_status = http_status
        self.curl_code = curl_code


class NodeTimeout(NodeTransportError, TimeoutError):
    """The connect or total timeout passed."""


class NodeFault(NodeError):
    """The node answered with a SOAP Fault."""

    def __init__(self, node: str, faultstring: str, *, code: str | None = None) -> None:
        super().__init__(node, faultstring)
        self.faultstring = faultstring
        self.code = code
