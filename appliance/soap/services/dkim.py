"""DKIM key operations: dkimKeyList, dkimKeyGenerate and dkimKeyDelete (the last two admins only).

Keys live in the node's data directory; only their public halves and DNS records are sent.
"""

from __future__ import annotations

from typing import Any

from spyne import ServiceBase, Unicode, rpc

from appliance.config.schema import DkimSection
from appliance.errors import Unsupported
from appliance.mailauth.keys import KeyInfo, KeyStore
from appliance.mailauth.sign import Signer
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, required
from appliance.soap.wire import DkimKeyItem, DkimKeyItems


class DkimService(ServiceBase):  # type: ignore[misc]
    @rpc(_returns=DkimKeyItems, _out_variable_name="result")
    def dkimKeyList(ctx: Any) -> list[DkimKeyItem]:
        call: Call = ctx.udc
        keys = _keys(call)
        config = call.node.config()
        cfg = config.dkim if config is not None else DkimSection()
        signer = Signer(keys)
        return [_item(info, active=cfg.enabled and signer.active_selector(info.domain, cfg) == info.selector)
                for info in keys.all()]

    @rpc(Unicode, Unicode, Unicode, _returns=Unicode, _out_variable_name="result", _udd=MUTATING)
    def dkimKeyGenerate(ctx: Any, domain: str | None, selector: str | None,
                        algorithm: str | None) -> str:
        call: Call = ctx.udc
        keys = _keys(call)
        args = {"domain": domain, "selector": selector, "algorithm": algorithm or "rsa"}
        info = call.run_outside(args, lambda: keys.create(
            required(domain, "domain"), required(selector, "selector"), algorithm or "rsa"))
        return info.dns_record()

    @rpc(Unicode, Unicode, _udd=MUTATING)
    def dkimKeyDelete(ctx: Any, domain: str | None, selector: str | None) -> None:
        call: Call = ctx.udc
        keys = _keys(call)
        call.run_outside({"domain": domain, "selector": selector}, lambda: keys.remove(
            required(domain, "domain"), required(selector, "selector")))


def _keys(call: Call) -> KeyStore:
    if call.node.dkim_keys is None:
        raise Unsupported("this node keeps no DKIM keys")
    return call.node.dkim_keys


def _item(info: KeyInfo, *, active: bool) -> DkimKeyItem:
    return DkimKeyItem(domain=info.domain, selector=info.selector, algorithm=info.algorithm,
                       created=int(info.created), dnsrecord=info.dns_record(), active=active)
