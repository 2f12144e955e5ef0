"""Routes config operations to the cluster's shared store, or to the node's own store."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError

from appliance.cluster.dsn import redacted, to_url
from appliance.cluster.membership import Membership, membership
from appliance.db.engine import Store
from appliance.db.schema import ensure_schema
from appliance.errors import StoreUnavailable

log = logging.getLogger(__name__)


class StoreRouter:
    """The local store, plus the shared store its membership names (opened on first use)."""

    def __init__(self, local: Store, *, connect_timeout: int = 3) -> None:
        self.local = local
        self._timeout = connect_timeout
        self._shared: dict[str, Store] = {}
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def membership(self) -> Membership | None:
        with self.local.transaction(read_only=True) as session:
            return membership(session)

    def shared(self, dsn: str) -> Store:
        """The shared store at `dsn`, its schema brought up to date the first time."""
        url = to_url(dsn)
        with self._lock:
            store = self._shared.get(url)
            if store is None:
                store = Store(url, connect_args={"connect_timeout": self._timeout},
                              pool_size=2, max_overflow=4, pool_timeout=self._timeout)
                self._shared[url] = store
            if url not in self._ready:
                try:
                    ensure_schema(store.engine)
                except (DBAPIError, OSError) as exc:
                    raise StoreUnavailable(f"shared store {redacted(dsn)} unavailable: {exc}") from exc
                self._ready.add(url)
        return store

    def config_store(self) -> Store:
        """Where revisions live for this node right now."""
        member = self.membership()
        return self.local if member is None else self.shared(member.dsn)

    def close(self) -> None:
        with self._lock:
            for store in self._shared.values():
                store.dispose()
            self._shared.clear()
            self._ready.clear()
