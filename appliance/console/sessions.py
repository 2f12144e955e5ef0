"""Console sessions, kept in the API process's memory: the cookie carries only a random id.

A session holds what the console needs to act as its user against the node's own API (the
user's name and password, which never leave the server), the CSRF token of its forms, and the
user's access level for showing or hiding controls. Every login makes a new session id, so an
id planted in a browser before the login is never the one that is logged in (no fixation).
Sessions end at logout, after `idle` seconds unused, or after `lifetime` seconds in total.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.access.levels import AccessLevel

COOKIE = "__Host-console"
_MAX_SESSIONS = 10_000


@dataclasses.dataclass
class ConsoleSession:
    id: str
    csrf: str
    created: float
    seen: float
    user: str = ""  # empty: not logged in (a pre-login session holding the login form's token)
    password: str = dataclasses.field(default="", repr=False)
    level: AccessLevel | None = None
    node: str = ""  # the node selector's choice: "" = the whole cluster, else a node's label
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-page state

    @property
    def logged_in(self) -> bool:
        return bool(self.user) and self.level is not None


class SessionStore:
    def __init__(self, *, idle: float = 1800.0, lifetime: float = 12 * 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, ConsoleSession] = {}

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None:
                return None
            if now - found.seen > self.idle or now - found.created > self.lifetime:
                del self._sessions[session_id]
                return None
            found.seen = now
            return found

    def new(self) -> ConsoleSession:
        now = self._clock()
        made = ConsoleSession(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                              created=now, seen=now)
        with self._lock:
            if len(self._sessions) >= _MAX_SESSIONS:
                self._expire(now)
            if len(self._sessions) >= _MAX_SESSIONS:
                # Pre-login sessions are cheap to make: drop them first, never a logged-in one
                # while an anonymous one is left.
                anonymous = [k for k, s in self._sessions.items() if not s.logged_in]
                for key in anonymous[: len(anonymous) // 2 + 1] or list(self._sessions)[:1]:
                    del self._sessions[key]
            self._sessions[made.id] = made
        return made

    def login(self, old: ConsoleSession | None, *, user: str, password: str,
              level: AccessLevel) -> ConsoleSession:
        """A fresh session (new id, new CSRF token) for `user`; `old` is dropped."""
        if old is not None:
            self.drop(old.id)
        made = self.new()
        made.user, made.password, made.level = user, password, level
        return made

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def drop_user(self, user: str, *, keep: str = "") -> None:
        """End every session of `user` but `keep` (after a password change or deletion)."""
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.user == user and k != keep]:
                del self._sessions[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items()
                    if now - s.seen > self.idle or now - s.created > self.lifetime]:
            del self._sessions[key]
