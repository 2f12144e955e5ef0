"""User operations (admins only): userList, userAdd, userDelete, userPasswordSet."""

from __future__ import annotations

from typing import Any

from spyne import ServiceBase, Unicode, rpc
from sqlalchemy.orm import Session

from appliance import hql
from appliance.access import users
from appliance.access.levels import AccessLevel
from appliance.db.models import User
from appliance.errors import Conflict
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done, required
from appliance.soap.wire import Strings, UserItem, UserItems


class UserService(ServiceBase):  # type: ignore[misc]
    @rpc(_returns=UserItems, _out_variable_name="result")
    def userList(ctx: Any) -> list[UserItem]:
        call: Call = ctx.udc
        with call.read() as session:
            return [_item(u) for u in users.list_users(session)]

    @rpc(Unicode, Unicode, Unicode, Strings, Unicode, Strings, _udd=MUTATING)
    def userAdd(ctx: Any, username: str | None, password: str | None, role: str | None,
                operations: list[str] | None, restriction: str | None,
                commands: list[str] | None) -> None:
        call: Call = ctx.udc
        restriction = (restriction or "").strip()
        if restriction:
            hql.compile_filter(restriction)  # refuse a restriction that would fault every call
        args = {"username": username, "role": role or "admin", "operations": operations or [],
                "restriction": restriction, "commands": commands or []}

        def body(session: Session) -> Done[None]:
            users.add_user(
                session, required(username, "username"), required(password, "password"),
                role=role or "admin", operations=list(operations or []), restriction=restriction,
                command_patterns=list(commands or []), now=call.now(),
            )
            return Done(value=None)

        call.mutate(args, body)
        _users_changed(call)

    @rpc(Unicode, _udd=MUTATING)
    def userDelete(ctx: Any, username: str | None) -> None:
        call: Call = ctx.udc
        name = required(username, "username")
        if name == call.principal.user:
            raise Conflict("a user cannot delete itself")

        def body(session: Session) -> Done[None]:
            users.delete_user(session, name)
            return Done(value=None)

        call.mutate({"username": name}, body)
        _users_changed(call)

    @rpc(Unicode, Unicode, _udd=MUTATING)
    def userPasswordSet(ctx: Any, username: str | None, password: str | None) -> None:
        call: Call = ctx.udc
        name = required(username, "username")

        def body(session: Session) -> Done[None]:
            users.set_password(session, name, required(password, "password"))
            return Done(value=None)

        call.mutate({"username": name, "password": password}, body)
        _users_changed(call)


def _item(user: User) -> UserItem:
    level = AccessLevel.of(user)
    return UserItem(
        username=user.name, role=user.role, operations=sorted(level.operations),
        restriction=level.restriction, commands=list(level.command_patterns),
        created=int(user.created),
    )




def _users_changed(call: Call) -> None:
    """Cached credentials must not outlive a change of users or passwords."""
    if call.node.users_changed is not None:
        call.node.users_changed()
