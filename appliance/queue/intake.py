"""Group commit: bodies are spooled in parallel, then one committer thread queues many sessions'
messages per transaction.

Each submission gets its own future; it resolves only after the body is fsync'd in the spool
and the transaction holding its entries has committed, so "250 OK" can follow it directly.
Spool writes run on a pool of writer threads because fsync waits on the disk, not the CPU, and
concurrent fsyncs share journal commits; the store commit is the single serial step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any
from collections.abc import Callable
from concurrent.futures import Future

from sqlalchemy.orm import Session

from appliance import crashpoint
from appliance.db.engine import Store
from appliance.errors import StoreUnavailable
from appliance.queue.spool import Spool
from appliance.queue import events
from appliance.queue.store import enqueue, enqueue_batch, finish, get_entry
from appliance.queue.suspend import Holds
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


# How a submission learns its outcome: (result, None) or (None, error), called once, from
# the committer or a spool writer thread.
Done = Callable[[Accepted | None, BaseException | None], None]


@dataclasses.dataclass(slots=True)
class _Item:
    message: NewMessage
    body: bytes | None
    deleted: tuple[str, ...]
    done: Done


_STOP = object()  # a spool writer's last item


class Intake:
    """The committer: `submit()` from any thread (or `submit_async()` on an event loop),
    `start()`/`stop()` around the node's life."""

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
        self._stopping = True
        self._thread: threading.Thread | None = None
        self._writers_count = writers
        # Spool writers take bodies from a plain queue: an executor's submit() would make a
        # Future (and its Condition) per message that nothing waits on.
        self._bodies: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._writers: list[threading.Thread] = []
        self._holds = Holds()  # suspensions that hold new mail (their filters compiled once)
        self.batches = 0  # how many transactions; with `submitted`, the batching achieved
        self.submitted = 0

    def start(self) -> None:
        self._stopping = False
        self._writers = [threading.Thread(target=self._write_bodies, daemon=True,
                                          name=f"intake-spool-{i}")
                         for i in range(self._writers_count)]
        for writer in self._writers:
            writer.start()
        self._thread = threading.Thread(target=self._run, name="intake-committer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit what is pending, then end the threads."""
        if self._writers:
            self._stopping = True
            for _ in self._writers:
                self._bodies.put(_STOP)
            for writer in self._writers:  # every body written reaches the committer
                writer.join()
            self._writers = []
            self._refuse_leftovers()
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

        def done(result: Accepted | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        self._enter(_Item(message, body, deleted, done))
        return future

    def submit_async(self, message: NewMessage, body: bytes | None, *,
                     deleted: tuple[str, ...] = ()) -> asyncio.Future[Accepted]:
        """`submit()` for a caller on an event loop: an asyncio future of that loop, resolved
        there (one wake-up of the loop per committed batch, not per message)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Accepted] = loop.create_future()
        self._enter(_Item(message, body, deleted, _LoopDone(loop, future)))
        return future

    def _enter(self, item: _Item) -> None:
        if self._stopping:
            item.done(None, StoreUnavailable("the queue is not accepting mail"))
            return
        self._bodies.put(item)

    def _refuse_leftovers(self) -> None:
        """Submissions that raced with stop() and found no writer any more."""
        while True:
            try:
                item = self._bodies.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Item):
                item.done(None, StoreUnavailable("the queue is not accepting mail"))

    def _write_bodies(self) -> None:
        while True:
            item = self._bodies.get()
            if not isinstance(item, _Item):
                return
            try:
                self._spool_and_hand_over(item)
            except BaseException as exc:  # never leave a sender waiting for ever
                item.done(None, exc)
                _LoopDone.flush()

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
            self._commit_pending()

    def _take(self) -> list[_Item]:
        with self._cond:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        return batch

    def _commit_pending(self) -> None:
        """One transaction for what is pending once it holds the write lock: what arrived
        while it waited for another writer (a receiver, delivery) joins the batch."""
        ready: list[_Item] = []
        try:
            results = self._transaction(ready, take=True)
        except Exception as exc:
            if len(ready) > 1 and not isinstance(exc, StoreUnavailable):
                # One bad message must not fail its neighbours: retry them one by one.
                for item in ready:
                    self._commit_batch_one(item)
                return
            self._fail(ready or self._take(), exc)
            return
        self.batches += 1
        if self._metrics is not None:
            self._metrics.intake_batch.observe(len(ready))
        crashpoint.reached("intake.committed")  # entries committed, no 250 sent yet
        for item, result in zip(ready, results):
            item.done(result, None)
        _LoopDone.flush()

    def _commit_batch_one(self, item: _Item) -> None:
        try:
            result = self._transaction([item])[0]
        except Exception as exc:
            self._fail([item], exc)
            return
        self.batches += 1
        item.done(result, None)
        _LoopDone.flush()

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
            item.done(None, exc)
            _LoopDone.flush()
            return False
        if self._metrics is not None:
            self._metrics.spool_fsync_seconds.observe(time.perf_counter() - started)
        item.message = dataclasses.replace(item.message, path=path)
        return True

    def _transaction(self, items: list[_Item], *, take: bool = False) -> list[Accepted]:
        """Queue `items`; with `take`, first fill `items` from what is pending."""
        with self._store.transaction() as session:
            session.connection()  # BEGIN (IMMEDIATE on SQLite): waits for the write lock
            if take:
                items.extend(self._take())
            now = self._clock()
            self._holds.refresh(session, now=now)
            timeline: list[events.Event] = []
            queued = [item for item in items if item.message.envelope.recipients]
            ids = dict(zip((id(item) for item in queued),
                           enqueue_batch(session, [item.message for item in queued], now=now)))
            results = [_store_one(session, item, ids.get(id(item), []), now, timeline)
                       for item in items]
            events.add(session, timeline)  # the whole batch's events in one statement
            if self._holds.active:
                self._holds.mark_new(session, [i for r in results for i in r.queue_ids], now=now)
            return results

    def _fail(self, items: list[_Item], exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.store_errors.labels("smtp").inc()
        log.error("queueing %d message(s) failed: %s", len(items), exc)
        for item in items:
            if item.message.path:
                self._spool.remove(item.message.path)  # never committed: nothing refers to it
            item.done(None, exc)
        _LoopDone.flush()


class _LoopDone:
    """Resolves an asyncio future from another thread. Outcomes are gathered per thread and
    handed to each loop in one call_soon_threadsafe by `flush()` (after a batch), so a batch
    of a hundred messages wakes the loop once."""

    _local = threading.local()

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Accepted]) -> None:
        self.loop = loop
        self.future = future

    def __call__(self, result: Accepted | None, error: BaseException | None) -> None:
        waiting: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] | None = \
            getattr(self._local, "waiting", None)
        if waiting is None:
            waiting = self._local.waiting = {}
        waiting.setdefault(self.loop, []).append((self.future, result, error))

    @classmethod
    def flush(cls) -> None:
        waiting = getattr(cls._local, "waiting", None)
        if not waiting:
            return
        cls._local.waiting = {}
        for loop, outcomes in waiting.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass


def _resolve(outcomes: list[tuple[Any, ...]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # cancelled: the session went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _store_one(session: Session, item: _Item, ids: list[int], now: float,
               timeline: list[events.Event]) -> Accepted:
    """What one submission became; its kept recipients' entries are in already (`ids`); its
    timeline events are appended to `timeline` for the caller."""
    msg = item.message
    timeline += [events.Event(msgid=msg.msgid, kind=n.kind, ts=n.ts, detail=n.detail, ref=n.ref)
                for n in msg.notes]
    timeline += [events.Event(msgid=msg.msgid, kind="queued", ts=now, queueid=qid, detail={
        "rcpt": rcpt, "transport": msg.transports.get(rcpt, msg.transport), "state": msg.state.value,
        **({"quarantine": msg.quarantine} if msg.quarantine else {})})
        for qid, rcpt in zip(ids, msg.envelope.recipients)]
    timeline += [events.Event(msgid=msg.msgid, kind="deleted", ts=now, detail={
        "rcpt": rcpt, "reason": "deleted by policy at reception"}) for rcpt in item.deleted]
    if item.deleted:
        # A DELETE verdict: the message is accepted and its recipients go straight to history.
        gone = dataclasses.replace(
            msg, path="", envelope=dataclasses.replace(msg.envelope, recipients=item.deleted),
        )
        for entry_id in enqueue(session, gone, now=now):
            finish(session, get_entry(session, entry_id), Action.DELETE, now=now)
    return Accepted(msgid=msg.msgid, queue_ids=ids, deleted=list(item.deleted))
