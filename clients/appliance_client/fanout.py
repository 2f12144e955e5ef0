"""Staged SOAP calls to many nodes, carried concurrently by one pycurl CurlMulti.

zeep builds each request envelope (`_create`) and parses each reply (`process_reply`); pycurl
moves the bytes. A round of calls takes as long as the slowest node, not the sum.
"""

from __future__ import annotations

import asyncio
import gzip
import io
from collections.abc import Callable
from typing import Any

import pycurl
import zeep
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault

from appliance_client import wsdl
from appliance_client.errors import NodeError, NodeFault, NodeTimeout, NodeTransportError
from appliance_client.node import NodeSpec

_NOT_DONE = object()


class Call:
    """One staged call to one node; after dispatch it holds a value or a NodeError."""

    def __init__(self, node: NodeSpec, operation: str, body: bytes, headers: dict[str, str]) -> None:
        self.node = node
        self.operation = operation
        self.body = body
        self.headers = headers
        self._value: Any = _NOT_DONE
        self.error: NodeError | None = None

    @property
    def done(self) -> bool:
        return self._value is not _NOT_DONE or self.error is not None

    @property
    def ok(self) -> bool:
        return self._value is not _NOT_DONE

    def result(self) -> Any:
        """The call's value; raises its NodeError, or RuntimeError before dispatch."""
        if self.error is not None:
            raise self.error
        if self._value is _NOT_DONE:
            raise RuntimeError(f"{self.operation} to {self.node.label} has not been dispatched")
        return self._value


class _Response:
    """What zeep's process_reply reads of an HTTP response."""

    def __init__(self, status: int, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self.content = content
        self.headers = headers
        self.encoding = "utf-8"


class NodeClient:
    """Attribute access stages a call: `h = nc.mailQueue(filter="", limit=10)`."""

    def __init__(self, fanout: "FanOut", node: NodeSpec) -> None:
        self._fanout = fanout
        self._node = node

    def __getattr__(self, operation: str) -> Callable[..., Call]:
        if operation.startswith("_"):
            raise AttributeError(operation)
        return lambda **kwargs: self._fanout.stage(self._node, operation, **kwargs)


class FanOut:
    """Stage calls to any number of nodes, then dispatch them all at once."""

    def __init__(self, wsdl_source: str | NodeSpec, *, max_host_connections: int = 8) -> None:
        self._zeep: zeep.Client = wsdl.load(wsdl_source)
        self._binding = self._zeep.service._binding
        self._multi = pycurl.CurlMulti()
        # One connection cache for every handle: connections are reused across rounds.
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_host_connections)
        self._idle: list[pycurl.Curl] = []
        self._staged: list[Call] = []

    def client(self, node: NodeSpec) -> NodeClient:
        return NodeClient(self, node)

    def stage(self, node: NodeSpec, operation: str, **kwargs: Any) -> Call:
        """Build the envelope now (a wrong operation or argument raises here), send later."""
        envelope, headers = self._binding._create(operation, (), kwargs, client=self._zeep)
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        call = Call(node, operation, body, dict(headers))
        self._staged.append(call)
        return call

    def dispatch(self) -> list[Call]:
        """Send every staged call concurrently; each ends with a value or its own error."""
        calls, self._staged = self._staged, []
        active: dict[pycurl.Curl, tuple[Call, io.BytesIO, dict[str, str]]] = {}
        for call in calls:
            handle = self._idle.pop() if self._idle else pycurl.Curl()
            buf, headers = io.BytesIO(), dict[str, str]()
            self._prepare(handle, call, buf, headers)
            self._multi.add_handle(handle)
            active[handle] = (call, buf, headers)
        try:
            self._run(active)
        finally:
            for handle in list(active):
                self._multi.remove_handle(handle)
                self._idle.append(handle)
        return calls

    async def dispatch_async(self) -> list[Call]:
        """The same round, awaited from an event loop (the transfers run in a worker thread)."""
        return await asyncio.to_thread(self.dispatch)

    def close(self) -> None:
        for handle in self._idle:
            handle.close()
        self._idle.clear()
        self._multi.close()

    def _prepare(self, c: pycurl.Curl, call: Call, buf: io.BytesIO, headers: dict[str, str]) -> None:
        node = call.node
        c.reset()
        body = call.body
        http_headers = [f"{k}: {v}" for k, v in call.headers.items()]
        if node.gzip_requests:
            body = gzip.compress(body)
            http_headers.append("Content-Encoding: gzip")
        http_headers.append("Expect:")  # no 100-continue round trip
        c.setopt(pycurl.URL, node.url)
        c.setopt(pycurl.POST, 1)
        c.setopt(pycurl.POSTFIELDS, body)
        c.setopt(pycurl.HTTPHEADER, http_headers)
        c.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
        c.setopt(pycurl.USERNAME, node.username)
        c.setopt(pycurl.PASSWORD, node.password)
        c.setopt(pycurl.CONNECTTIMEOUT_MS, int(node.connect_timeout * 1000))
        c.setopt(pycurl.TIMEOUT_MS, int(node.timeout * 1000))
        c.setopt(pycurl.ACCEPT_ENCODING, "gzip, deflate")
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.SSL_VERIFYPEER, 1 if node.verify else 0)
        c.setopt(pycurl.SSL_VERIFYHOST, 2 if node.verify else 0)
        if node.ca_file:
            c.setopt(pycurl.CAINFO, node.ca_file)
        c.setopt(pycurl.WRITEFUNCTION, buf.write)
        c.setopt(pycurl.HEADERFUNCTION, lambda line: _header(line, headers))

    def _run(self, active: dict[pycurl.Curl, tuple[Call, io.BytesIO, dict[str, str]]]) -> None:
        remaining = len(active)
        while remaining:
            while True:
                ret, _running = self._multi.perform()
                if ret != pycurl.E_CALL_MULTI_PERFORM:
                    break
            while True:
                queued, ok_list, err_list = self._multi.info_read()
                for handle in ok_list:
                    call, buf, headers = active[handle]
                    self._finish(call, handle.getinfo(pycurl.RESPONSE_CODE), buf.getvalue(), headers)
                    remaining -= 1
                for handle, code, message in err_list:
                    call = active[handle][0]
                    cls = NodeTimeout if code == pycurl.E_OPERATION_TIMEDOUT else NodeTransportError
                    call.error = cls(call.node.label, message or f"curl error {code}", curl_code=code)
                    remaining -= 1
                if not queued:
                    break
            if remaining:
                self._multi.select(1.0)

    def _finish(self, call: Call, status: int, content: bytes, headers: dict[str, str]) -> None:
        label = call.node.label
        if status not in (200, 500):
            call.error = NodeTransportError(label, f"HTTP {status}", http_status=status)
            return
        operation = self._binding.get(call.operation)
        try:
            call._value = self._binding.process_reply(self._zeep, operation, _Response(status, content, headers))
        except Fault as fault:
            call.error = NodeFault(label, fault.message or "", code=fault.code)
        except ZeepError as exc:
            call.error = NodeTransportError(label, f"bad reply: {exc}", http_status=status)


def _header(line: bytes, headers: dict[str, str]) -> None:
    text = line.decode("iso-8859-1").strip()
    if text.startswith("HTTP/"):
        headers.clear()  # a new response (after a redirect or 100 Continue)
    elif ":" in text:
        key, value = text.split(":", 1)
        headers[key.strip()] = value.strip()
