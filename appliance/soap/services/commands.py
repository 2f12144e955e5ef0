"""Command operations: commandRun, commandPoll, commandPush, commandSignal, commandTermsize,
commandStop, commandList (API.md, Commands)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spyne import ByteArray, ComplexModel, Integer, ServiceBase, Unicode, rpc
from sqlalchemy.orm import Session

from appliance.access.levels import spool_path_visible
from appliance.commands.base import CommandSpec
from appliance.commands.runner import Runner
from appliance.commands.scope import message_id, msgid_visible, scoped_argv
from appliance.errors import ApplianceError, Forbidden, InvalidInput
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done
from appliance.soap.wire import TNS, items

# How long a poll waits for output before answering with none (fewer round trips, no spin).
POLL_WAIT = 0.25


class CommandItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "commandItem"
    _type_info = [("name", Unicode), ("usage", Unicode), ("description", Unicode)]


Chunks = items(ByteArray, "base64BinaryArray")
CommandItems = items(CommandItem, "commandItemArray")


class CommandService(ServiceBase):  # type: ignore[misc]
    @rpc(Chunks, Integer, Integer, _returns=Unicode, _out_variable_name="result", _udd=MUTATING)
    def commandRun(ctx: Any, argv: Sequence[Any] | None, cols: int | None, rows: int | None) -> str:
        call: Call = ctx.udc
        words = _argv(argv)
        arguments = {"argv": words, "cols": cols, "rows": rows}
        runner = _runner(call)
        try:
            spec, args = runner.catalog.parse(words)
            if not call.level.allows_command(words, reads_only=spec.reads_only):
                raise Forbidden(f"access denied: this user may not run {' '.join(words)[:200]!r}")
            _check_names(call, spec, args)
            run_words = scoped_argv(words, call.level.restriction)  # the audit keeps `words`
        except ApplianceError as exc:
            call.audit_failure(arguments, exc)  # refused command lines are on record too
            raise
        started: list[str] = []

        def body(session: Session) -> Done[str]:
            started.append(runner.run(call.principal.user, run_words, cols=cols or 80,
                                      rows=rows or 24))
            return Done(value=started[0])

        try:
            return call.mutate(arguments, body)
        except Exception:
            for cid in started:  # not audited, so not run
                runner.end(call.principal.user, cid)
            raise

    @rpc(Unicode, _returns=Chunks, _out_variable_name="result")
    def commandPoll(ctx: Any, commandid: str | None) -> list[bytes]:
        call: Call = ctx.udc
        return _runner(call).poll(call.principal.user, _id(commandid), wait=POLL_WAIT)

    @rpc(Unicode, ByteArray)
    def commandPush(ctx: Any, commandid: str | None, data: Sequence[bytes] | bytes | None) -> None:
        call: Call = ctx.udc
        _runner(call).push(call.principal.user, _id(commandid), _bytes(data))

    @rpc(Unicode, Unicode)
    def commandSignal(ctx: Any, commandid: str | None, signal: str | None) -> None:
        call: Call = ctx.udc
        _runner(call).signal(call.principal.user, _id(commandid), signal or "")

    @rpc(Unicode, Integer, Integer)
    def commandTermsize(ctx: Any, commandid: str | None, cols: int | None, rows: int | None) -> None:
        call: Call = ctx.udc
        _runner(call).termsize(call.principal.user, _id(commandid), cols or 0, rows or 0)

    @rpc(Unicode)
    def commandStop(ctx: Any, commandid: str | None) -> None:
        call: Call = ctx.udc
        _runner(call).end(call.principal.user, _id(commandid))

    @rpc(_returns=CommandItems, _out_variable_name="result")
    def commandList(ctx: Any) -> list[CommandItem]:
        return [CommandItem(name=s.name, usage=s.usage, description=s.description)
                for s in _runner(ctx.udc).catalog.specs()]


def _runner(call: Call) -> Runner:
    runner = call.node.commands
    if runner is None:
        raise InvalidInput("this node runs no commands")
    return runner


def _id(commandid: str | None) -> str:
    if not commandid:
        raise InvalidInput("commandid is required")
    return commandid


def _bytes(value: Sequence[bytes] | bytes | None) -> bytes:
    """A base64Binary value as Spyne hands it over: bytes, or a sequence of chunks."""
    if value is None:
        return b""
    return value if isinstance(value, bytes) else b"".join(value)


def _argv(argv: Sequence[Any] | None) -> list[str]:
    words = []
    for i, item in enumerate(argv or []):
        try:
            words.append(_bytes(item).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"argv[{i}] is not UTF-8") from None
    return words


def _check_names(call: Call, spec: CommandSpec, args: Any) -> None:
    """A restricted user's command may name only messages (and spool files) it can see."""
    if call.restriction() is None or spec.names is None:
        return
    queue_where, history_where = call.restriction(), call.restriction(history=True)
    with call.read() as session:
        for kind, value in spec.names(args):
            if kind == "path":
                spool_path_visible(session, value, queue_where=queue_where, history_where=history_where)
                continue
            msgid = message_id(value)
            if msgid is None:
                raise Forbidden(f"{spec.name}: a restricted user may only name a message id")
            msgid_visible(session, msgid, queue_where=queue_where, history_where=history_where)
