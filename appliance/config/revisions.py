"""Config revisions in a store: full text, author, time and comment; reverts are new revisions.

Functions take the session first and flush, never commit (the caller owns the transaction).
The store is the node's own store, or the cluster's shared store when the node is a member.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.config import keys
from appliance.config.defaults import DEFAULT_TEXT
from appliance.config.document import parse
from appliance.db.models import NodeInfo
from appliance.db.models_config import ConfigRevision
from appliance.errors import InvalidInput, NotFound

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class RevisionInfo:
    id: int
    ts: float
    author: str
    comment: str


def current_revision(session: Session) -> int | None:
    """The newest revision's id, None while there is none."""
    return session.scalar(select(func.max(ConfigRevision.id)))


def text_get(session: Session, *, revision: int | None = None) -> str:
    """The text of `revision` (the newest when None)."""
    return _row(session, revision).text


def text_set(session: Session, *, text: str, comment: str = "", author: str,
             clock: Clock = time.time) -> int:
    """Commit `text` as a new revision and return its id; invalid text raises ConfigError."""
    parse(text)  # raises ConfigError with every problem; nothing is written
    row = ConfigRevision(ts=clock(), author=author, comment=comment, text=text)
    session.add(row)
    session.flush()
    return row.id


def key_set(session: Session, *, key: str, value: str, comment: str = "", author: str,
            clock: Clock = time.time) -> int:
    """Change one dotted key of the newest text; the result is a new revision."""
    new_text = keys.key_set(text_get(session), key, value)
    return text_set(session, text=new_text, comment=comment or f"set {key}", author=author,
                    clock=clock)


def revision_log(session: Session, *, offset: int = 0, limit: int = 100) -> list[RevisionInfo]:
    """Revisions newest first."""
    if offset < 0 or limit < 0:
        raise InvalidInput("offset and limit must not be negative")
    rows = session.execute(
        select(ConfigRevision.id, ConfigRevision.ts, ConfigRevision.author, ConfigRevision.comment)
        .order_by(ConfigRevision.id.desc()).offset(offset).limit(limit)
    ).all()
    return [RevisionInfo(id=r.id, ts=r.ts, author=r.author, comment=r.comment) for r in rows]


def revision_diff(session: Session, *, from_: int, to: int) -> str:
    """A unified diff from one revision's text to another's."""
    old, new = _row(session, from_).text, _row(session, to).text
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"revision {from_}", tofile=f"revision {to}",
    ))


def revision_revert(session: Session, *, revision: int, comment: str = "", author: str,
                    clock: Clock = time.time) -> int:
    """A new revision whose text is an exact copy of `revision`'s."""
    text = _row(session, revision).text
    return text_set(session, text=text, comment=comment or f"revert to revision {revision}",
                    author=author, clock=clock)


def seed(session: Session, *, file_text: str | None, author: str = "boot",
         clock: Clock = time.time) -> int:
    """At start: make sure a revision exists, and import a changed --config file.

    The rule: the first start commits revision 1 from the --config file (or the defaults).
    At a later start the file becomes a new revision only if its content differs from the
    content imported last time (its hash is kept in node_info), so revisions made over the API
    are not undone by restarting with the same file.
    """
    digest = hashlib.sha256(file_text.encode()).hexdigest() if file_text is not None else ""
    marker = session.get(NodeInfo, "config_file_sha256")
    newest = current_revision(session)
    if newest is not None and (file_text is None or (marker is not None and marker.value == digest)):
        return newest
    if newest is not None and text_get(session) == file_text:
        revision = newest
    else:
        comment = "from the --config file" if file_text is not None else "defaults"
        revision = text_set(session, text=file_text if file_text is not None else DEFAULT_TEXT,
                            comment=comment, author=author, clock=clock)
    if file_text is not None:
        session.merge(NodeInfo(key="config_file_sha256", value=digest))
        session.flush()
    return revision


def _row(session: Session, revision: int | None) -> ConfigRevision:
    if revision is None:
        newest = current_revision(session)
        if newest is None:
            raise NotFound("there is no config revision yet")
        revision = newest
    row = session.get(ConfigRevision, revision)
    if row is None:
        raise NotFound(f"no config revision {revision}")
    return row
