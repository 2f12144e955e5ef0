"""The Spyne application: every service module of the SOAP API, one access check, one fault map.

To add a service: write `appliance/soap/services/<area>.py` with a `ServiceBase` subclass, import
it in default_services() and add it to the tuple there. In each `@rpc` method,
`ctx.udc` is the `Call` (appliance.soap.calls): `with call.read() as session:` for reads,
`call.mutate(arguments, body)` for changes (audited in the same transaction). Mark changing
operations with `_udd=MUTATING`, so that read-only users are refused them before the call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from spyne import Application, Array, ByteArray, Fault, ServiceBase
from spyne.protocol import ProtocolBase
from spyne.protocol.soap import Soap11

from appliance.errors import ApplianceError, Forbidden
from appliance.soap import faults
from appliance.soap.calls import Call, NodeContext, Principal
from appliance.soap.protocol import ApplianceSoap11
from appliance.soap.wire import TNS

log = logging.getLogger(__name__)


def default_services() -> tuple[type[ServiceBase], ...]:
    """Every service of the API, in WSDL order (imported here: each service module imports
    MUTATING from this one)."""
    from appliance.soap.services.cluster import ClusterService
    from appliance.soap.services.commands import CommandService
    from appliance.soap.services.config import ConfigService
    from appliance.soap.services.node import NodeService
    from appliance.soap.services.queue import QueueService
    from appliance.soap.services.scripts import ScriptService
    from appliance.soap.services.stats import StatsService
    from appliance.soap.services.update import UpdateService
    from appliance.soap.services.users import UserService

    return (NodeService, QueueService, UserService, StatsService, ConfigService,
            ClusterService, CommandService, ScriptService, UpdateService)


# WSGI environ key under which the auth middleware leaves the caller's Principal.
PRINCIPAL_KEY = "appliance.principal"
# Pass as `@rpc(..., _udd=MUTATING)` on every operation that changes anything.
MUTATING = {"mutating": True}
# How much of a base64Binary argument an audit row keeps.
_AUDIT_BYTES = 512


class ApplianceApplication(Application):  # type: ignore[misc]
    """Spyne's Application with the per-call context, the access check and the fault table."""

    def __init__(self, services: list[type[ServiceBase]], *, node: NodeContext | None,
                 out_protocol: ProtocolBase | None = None) -> None:
        super().__init__(
            services, tns=TNS, name="appliance", in_protocol=Soap11(validator="soft"),
            out_protocol=ApplianceSoap11() if out_protocol is None else out_protocol,
        )
        self.node = node
        self.event_manager.add_listener("method_exception_object", self._audit_unreadable)
        # What a WSGI server sets when it wraps the app; set here so the exported WSDL (no
        # server) says the same as the served one.
        self.transport = "http://schemas.xmlsoap.org/soap/http"

    def call_wrapper(self, ctx: Any) -> Any:
        operation = ctx.descriptor.name
        principal = ctx.transport.req_env.get(PRINCIPAL_KEY) if ctx.transport else None
        if self.node is None or not isinstance(principal, Principal):
            log.error("%s called without a node or an authenticated caller", operation)
            raise faults.internal_fault()
        call = Call(self.node, principal, operation)
        ctx.udc = call
        try:
            mutating = bool(ctx.descriptor.udd.mutating)
            try:
                if not self._script_allows(ctx, principal, operation):
                    principal.level.check(operation, mutating=mutating)
                with self.node.store.statement_timeout(self.node.statement_timeout):
                    return super().call_wrapper(ctx)
            except Exception as exc:
                # Every failed mutating call leaves an audit row: refusals, validation before
                # the domain call (bad filter, id<=0, bad restriction, non-UTF-8 argv, ...) and
                # internal errors alike. Call.mutate* audit their own failures already.
                if mutating and not call.audited:
                    call.audit_failure(_arguments_for_audit(ctx), _audited_error(exc))
                raise
        except Fault:
            raise
        except ApplianceError as exc:
            raise faults.to_fault(exc) from None
        except Exception:
            log.exception("%s failed", operation)
            raise faults.internal_fault() from None

    def _audit_unreadable(self, ctx: Any) -> None:
        """A mutating request whose arguments could not be read (e.g. `id=abc`, refused by
        Spyne's soft validation before call_wrapper) is audited too."""
        if ctx.in_error is None or ctx.descriptor is None or self.node is None:
            return
        if not getattr(ctx.descriptor.udd, "mutating", False):
            return
        principal = ctx.transport.req_env.get(PRINCIPAL_KEY) if ctx.transport else None
        if isinstance(principal, Principal):
            Call(self.node, principal, ctx.descriptor.name).audit_failure({}, ctx.in_error)

    def has_api_auth_script(self) -> bool:
        return self._api_auth_script() is not None

    def _api_auth_script(self) -> Any:
        return self.node.api_auth() if self.node is not None else None

    def _script_allows(self, ctx: Any, principal: Principal, operation: str) -> bool:
        """The api-auth script's decision, if one is configured: True allows the call outright,
        a refusal is Forbidden, no decision leaves it to the built-in levels."""
        script = self._api_auth_script()
        if script is None:
            return False
        fields = getattr(ctx.descriptor.in_message, "_type_info", {})
        arguments = {name: getattr(ctx.in_object, name, None) for name in fields}
        decision = script.decide(principal.user, principal.password, operation, arguments)
        if decision is False:
            raise Forbidden(f"{operation} refused by the api-auth script")
        return decision is True


def request_arguments(ctx: Any) -> dict[str, Any]:
    """The call's arguments as plain values by their wire names, for the audit log (which
    redacts secret-named fields, appliance.access.audit). base64Binary values become text:
    UTF-8 as it is, other bytes backslash-escaped, long ones cut."""
    fields = getattr(ctx.descriptor.in_message, "_type_info", {})
    return {name: _plain(getattr(ctx.in_object, name, None), cls) for name, cls in fields.items()}


def _plain(value: Any, cls: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if depth > 4:
        return "…"
    if isinstance(cls, type) and issubclass(cls, ByteArray):
        data = value if isinstance(value, bytes) else b"".join(value)  # chunks, as Spyne hands them
        text = data[:_AUDIT_BYTES].decode("utf-8", "backslashreplace")
        return text if len(data) <= _AUDIT_BYTES else f"{text}… ({len(data)} bytes)"
    if isinstance(cls, type) and issubclass(cls, Array):
        inner = getattr(cls, "get_inner_type")()
        return [_plain(v, inner, depth + 1) for v in value]
    fields = getattr(cls, "_type_info", None)
    if fields is not None:  # a Spyne complex value (options, envelopes): its fields
        return {name: _plain(getattr(value, name, None), sub, depth + 1)
                for name, sub in fields.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, None, depth + 1) for v in value]
    return str(value)[:200]


def _arguments_for_audit(ctx: Any) -> dict[str, Any]:
    try:
        return request_arguments(ctx)
    except Exception:  # the audit row must not hide the call's own failure
        log.exception("could not read the arguments of %s for the audit log", ctx.descriptor.name)
        return {}


def _audited_error(exc: Exception) -> Exception:
    """What the audit row says: a domain error or fault as the client heard it, nothing internal."""
    if isinstance(exc, (ApplianceError, Fault)):
        return exc
    return RuntimeError(f"internal error ({type(exc).__name__})")


def build_application(*, node: NodeContext | None,
                      services: Sequence[type[ServiceBase]] | None = None,
                      out_protocol: ProtocolBase | None = None) -> ApplianceApplication:
    """The application; `node=None` builds it for the interface document only (export_wsdl).

    `out_protocol` replaces the response writer (ApplianceSoap11): tests and benchmarks pass
    stock `Soap11()` to compare against Spyne's own serializer.
    """
    chosen = list(default_services() if services is None else services)
    return ApplianceApplication(chosen, node=node, out_protocol=out_protocol)
