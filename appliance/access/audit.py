"""The audit log: one record per mutating API call, written in the call's own transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.db.models import AuditRecord

# Argument names whose values never reach the audit log.
SECRET_KEYS = ("password", "secret", "token")
_MAX_ARGUMENT_CHARS = 4096


def record(
    session: Session, *, user: str, remote: str, operation: str, arguments: Mapping[str, Any],
    affected: int, outcome: str = "ok", now: float | None = None,
) -> AuditRecord:
    """Add one audit record (flushed, not committed: it shares the caller's transaction)."""
    row = AuditRecord(
        ts=time.time() if now is None else now, username=user[:128], remote=remote[:64],
        operation=operation[:64], arguments=encode_arguments(arguments), affected=affected,
        outcome=outcome,
    )
    session.add(row)
    session.flush()
    return row


def encode_arguments(arguments: Mapping[str, Any]) -> str:
    """JSON of the arguments with secrets redacted and long values cut."""
    clean = _plain(dict(arguments))
    text = json.dumps(clean, sort_keys=True, default=str)
    return text if len(text) <= _MAX_ARGUMENT_CHARS else text[:_MAX_ARGUMENT_CHARS] + "…"


def recent(session: Session, *, limit: int = 100) -> list[AuditRecord]:
    """The newest records first."""
    stmt = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def is_secret_name(name: str) -> bool:
    return any(s in name.lower() for s in SECRET_KEYS)


def _plain(value: Any) -> Any:
    """Secret-named fields redacted at any depth (e.g. scriptTest's envelope.saslpassword)."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): "***" if is_secret_name(str(k)) else _plain(v)
                for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
