"""Config operations: configTextGet/Set, configTest, configKeys, configKeyGet/Set, revisions."""

from __future__ import annotations

from typing import Any

from spyne import ComplexModel, Integer, Long, ServiceBase, Unicode, rpc

from appliance.cluster.configservice import ConfigService as ConfigOps
from appliance.errors import InvalidInput
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, required
from appliance.soap.wire import TNS, items

class ConfigProblem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "configProblem"
    _type_info = [("line", Integer), ("column", Integer), ("message", Unicode)]

class ConfigKey(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "configKey"
    _type_info = [("key", Unicode), ("value", Unicode)]

class ConfigRevision(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "configRevision"
    _type_info = [("id", Long), ("ts", Long), ("author", Unicode), ("comment", Unicode)]

ConfigProblems = items(ConfigProblem, "configProblemArray")
ConfigKeys = items(ConfigKey, "configKeyArray")
ConfigRevisions = items(ConfigRevision, "configRevisionArray")

class ConfigService(ServiceBase):  # type: ignore[misc]
    @rpc(Long, _returns=Unicode, _out_variable_name="result")
    def configTextGet(ctx: Any, revision: int | None) -> str:
        return _service(ctx).text_get(revision)

    @rpc(Unicode, Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def configTextSet(ctx: Any, text: str | None, comment: str | None) -> int:
        call, service = ctx.udc, _service(ctx)
        return call.run_outside({"text": text, "comment": comment}, lambda: service.text_set(
            required(text, "text"), comment=comment or "", author=call.principal.user))

    @rpc(Unicode, _returns=ConfigProblems, _out_variable_name="result")
    def configTest(ctx: Any, text: str | None) -> list[ConfigProblem]:
        return [ConfigProblem(line=p.line, column=p.column, message=p.message)
                for p in _service(ctx).test(text or "")]

    @rpc(_returns=ConfigKeys, _out_variable_name="result")
    def configKeys(ctx: Any) -> list[ConfigKey]:
        return [ConfigKey(key=k, value=v) for k, v in _service(ctx).keys()]

    @rpc(Unicode, _returns=Unicode, _out_variable_name="result")
    def configKeyGet(ctx: Any, key: str | None) -> str:
        return _service(ctx).key_get(required(key, "key"))

    @rpc(Unicode, Unicode, Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def configKeySet(ctx: Any, key: str | None, value: str | None, comment: str | None) -> int:
        call, service = ctx.udc, _service(ctx)
        return call.run_outside({"key": key, "value": value, "comment": comment},
                       lambda: service.key_set(required(key, "key"), value or "",
                                               comment=comment or "", author=call.principal.user))

    @rpc(Integer, Integer, _returns=ConfigRevisions, _out_variable_name="result")
    def configRevisionLog(ctx: Any, offset: int | None, limit: int | None) -> list[ConfigRevision]:
        return [ConfigRevision(id=r.id, ts=int(r.ts), author=r.author, comment=r.comment)
                for r in _service(ctx).log(offset or 0, 100 if limit is None else limit)]

    @rpc(Long, Long, _returns=Unicode, _out_variable_name="result",
         _in_arg_names={"from_": "from"})
    def configRevisionDiff(ctx: Any, from_: int | None, to: int | None) -> str:
        return _service(ctx).diff(required(from_, "from"), required(to, "to"))

    @rpc(Long, Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def configRevisionRevert(ctx: Any, id: int | None, comment: str | None) -> int:
        call, service = ctx.udc, _service(ctx)
        return call.run_outside({"id": id, "comment": comment}, lambda: service.revert(
            required(id, "id"), comment=comment or "", author=call.principal.user))


def _service(ctx: Any) -> ConfigOps:
    call: Call = ctx.udc
    service = call.node.config_service
    if service is None:
        raise InvalidInput("configuration is not available on this node")
    return service


