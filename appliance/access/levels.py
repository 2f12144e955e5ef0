"""Access levels: which operations a user may call, and the HQL restriction on what it sees."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import Forbidden, NotFound

# `metrics` may only scrape /metrics (and check its credentials): no SOAP operation at all.
ROLES = ("admin", "readonly", "custom", "metrics")
METRICS_ROLES = frozenset({"admin", "readonly", "metrics"})
# Managing users and the node's signing keys is for admins only, whatever a custom level lists.
ADMIN_ONLY = frozenset({"userList", "userAdd", "userDelete", "userPasswordSet",
                        "dkimKeyGenerate", "dkimKeyDelete"})
# Every authenticated user may check its own credentials.
ALWAYS = frozenset({"login"})
# Operations that change nothing but run code the caller sends (policy scripts): not for
# read-only users; a custom level may list them.
RUNS_CODE = frozenset({"scriptTest"})
# Audited like a change, yet open to read-only users for what only reads: commandRun, whose
# service lets them run the commands that read the node's own data (CommandSpec.reads_only:
# searchlog, statd, queuestat, previewmessage) and nothing else.
READS_FOR_READONLY = frozenset({"commandRun"})
# Figures of the whole node (counters, rates and graphs per listener and domain) that no HQL
# restriction can narrow: refused to restricted users even when their list names them.
NODE_WIDE = frozenset({"graphList", "graphFile", "statList", "statClear", "hslRate",
                       "hslRateClear"})


class UserRecord(Protocol):
    """What a level is built from (appliance.db.models.User has these columns)."""

    role: str
    operations: str
    restriction: str
    command_patterns: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessLevel:
    """One user's rights; `restriction` is HQL joined with `&&` to every filter it sends."""

    role: str
    operations: frozenset[str] = frozenset()
    restriction: str = ""
    command_patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, user: UserRecord) -> AccessLevel:
        if user.role not in ROLES:
            raise Forbidden(f"unknown access level {user.role!r}")
        if user.role != "custom":
            return cls(role=user.role)
        return cls(
            role="custom",
            operations=frozenset(_json_list(user.operations)),
            restriction=(user.restriction or "").strip(),
            command_patterns=tuple(_json_list(user.command_patterns)),
        )

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def allows(self, operation: str, *, mutating: bool) -> bool:
        if operation in ALWAYS or self.is_admin:
            return True
        if operation in ADMIN_ONLY or self.role == "metrics":
            return False
        if self.restriction and operation in NODE_WIDE:
            return False
        if self.role == "readonly":
            return (not mutating or operation in READS_FOR_READONLY) and operation not in RUNS_CODE
        return operation in self.operations

    @property
    def may_scrape_metrics(self) -> bool:
        return self.role in METRICS_ROLES

    def check(self, operation: str, *, mutating: bool) -> None:
        """Raise Forbidden unless this level may call `operation`."""
        if not self.allows(operation, mutating=mutating):
            if self.restriction and operation in NODE_WIDE:
                raise Forbidden(f"access denied: {operation} shows node-wide figures, which a "
                                "user with a restriction may not see")
            raise Forbidden(f"access denied: this user may not call {operation}")

    def allows_command(self, argv: Sequence[str], *, reads_only: bool) -> bool:
        """For commandRun: admins run anything, read-only users the commands that only read
        (`reads_only`, from the command's spec), custom levels what one of their patterns matches.

        Patterns are shell-style globs (fnmatch) over the argv joined with single spaces, e.g.
        `searchlog *` or `queuestat`; they are matched, never run by a shell.
        """
        if self.is_admin:
            return True
        if self.role == "readonly":
            return reads_only
        line = " ".join(argv)
        return any(fnmatch.fnmatchcase(line, pattern) for pattern in self.command_patterns)


ADMIN = AccessLevel(role="admin")


def spool_path_visible(
    session: Session, path: str, *, queue_where: ColumnElement[bool] | None,
    history_where: ColumnElement[bool] | None,
) -> None:
    """NotFound unless a queue entry or history row inside the restriction names `path`.

    A restricted user may read only the spool files of messages it can see (fileRead).
    """
    for model, where in ((QueueEntry, queue_where), (HistoryEntry, history_where)):
        stmt = select(model.id).where(model.path == path)
        if where is not None:
            stmt = stmt.where(where)
        if session.scalar(select(exists(stmt))):
            return
    raise NotFound(f"no such spool file: {path!r}")


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value: Any = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
