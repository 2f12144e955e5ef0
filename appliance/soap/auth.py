"""Credential checks for the SOAP gateway: a short-lived cache and per-address throttling."""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from appliance.access.levels import AccessLevel
from appliance.access.users import authenticate
from appliance.db.engine import Store

# Bounds on what an attacker can make us remember.
_MAX_ADDRESSES = 10_000
_MAX_CACHED = 1_000


class Authenticator:
    """Checks user name and password against the store.

    scrypt costs tens of milliseconds, so a successful check is cached for `cache_ttl` seconds
    under an HMAC of the credentials (never the password itself). After `max_failures` failures
    from one address within `window` seconds, that address is refused for `block` seconds
    without checking anything (HTTP 429).
    """

    def __init__(self, store: Store, *, max_failures: int = 5, window: float = 60.0,
                 block: float = 60.0, cache_ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max_failures = max_failures
        self._window = window
        self._block = block
        self._ttl = cache_ttl
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._failures: dict[str, collections.deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._cache: dict[bytes, tuple[str, AccessLevel, float]] = {}

    def retry_after(self, remote: str) -> float:
        """Seconds until `remote` may try again (0 when it is not throttled)."""
        with self._lock:
            until = self._blocked.get(remote, 0.0)
            left = until - self._clock()
            if left <= 0 and until:
                del self._blocked[remote]
            return max(left, 0.0)

    def check(self, name: str, password: str, remote: str) -> tuple[str, AccessLevel] | None:
        """(user, level) for good credentials; None (and a failure counted) otherwise."""
        digest = hmac.new(self._key, f"{name}\0{password}".encode("utf-8", "surrogateescape"),
                          hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[2] > now:
            return hit[0], hit[1]
        with self._store.transaction(read_only=True) as session:
            user = authenticate(session, name, password)
            level = AccessLevel.of(user) if user is not None else None
        if user is None or level is None:
            self._failed(remote)
            return None
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (user.name, level, now + self._ttl)
            self._failures.pop(remote, None)
        return user.name, level

    def forget(self) -> None:
        """Drop cached credentials (users or passwords changed)."""
        with self._lock:
            self._cache.clear()

    def _failed(self, remote: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= _MAX_ADDRESSES:
                self._failures.clear()
            times = self._failures.setdefault(remote, collections.deque(maxlen=self._max_failures))
            times.append(now)
            if len(times) == self._max_failures and now - times[0] <= self._window:
                if len(self._blocked) >= _MAX_ADDRESSES:
                    self._blocked = {k: v for k, v in self._blocked.items() if v > now}
                self._blocked[remote] = now + self._block
                times.clear()
