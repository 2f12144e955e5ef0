"""Node-specific keys stored per node (by serial) and applied on top of the shared text."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.config import keys
from appliance.config.document import ConfigError, Problem, parse
from appliance.db.models_config import ConfigOverride
from appliance.errors import NotFound


def overrides_of(session: Session, serial: str) -> list[tuple[str, str]]:
    """The node's overrides as (key, value), in key order."""
    rows = session.execute(
        select(ConfigOverride.key, ConfigOverride.value)
        .where(ConfigOverride.serial == serial).order_by(ConfigOverride.key)
    ).all()
    return [(r.key, r.value) for r in rows]


def effective_text(text: str, overrides: list[tuple[str, str]]) -> str:
    """The shared text with the node's overrides written in; raises ConfigError if invalid."""
    if not overrides:
        return text
    try:
        new = keys.set_keys(text, overrides)
    except (LookupError, ValueError) as exc:
        raise ConfigError([Problem(1, 1, f"node override: {exc}")]) from exc
    parse(new)
    return new


def override_set(session: Session, *, serial: str, key: str, value: str, base_text: str,
                 author: str, clock: Callable[[], float] = time.time) -> None:
    """Set (or replace) one override; refused if the result with `base_text` is invalid."""
    keys.split_key(key)
    current = dict(overrides_of(session, serial))
    current[key] = value
    effective_text(base_text, sorted(current.items()))
    session.merge(ConfigOverride(serial=serial, key=key, value=value, ts=clock(), author=author))
    session.flush()


def override_delete(session: Session, *, serial: str, key: str) -> None:
    result = session.execute(
        delete(ConfigOverride).where(ConfigOverride.serial == serial, ConfigOverride.key == key)
    )
    if not _rowcount(result):
        raise NotFound(f"node {serial} has no override of {key!r}")
    session.flush()


def serials_with_overrides(session: Session) -> list[str]:
    return list(session.scalars(select(ConfigOverride.serial).distinct()))


def _rowcount(result: object) -> int:
    """Rows an UPDATE/DELETE touched (execute() is typed as Result; DML gives a CursorResult)."""
    return int(getattr(result, "rowcount", 0) or 0)
