"""Config operations as the SOAP API and the CLI see them, each one transaction.

Keys prefixed `local:` (e.g. `local:listeners.inbound.port`) are this node's overrides: they
are stored per node next to the shared revisions and written over the shared text when the
node applies it; they do not create revisions. Setting a `local:` key to the empty value
removes that override.

Secret fields (appliance.config.secrets) come out redacted unless `reveal=True` (the node's
own CLI, run by whoever holds the store); a text or key written back with the placeholder keeps
the stored secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Sequence
from typing import Any

from appliance.cluster.shared import StoreRouter
from appliance.config import document, flows, keys, overrides, revisions, secrets
from appliance.config.document import ConfigError, Problem
from appliance.config.flows import FlowKey
from appliance.config.keys import KeyState
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

    def text_get(self, revision: int | None = None, *, reveal: bool = False) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            text = revisions.text_get(session, revision=revision)
        return text if reveal else secrets.redact_text(text)

    def text_set(self, text: str, *, comment: str = "", author: str) -> int:
        with self.router.config_store().transaction() as session:
            if secrets.PLACEHOLDER in text:  # keep the stored secrets a redacted text stands for
                stored = revisions.text_get(session) if revisions.current_revision(session) else ""
                text = secrets.restore_text(text, stored)
            self._check_every_node(session, text)
            revision = revisions.text_set(session, text=text, comment=comment, author=author,
                                          clock=self._clock)
        self._on_commit()
        return revision

    def test(self, text: str) -> list[Problem]:
        return document.test(text)

    def keys(self, *, reveal: bool = False) -> list[tuple[str, str]]:
        with self.router.config_store().transaction(read_only=True) as session:
            text = revisions.text_get(session)
            local = overrides.overrides_of(session, self.serial)
        pairs = keys.config_keys(text) + [(LOCAL_PREFIX + k, v) for k, v in local]
        return pairs if reveal else secrets.redact_keys(pairs)

    def key_states(self, running: dict[str, Any], *, reveal: bool = False,
                   ) -> tuple[list[KeyState], list[FlowKey], list[tuple[str, str]]]:
        """configKeys: every key with its value in force (`running`: the node's Config dumped),
        the flows' script keys, and this node's overrides — all read in one transaction; secret
        values redacted unless `reveal`."""
        with self.router.config_store().transaction(read_only=True) as session:
            text = revisions.text_get(session)
            local = overrides.overrides_of(session, self.serial)
        states = keys.key_states(text, local, running)
        if not reveal:
            states = [_redacted(s) for s in states]
            local = secrets.redact_keys([(LOCAL_PREFIX + k, v) for k, v in local])
            local = [(k.removeprefix(LOCAL_PREFIX), v) for k, v in local]
        return states, flows.flow_keys(text), local

    def flow_set(self, key: str, params: Sequence[str], *, comment: str = "", author: str) -> int:
        """configKeySet(key, params) on a flow key: the script it names, as a new revision."""
        target, source = flows.flow_assignment(self.text_get(), key, params)
        return self.key_set(target, source, comment=comment or f"set {key} ({target})",
                            author=author)

    def key_get(self, key: str, *, reveal: bool = False) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            value = self._stored_key(session, key)
        kind = secrets.kind_of_key(key)
        return value if reveal or kind is None else secrets.redact_value(kind, value)

    def _stored_key(self, session: object, key: str) -> str:
        if key.startswith(LOCAL_PREFIX):
            found = dict(overrides.overrides_of(session, self.serial))  # type: ignore[arg-type]
            name = key.removeprefix(LOCAL_PREFIX)
            if name not in found:
                raise NotFound(f"this node has no override of {name!r}")
            return found[name]
        return keys.key_get(revisions.text_get(session), key)  # type: ignore[arg-type]

    def key_set(self, key: str, value: str, *, comment: str = "", author: str) -> int:
        """Set a key: a new revision, or for `local:` keys this node's override."""
        with self.router.config_store().transaction() as session:
            kind = secrets.kind_of_key(key)
            if kind is not None and secrets.PLACEHOLDER in value:
                try:
                    stored: str | None = self._stored_key(session, key)
                except NotFound:
                    stored = None
                value = secrets.restore_value(kind, value, stored, where=key)
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

    def diff(self, from_: int, to: int, *, reveal: bool = False) -> str:
        with self.router.config_store().transaction(read_only=True) as session:
            if reveal:
                return revisions.revision_diff(session, from_=from_, to=to)
            raw_old = revisions.text_get(session, revision=from_)
            raw_new = revisions.text_get(session, revision=to)
        # A changed secret shows as changed, never its value.
        old = secrets.redact_text(raw_old)
        new = secrets.redact_text(raw_new, changed_from=raw_old)
        return "".join(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=f"revision {from_}", tofile=f"revision {to}"))

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


def _redacted(state: KeyState) -> KeyState:
    kind = secrets.kind_of_key(state.key)
    if kind is None:
        return state
    return dataclasses.replace(state, value=secrets.redact_value(kind, state.value),
                               effective=secrets.redact_value(kind, state.effective))
