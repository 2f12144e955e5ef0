"""The SOAP endpoint's server: cheroot's threaded WSGI server, HTTPS unless told plain HTTP."""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spyne import ServiceBase
from spyne.server.wsgi import WsgiApplication

from appliance.access.throttle import ThrottlePolicy
from appliance.connlimits import ConditionLog, ConnectionCounter
from appliance.errors import ApplianceError, Forbidden
from appliance.config.schema import ApiSection, Config
from appliance.soap.app import build_application
from appliance.soap.auth import Authenticator
from appliance.soap.calls import Call, NodeContext, Principal
from appliance.soap.gateway import Gateway
from appliance.soap.limits import DeferredHandshakeAdapter, GuardedServer
from appliance.soap.screen import Operations
from appliance.soap.page import operations_page
from appliance.soap.wsdl import interface_document

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Listen:
    """Where to serve: `http(s)://HOST:PORT`; port 0 picks a free one."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Listen:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError(f"expected http(s)://HOST:PORT, got {url!r}")
        return cls(scheme=parts.scheme, host=parts.hostname, port=parts.port)


class SoapServer:
    """A component: `start()` binds and serves on its own thread, `stop()` shuts it down."""

    def __init__(self, context: NodeContext, listen: Listen, *, public_url: str = "",
                 tls_files: tuple[Path, Path] | None = None, max_request_bytes: int = 50 << 20,
                 max_failures: int = 5, throttle: ThrottlePolicy | None = None,
                 max_operation_bytes: int = 1 << 20, max_array_items: int = 10_000,
                 max_connections: int = 256, max_connections_per_address: int = 16,
                 header_timeout: float = 10.0, threads: int = 32, backlog: int = 256,
                 services: Sequence[type[ServiceBase]] | None = None, out_protocol: Any = None,
                 wsdl_requires_auth: Callable[[], bool] = lambda: False,
                 site: Callable[[Gateway, Authenticator], Any] | None = None) -> None:
        if listen.scheme == "https" and tls_files is None:
            raise ValueError("https needs a certificate and key")
        quiet_spyne_logging()
        no_forced_gc()
        self.listen = listen
        self._public_url = public_url
        policy = throttle or ThrottlePolicy(per_user=max_failures)
        self.authenticator = Authenticator(context.store, policy=policy)
        # A user changed over SOAP drops its cached credentials at once.
        context = dataclasses.replace(context, users_changed=self.authenticator.forget)
        self.context = context
        # out_protocol: None for the application's own writer; benchmarks pass stock Soap11().
        self.app = build_application(node=context, services=services, out_protocol=out_protocol)
        self.operations = Operations.of(self.app)
        self.gateway = Gateway(
            WsgiApplication(self.app, max_content_length=max_request_bytes),
            authenticator=self.authenticator, wsdl=b"",
            page=operations_page(self.app), max_request_bytes=max_request_bytes,
            max_operation_bytes=max_operation_bytes, max_array_items=max_array_items,
            precheck=self._precheck, operations=self.operations, public_url=public_url,
            wsdl_requires_auth=wsdl_requires_auth,
        )
        self.connections = ConnectionCounter(
            total=max_connections, per_address=max_connections_per_address, name="API",
            log=ConditionLog(log))
        # `site`: what else the listener serves beside /remote/ (health, metrics).
        served = site(self.gateway, self.authenticator) if site is not None else self.gateway
        self._server = GuardedServer((listen.host, listen.port), served, numthreads=threads,
                                     request_queue_size=backlog, server_name="appliance",
                                     gate=self.connections, header_timeout=header_timeout)
        # How often the accept loop looks up from select(): bounds how long stop() waits.
        self._server.expiration_interval = 0.1
        if tls_files is not None and listen.scheme == "https":
            adapter = DeferredHandshakeAdapter(str(tls_files[0]), str(tls_files[1]))
            adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._server.ssl_adapter = adapter
        self._thread: threading.Thread | None = None

    @property
    def heads_in_progress(self) -> int:
        """Connections a worker is reading a request head from (under the header deadline)."""
        return int(self._server.deadlines.armed)

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        """The endpoint as clients reach it: the configured public URL or the bound address."""
        if self._public_url:
            return self._public_url
        host = f"[{self.listen.host}]" if ":" in self.listen.host else self.listen.host
        return f"{self.listen.scheme}://{host}:{self.port}/remote/"

    def start(self) -> None:
        self._server.prepare()  # binds, so port 0 is resolved before the WSDL is built
        started = time.perf_counter()
        self.gateway.wsdl = interface_document(self.app, self.url)
        log.info("SOAP API on %s (WSDL built in %.0f ms)", self.url,
                 (time.perf_counter() - started) * 1000)
        self._thread = threading.Thread(target=self._server.serve, name="soap", daemon=True)
        self._thread.start()

    def _precheck(self, principal: Principal, operation: str) -> ApplianceError | None:
        """May `principal` call `operation`? Asked before the request body is inflated or
        deserialized. With an api-auth script the script decides later, on the arguments."""
        if self.app.has_api_auth_script():
            return None
        mutating = self.operations.mutating.get(operation, True)
        try:
            principal.level.check(operation, mutating=mutating)
        except Forbidden as exc:
            if mutating:
                Call(self.context, principal, operation).audit_failure({}, exc)
            return exc
        return None

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.stop()
        self._thread.join(timeout=10)
        self._thread = None


def no_forced_gc() -> None:
    """Spyne forces a full gc.collect() after a request at most once a second; with a large
    heap that stalls every server thread for tens of milliseconds (P5). The interpreter's own
    generational collector still runs, and the gateway closes request bodies itself."""
    import spyne.const

    spyne.const.MIN_GC_INTERVAL = float("inf")


def quiet_spyne_logging() -> None:
    """Spyne logs whole invalid bodies and a traceback per client fault; the gateway and the
    application log what matters (without bodies or credentials), so only its criticals pass."""
    logging.getLogger("spyne").setLevel(logging.CRITICAL)


def throttle_policy(api: ApiSection) -> ThrottlePolicy:
    """The login throttle of the config's api section (SMTP AUTH uses the same)."""
    return ThrottlePolicy(per_user=api.auth_failures_before_throttle,
                          per_address=api.auth_failures_per_address, window=api.auth_window,
                          block=api.auth_block)


def with_bound_ports(config: Config, data_dir: Path) -> Config:
    """The config with listeners configured on port 0 showing the port they got: in a node of
    processes the supervisor binds them and publishes the ports in run/ports.json."""
    if not any(lst.port == 0 for lst in config.listeners):
        return config
    try:
        bound = json.loads((Path(data_dir) / "run" / "ports.json").read_text()).get("smtp", {})
    except (OSError, ValueError):
        return config
    listeners = [lst.model_copy(update={"port": int(bound[lst.id])})
                 if lst.port == 0 and lst.id in bound else lst for lst in config.listeners]
    return config.model_copy(update={"listeners": listeners})


def local_url(server: SoapServer) -> str:
    """The SOAP endpoint as this host reaches it (the bound port; loopback for a wildcard)."""
    host = server.listen.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"{server.listen.scheme}://{host}:{server.port}/remote/"
