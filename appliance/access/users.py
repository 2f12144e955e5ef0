"""The node's users: salted slow password hashes, roles, and custom access levels."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.access.levels import ROLES
from appliance.db.models import User
from appliance.errors import Conflict, InvalidInput, NotFound

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
# scrypt: memory-hard; n=2**14, r=8 costs about 16 MiB and tens of milliseconds per check.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(
        _N, _R, _P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def add_user(
    session: Session, name: str, password: str, *, role: str = "admin",
    operations: list[str] | None = None, restriction: str = "",
    command_patterns: list[str] | None = None, now: float | None = None,
) -> User:
    if not _NAME.match(name):
        raise InvalidInput("user name must be 1-128 letters, digits or _.@-")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if not password:
        raise InvalidInput("password must not be empty")
    if session.scalars(select(User).where(User.name == name)).first() is not None:
        raise Conflict(f"user {name!r} exists")
    user = User(
        name=name, pwhash=hash_password(password), role=role,
        operations=json.dumps(sorted(operations or [])), restriction=restriction,
        command_patterns=json.dumps(command_patterns or []),
        created=time.time() if now is None else now,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def delete_user(session: Session, name: str) -> None:
    session.delete(get_user(session, name))
    session.flush()


def set_password(session: Session, name: str, password: str) -> None:
    if not password:
        raise InvalidInput("password must not be empty")
    get_user(session, name).pwhash = hash_password(password)
    session.flush()


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user if the password is right, else None (same cost whether or not the user exists)."""
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        check_password(password, _DUMMY_HASH)
        return None
    return user if check_password(password, user.pwhash) else None


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
