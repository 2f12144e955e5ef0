"""Config operations: configTextGet/Set, configTest, configKeys, configKeyGet/Set, revisions."""

from __future__ import annotations

from typing import Any

from spyne import ComplexModel, Integer, Long, ServiceBase, Unicode, rpc

from appliance.cluster.configservice import LOCAL_PREFIX
from appliance.cluster.configservice import ConfigService as ConfigOps
from appliance.config import secrets
from appliance.config.flows import is_flow_key
from appliance.errors import InvalidInput
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, required
from appliance.soap.wire import TNS, Strings, items

class ConfigProblem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "configProblem"
    _type_info = [("line", Integer), ("column", Integer), ("message", Unicode)]

class ConfigKey(ComplexModel):
    """`value`: in the current revision; `effective`: in force on this node, `source` saying
    where it comes from (default, revision, local, flag). `name` and `params` are the old API's
    shape: for the flows' script keys (script_flow__N) params is [script id, script text]."""

    __namespace__ = TNS
    __type_name__ = "configKey"
    _type_info = [("key", Unicode), ("value", Unicode), ("name", Unicode), ("params", Strings),
                  ("effective", Unicode), ("source", Unicode)]

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
        call: Call = ctx.udc
        # The audit row keeps the text with its secrets redacted (appliance.config.secrets);
        # everything that can fail runs inside run_outside, so it is audited that way too.
        logged = secrets.loggable_text(text) if text else text
        return call.run_outside({"text": logged, "comment": comment}, lambda: _service(ctx).text_set(
            required(text, "text"), comment=comment or "", author=call.principal.user))

    @rpc(Unicode, _returns=ConfigProblems, _out_variable_name="result")
    def configTest(ctx: Any, text: str | None) -> list[ConfigProblem]:
        return [ConfigProblem(line=p.line, column=p.column, message=p.message)
                for p in _service(ctx).test(text or "")]

    @rpc(_returns=ConfigKeys, _out_variable_name="result")
    def configKeys(ctx: Any) -> list[ConfigKey]:
        call: Call = ctx.udc
        running = call.node.config()
        states, flows, local = _service(ctx).key_states(
            running.model_dump() if running is not None else {})
        effective = {s.key: s for s in states}
        out = [ConfigKey(key=s.key, value=s.value, name=s.key, effective=s.effective,
                         source=s.source) for s in states]
        out += [ConfigKey(key=LOCAL_PREFIX + k, value=v, name=LOCAL_PREFIX + k, effective=v,
                          source="local") for k, v in local]
        for flow in flows:
            state = effective.get(f"scripts.{flow.script_id}")
            out.append(ConfigKey(key=flow.key, value=flow.text, name=flow.key, params=flow.params,
                                 effective=state.effective if state else flow.text,
                                 source=state.source if state else "revision"))
        return out

    @rpc(Unicode, _returns=Unicode, _out_variable_name="result")
    def configKeyGet(ctx: Any, key: str | None) -> str:
        return _service(ctx).key_get(required(key, "key"))

    @rpc(Unicode, Unicode, Unicode, Strings, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def configKeySet(ctx: Any, key: str | None, value: str | None, comment: str | None,
                     params: list[str] | None) -> int:
        """(key, value, comment), or the old API's (key, params): a flow key's [id, text], or
        one item holding the value of any other key."""
        call, service = ctx.udc, _service(ctx)
        author = call.principal.user
        kind = secrets.kind_of_key(key or "")
        logged = secrets.redact_value(kind, value or "") if kind and value is not None else value

        def run() -> int:  # inside the audited call: a refusal is audited too
            name = required(key, "key")
            if params is None:
                return service.key_set(name, value or "", comment=comment or "", author=author)
            given = [p or "" for p in params]
            if value is not None:
                raise InvalidInput("configKeySet: give value or params, not both")
            if is_flow_key(name):
                return service.flow_set(name, given, comment=comment or "", author=author)
            if len(given) != 1:
                raise InvalidInput(f"configKeySet {name}: params holds one value for this key, "
                                   f"not {len(given)}")
            return service.key_set(name, given[0], comment=comment or "", author=author)

        return call.run_outside(
            {"key": key, "value": logged, "comment": comment, "params": params}, run)

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


