"""Credential checks for the SOAP gateway: a short-lived cache and the store's login throttle."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable

from appliance.access import throttle
from appliance.access.levels import AccessLevel
from appliance.access.throttle import ThrottlePolicy
from appliance.access.users import authenticate
from appliance.db.engine import Store
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

# Bounds on what an attacker can make us remember.
_MAX_CACHED = 1_000


@dataclasses.dataclass(frozen=True)
class Login:
    """The answer for one set of credentials: a user and level, or a refusal (maybe throttled)."""

    user: str = ""
    level: AccessLevel | None = None
    retry_after: float = 0.0  # > 0: refused without checking, try again after this many seconds


class Authenticator:
    """Checks user name and password against the store.

    scrypt costs tens of milliseconds, so a successful check is cached for `cache_ttl` seconds
    under an HMAC of the credentials (never the password itself). Failures are counted in the
    store per (address, user) and per address (appliance.access.throttle), shared with SMTP
    AUTH and the node's other processes; a blocked key is refused without a password check.
    """

    def __init__(self, store: Store, *, policy: ThrottlePolicy = ThrottlePolicy(),
                 cache_ttl: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.policy = policy
        self._ttl = cache_ttl
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache: dict[bytes, tuple[str, AccessLevel, float]] = {}

    def check(self, name: str, password: str, remote: str) -> Login:
        digest = hmac.new(self._key, f"{name}\0{password}".encode("utf-8", "surrogateescape"),
                          hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[2] > now:  # only the right password can hit the cache
            return Login(hit[0], hit[1])
        with self._store.transaction(read_only=True) as session:
            wait = throttle.blocked_for(session, address=remote, user=name, now=now)
            if wait:
                return Login(retry_after=wait)
            user = authenticate(session, name, password)
            level = AccessLevel.of(user) if user is not None else None
            had_failures = user is not None and throttle.has_failures(
                session, address=remote, user=name)
        if user is None or level is None:
            self._failed(name, remote)
            return Login()
        if had_failures:
            with self._store.transaction() as session:
                throttle.record_success(session, address=remote, user=name)
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (user.name, level, now + self._ttl)
        return Login(user.name, level)

    def forget(self) -> None:
        """Drop cached credentials (users or passwords changed)."""
        with self._lock:
            self._cache.clear()

    def _failed(self, name: str, remote: str) -> None:
        try:
            with self._store.transaction() as session:
                blocked = throttle.record_failure(session, address=remote, user=name,
                                                  protocol="soap", policy=self.policy,
                                                  now=self._clock())
        except ApplianceError as exc:
            log.warning("could not count a failed login from %s: %s", remote, exc)
            return
        if blocked:
            log.warning("logins as %r from %s refused for %.0f s after repeated failures",
                        name, remote, blocked)


def basic_credentials(header: str) -> tuple[str | None, str | None]:
    """(name, password) from an `Authorization: Basic` header, (None, None) otherwise."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else (None, None)
