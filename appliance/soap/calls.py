"""What one SOAP call runs with: the node's parts, the caller, and its one transaction."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_
from sqlalchemy.orm import Session

import appliance
from appliance import hql
from appliance.access import audit
from appliance.access.levels import AccessLevel
from appliance.cluster.configservice import ConfigService
from appliance.cluster.service import ClusterService
from appliance.commands.runner import Runner
from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.mailauth.keys import KeyStore
from appliance.policy.apiauth import ApiAuthScript
from appliance.stats.rates import Rates
from appliance.stats.remote import RemoteRates
from appliance.errors import ApplianceError, InvalidInput
from appliance.queue.bulk import DEFAULT_CHUNK
from appliance.queue.spool import Spool

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeContext:
    """The node's parts the SOAP services use: built once by the composition root, never
    changed after (the SOAP server adds its own hook with dataclasses.replace)."""

    store: Store
    spool: Spool
    serial: str
    hostname: str = "localhost"
    version: str = appliance.__version__
    started: float = dataclasses.field(default_factory=time.time)
    clock: Callable[[], float] = time.time
    kick_delivery: Callable[[], None] | None = None  # wake the delivery service after a retry
    users_changed: Callable[[], None] | None = None  # drop cached credentials
    statement_timeout: float | None = 30.0  # seconds per store statement of a call (api.statement_timeout)
    # The node's other parts the services use; None where this node has none (a service
    # then answers that the feature is not available here).
    config_service: ConfigService | None = None
    cluster_service: ClusterService | None = None
    rates: Rates | RemoteRates | None = None  # live rate() windows (hslRate)
    rrd_dir: Path | None = None  # graphs
    commands: Runner | None = None
    api_auth: Callable[[], ApiAuthScript | None] = lambda: None  # the api-auth script now
    config: Callable[[], Config | None] = lambda: None  # the config the node runs now
    dkim_keys: KeyStore | None = None  # the node's DKIM signing keys (data dir keys/dkim)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Principal:
    """The authenticated caller of one request."""

    user: str
    level: AccessLevel
    remote: str
    # Kept only for the request, for an api-auth script (appliance.policy.apiauth); never logged.
    password: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass(kw_only=True)
class Done(Generic[T]):
    """What a mutating body returns: its value, how many entries it touched, spool orphans."""

    value: T
    affected: int = 1
    orphans: Sequence[str | None] = ()


class Call:
    """One SOAP operation call. Services reach it as `ctx.udc`.

    Reads: `with call.read() as session: ...`. Mutations: `call.mutate(arguments, body)` runs
    `body(session) -> Done` and the audit record in one transaction, and removes orphaned spool
    files after the commit. The access check for the operation has run before the service code.
    """

    def __init__(self, node: NodeContext, principal: Principal, operation: str) -> None:
        self.node = node
        self.principal = principal
        self.operation = operation
        # Set once an audit row was written for this call, so that the call wrapper
        # (ApplianceApplication.call_wrapper) audits a failure only when nothing else did.
        self.audited = False

    @property
    def level(self) -> AccessLevel:
        return self.principal.level

    def now(self) -> float:
        return self.node.clock()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.node.store.transaction(read_only=True) as session:
            yield session

    def where(self, text: str | None, *, history: bool = False,
              trash: bool = False) -> ColumnElement[bool]:
        """The caller's filter compiled, joined with `&&` to its level's restriction (on the
        queue, the history with `history`, or the trash with `trash`)."""
        compiled = hql.compile_filter(text or "", history=history, trash=trash)
        restriction = self.restriction(history=history, trash=trash)
        return compiled if restriction is None else and_(restriction, compiled)

    def restriction(self, *, history: bool = False,
                    trash: bool = False) -> ColumnElement[bool] | None:
        """The level's restriction alone (None when unrestricted): single-id calls use it."""
        if not self.level.restriction:
            return None
        return hql.compile_filter(self.level.restriction, history=history, trash=trash)

    def mutate(self, arguments: Mapping[str, Any], body: Callable[[Session], Done[T]]) -> T:
        try:
            with self.node.store.transaction() as session:
                done = body(session)
                self._audit(session, arguments, done.affected, "ok")
        except ApplianceError as exc:
            self.audit_failure(arguments, exc)
            raise
        self.remove_orphans(done.orphans)
        return done.value

    def mutate_outside(self, arguments: Mapping[str, Any], run: Callable[[], int]) -> int:
        """For domain calls that own their (chunked) transactions, like bulk actions."""
        try:
            affected = run()
        except ApplianceError as exc:
            # A chunked action may have committed some chunks before failing: say how many.
            self.audit_failure(arguments, exc, affected=getattr(exc, "bulk_done", 0))
            raise
        with self.node.store.transaction() as session:
            self._audit(session, arguments, affected, "ok")
        return affected

    def bulk_chunk(self) -> int:
        """Entries per transaction of a bulk action ([queue] bulk_chunk)."""
        config = self.node.config()
        return DEFAULT_CHUNK if config is None else config.queue.bulk_chunk

    def mutate_chunked(self, arguments: Mapping[str, Any],
                       run: Callable[[Callable[[Session, int], None]], int]) -> int:
        """For chunked actions (bulk): the audit row is written BEFORE the first chunk with the
        outcome "started", each chunk adds its count to it inside the chunk's own transaction
        (`run` gets that hook), and the end sets the outcome. A crash mid-way (kill -9) so
        leaves a "started" row counting exactly the committed chunks, never deletions with no
        audit row. A failure is recorded on the same row."""
        with self.node.store.transaction() as session:
            record_id = self._audit(session, arguments, 0, "started").id

        def progress(session: Session, acted: int) -> None:
            audit.add_affected(session, record_id, acted)

        try:
            affected = run(progress)
        except Exception as exc:
            self._set_outcome(record_id, f"fault: {exc}"[:500])
            raise
        self._set_outcome(record_id, "ok")
        log.info("api %s by %s from %s: ok (%d affected)", self.operation,
                 self.principal.user, self.principal.remote, affected)
        return affected

    def _set_outcome(self, record_id: int, outcome: str) -> None:
        try:
            with self.node.store.transaction() as session:
                audit.set_outcome(session, record_id, outcome)
        except ApplianceError:
            log.warning("could not complete the audit record of %s by %s", self.operation,
                        self.principal.user)

    def run_outside(self, arguments: Mapping[str, Any], run: Callable[[], T]) -> T:
        """A change that commits in a store of its own (e.g. the shared config store): run it,
        then audit it (as one affected object) in the node's store; a failure is audited too."""
        result: list[T] = []

        def body() -> int:
            result.append(run())
            return 1

        self.mutate_outside(arguments, body)
        return result[0]

    def audit_failure(self, arguments: Mapping[str, Any], exc: Exception, *,
                      affected: int = 0) -> None:
        """A refused or failed mutation is recorded too, in a transaction of its own."""
        try:
            with self.node.store.transaction() as session:
                self._audit(session, arguments, affected, f"fault: {exc}"[:500])
        except ApplianceError:
            log.warning("could not audit failed %s by %s", self.operation, self.principal.user)

    def remove_orphans(self, paths: Sequence[str | None]) -> None:
        self.node.spool.remove_many([p for p in paths if p])

    def _audit(self, session: Session, arguments: Mapping[str, Any], affected: int,
               outcome: str) -> AuditRecord:
        self.audited = True
        row = audit.record(
            session, user=self.principal.user, remote=self.principal.remote,
            operation=self.operation, arguments=arguments, affected=affected, outcome=outcome,
            now=self.now(),
        )
        log.info("api %s by %s from %s: %s (%d affected)", self.operation,
                 self.principal.user, self.principal.remote, outcome, affected)
        return row


def required(value: T | None, name: str) -> T:
    """An argument the operation cannot do without (None or empty is a client error)."""
    if value is None or value == "":
        raise InvalidInput(f"{name} is required")
    return value
