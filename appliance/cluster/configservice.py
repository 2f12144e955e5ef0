"""Config operations as the SOAP API and the CLI see them, each one transaction.

Keys prefixed `local:` (e.g. `local:listeners.inbound.port`) are this node's overrides: they
are stored per node next to the shared revisions and written over the shared text when the
node applies it; they do not create revisions. Setting a `local:` key to the empty value
removes that override.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from appliance.cluster.shared import StoreRouter
from appliance.config import document, keys, overrides, revisions
from appliance.config.document import ConfigError, Problem
from appliance.config.revisions import RevisionInfo
from appliance.errors import NotFound

LOCAL_PREFIX = "local:"


class ConfigService:
    def __init__(self, router: StoreRouter, serial: str, *, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self.router = router
        self.serial = serial
        self._clock = clock
        self._on_commit = on_commit  # wakes the watcher: a local commit applies at once

    def text_get(self, revision: int | None = None) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            return revisions.text_get(session, revision=revision)

    def text_set(self, text: str, *, comment: str = "", author: str) -> int:
        with self.router.config_store().transaction() as session:
            self._check_every_node(session, text)
            revision = revisions.text_set(session, text=text, comment=comment, author=author,
                                          clock=self._clock)
        self._on_commit()
        return revision

    def test(self, text: str) -> list[Problem]:
        return document.test(text)

    def keys(self) -> list[tuple[str, str]]:
        with self.router.config_store().transaction(read_only=True) as session:
            text = revisions.text_get(session)
            local = overrides.overrides_of(session, self.serial)
        return keys.config_keys(text) + [(LOCAL_PREFIX + k, v) for k, v in local]

    def key_get(self, key: str) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            if key.startswith(LOCAL_PREFIX):
                found = dict(overrides.overrides_of(session, self.serial))
                name = key.removeprefix(LOCAL_PREFIX)
                if name not in found:
                    raise NotFound(f"this node has no override of {name!r}")
                return found[name]
            return keys.key_get(revisions.text_get(session), key)

    def key_set(self, key: str, value: str, *, comment: str = "", author: str) -> int:
        """Set a key: a new revision, or for `local:` keys this node's override."""
        with self.router.config_store().transaction() as session:
            if key.startswith(LOCAL_PREFIX) and value == "":
                overrides.override_delete(session, serial=self.serial,
                                          key=key.removeprefix(LOCAL_PREFIX))
                revision = revisions.current_revision(session) or 0
            elif key.startswith(LOCAL_PREFIX):
                base = revisions.text_get(session)
                overrides.override_set(session, serial=self.serial, author=author, clock=self._clock,
                                       key=key.removeprefix(LOCAL_PREFIX), value=value, base_text=base)
                revision = revisions.current_revision(session) or 0
            else:
                new_text = keys.key_set(revisions.text_get(session), key, value)
                self._check_every_node(session, new_text)
                revision = revisions.text_set(session, text=new_text, author=author,
                                              comment=comment or f"set {key}", clock=self._clock)
        self._on_commit()
        return revision

    def key_unset_local(self, key: str) -> None:
        with self.router.config_store().transaction() as session:
            overrides.override_delete(session, serial=self.serial,
                                      key=key.removeprefix(LOCAL_PREFIX))
        self._on_commit()

    def log(self, offset: int = 0, limit: int = 100) -> list[RevisionInfo]:
        with self.router.config_store().transaction(read_only=True) as session:
            return revisions.revision_log(session, offset=offset, limit=limit)

    def diff(self, from_: int, to: int) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            return revisions.revision_diff(session, from_=from_, to=to)

    def revert(self, revision: int, *, comment: str = "", author: str) -> int:
        with self.router.config_store().transaction() as session:
            self._check_every_node(session, revisions.text_get(session, revision=revision))
            new = revisions.revision_revert(session, revision=revision, comment=comment,
                                            author=author, clock=self._clock)
        self._on_commit()
        return new

    def _check_every_node(self, session: object, text: str) -> None:
        """Refuse a text that is invalid, or invalid for some node once its overrides apply."""
        document.parse(text)
        for serial in overrides.serials_with_overrides(session):  # type: ignore[arg-type]
            try:
                overrides.effective_text(text, overrides.overrides_of(session, serial))  # type: ignore[arg-type]
            except ConfigError as exc:
                raise ConfigError([Problem(p.line, p.column, f"with node {serial}'s overrides: "
                                           f"{p.message}") for p in exc.problems]) from exc
