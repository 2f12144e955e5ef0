"""Group commit: bodies are spooled in parallel, then one committer thread queues many sessions'
messages per transaction.

Each submission gets its own future; it resolves only after the body is fsync'd in the spool
and the transaction holding its entries has committed, so "250 OK" can follow it directly.
Spool writes run on a pool of writer threads because fsync waits on the disk, not the CPU, and
concurrent fsyncs share journal commits; the store commit is the single serial step.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.orm import Session

from appliance import crashpoint
from appliance.db.engine import Store
from appliance.errors import StoreUnavailable
from appliance.queue.spool import Spool
from appliance.queue.store import enqueue, enqueue_batch, finish, get_entry
from appliance.types import Action, NewMessage

if TYPE_CHECKING:
    from appliance.stats.metrics import Instruments

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Accepted:
    """What a submission became: queue ids of kept recipients, history for deleted ones."""

    msgid: str
    queue_ids: list[int]
    deleted: list[str]


@dataclasses.dataclass
class _Item:
    message: NewMessage
    body: bytes | None
    deleted: tuple[str, ...]
    future: Future[Accepted]


class Intake:
    """The committer: `submit()` from any thread, `start()`/`stop()` around the node's life."""

    def __init__(self, store: Store, spool: Spool, *, clock: Callable[[], float] = time.time,
                 max_batch: int = 256, writers: int = 32,
                 metrics: Instruments | None = None) -> None:
        self._store = store
        self._metrics = metrics
        self._spool = spool
        self._clock = clock
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._writers_count = writers
        self._writers: ThreadPoolExecutor | None = None
        self.batches = 0  # how many transactions; with `submitted`, the batching achieved
        self.submitted = 0

    def start(self) -> None:
        self._stopping = False
        self._writers = ThreadPoolExecutor(self._writers_count, thread_name_prefix="intake-spool")
        self._thread = threading.Thread(target=self._run, name="intake-committer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit what is pending, then end the threads."""
        if self._writers is not None:
            self._writers.shutdown(wait=True)  # every body written reaches the committer
            self._writers = None
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(self, message: NewMessage, body: bytes | None, *,
               deleted: tuple[str, ...] = ()) -> Future[Accepted]:
        """Queue `message` (its envelope's recipients) with `body`; `deleted` recipients are
        accepted and recorded as DELETE in history instead. `message.path` is filled in here."""
        future: Future[Accepted] = Future()
        item = _Item(message, body, deleted, future)
        writers = self._writers
        try:
            if self._stopping or writers is None:
                raise RuntimeError("stopped")
            writers.submit(self._spool_and_hand_over, item)
        except RuntimeError:
            future.set_exception(StoreUnavailable("the queue is not accepting mail"))
        return future

    def _spool_and_hand_over(self, item: _Item) -> None:
        if not self._spool_body(item):
            return
        crashpoint.reached("intake.spooled")  # body durable, no entry yet
        with self._cond:
            self._pending.append(item)
            self.submitted += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
            self._commit_batch(batch)

    def _commit_batch(self, ready: list[_Item]) -> None:
        try:
            results = self._transaction(ready)
        except Exception as exc:
            if len(ready) > 1 and not isinstance(exc, StoreUnavailable):
                # One bad message must not fail its neighbours: retry them one by one.
                for item in ready:
                    self._commit_batch_one(item)
                return
            self._fail(ready, exc)
            return
        self.batches += 1
        if self._metrics is not None:
            self._metrics.intake_batch.observe(len(ready))
        crashpoint.reached("intake.committed")  # entries committed, no 250 sent yet
        for item, result in zip(ready, results):
            item.future.set_result(result)

    def _commit_batch_one(self, item: _Item) -> None:
        try:
            result = self._transaction([item])[0]
        except Exception as exc:
            self._fail([item], exc)
            return
        self.batches += 1
        item.future.set_result(result)

    def _spool_body(self, item: _Item) -> bool:
        if item.body is None or not item.message.envelope.recipients:
            return True
        started = time.perf_counter() if self._metrics is not None else 0.0
        try:
            path = self._spool.write(item.message.msgid, item.body)
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.store_errors.labels("smtp").inc()
            log.error("spooling %s failed: %s", item.message.msgid, exc)
            item.future.set_exception(exc)
            return False
        if self._metrics is not None:
            self._metrics.spool_fsync_seconds.observe(time.perf_counter() - started)
        item.message = dataclasses.replace(item.message, path=path)
        return True

    def _transaction(self, items: list[_Item]) -> list[Accepted]:
        now = self._clock()
        with self._store.transaction() as session:
            session.connection()  # BEGIN (IMMEDIATE on SQLite): waits for the write lock
            queued = [item for item in items if item.message.envelope.recipients]
            ids = dict(zip((id(item) for item in queued),
                           enqueue_batch(session, [item.message for item in queued], now=now)))
            return [_store_one(session, item, ids.get(id(item), []), now) for item in items]

    def _fail(self, items: list[_Item], exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.store_errors.labels("smtp").inc()
        log.error("queueing %d message(s) failed: %s", len(items), exc)
        for item in items:
            if item.message.path:
                self._spool.remove(item.message.path)  # never committed: nothing refers to it
            item.future.set_exception(exc)


def _store_one(session: Session, item: _Item, ids: list[int], now: float) -> Accepted:
    """What one submission became; its kept recipients' entries are in already (`ids`)."""
    msg = item.message
    if item.deleted:
        # A DELETE verdict: the message is accepted and its recipients go straight to history.
        gone = dataclasses.replace(
            msg, path="", envelope=dataclasses.replace(msg.envelope, recipients=item.deleted),
        )
        for entry_id in enqueue(session, gone, now=now):
            finish(session, get_entry(session, entry_id), Action.DELETE, now=now)
    return Accepted(msgid=msg.msgid, queue_ids=ids, deleted=list(item.deleted))
