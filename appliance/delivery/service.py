"""The delivery service: workers that claim due entries, deliver them and record the outcomes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from appliance.config.schema import Config, Transport
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.delivery.grouping import Destination, destination_for, transactions
from appliance.delivery.lanes import ConnectionPool, Lanes, Result
from appliance.delivery.outbound import Connector, SessionOptions, SmtpConnector
from appliance.delivery.outcomes import Fate, Outcome, decide, record
from appliance.replies import Reply
from appliance.delivery.routing import DnsResolver, Resolver, RouteError, hops_for
from appliance.errors import InvalidInput, NotFound, StoreUnavailable
from appliance.mailauth.seal import SEAL_KEY, Sealer
from appliance.mailauth.sign import CHOICE_KEY, SIGNATURE_KEY, SignError, Signer, parse_choice
from appliance.policy.flow import Decision, DeliveryInfo, DeliveryOutcome, Flow, Verdict
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.queue.suspend import Holds
from appliance.stats.metrics import Instruments, reply_class

T = TypeVar("T")
log = logging.getLogger(__name__)

_SIGN_ON_LOOP_MAX = 256 * 1024  # bodies up to this are signed on the event loop


class DeliveryService:
    """`config.queue.workers` workers; start/stop run on the node's event loop, `kick()` may be
    called from any thread. Store work runs in threads so the loop never waits on a commit.

    Delivery is at-least-once: an entry is removed only after the next hop answered 250 and the
    outcome committed; a crash in between delivers it again after its lease expires (or at the
    next start, which releases every lease).
    """

    def __init__(
        self, *, store: Store, spool: Spool, config: Callable[[], Config], flow: Flow,
        clock: Callable[[], float] = time.time, resolver: Resolver | None = None,
        connector: Connector | None = None, batch_size: int = 100, idle_timeout: float = 5.0,
        stop_grace: float = 30.0, metrics: Instruments | None = None, signer: Signer | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._sealer = sealer
        self._sign_lock = threading.Lock()  # one signature per message across this process's workers
        self._metrics = metrics
        self._spool = spool
        self._config = config
        self._flow = flow
        self._clock = clock
        self._resolver = resolver
        self._batch = batch_size
        self._grace = stop_grace
        self.owner = f"delivery-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.pool = ConnectionPool(connector or SmtpConnector(), idle_timeout=idle_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._workers: list[_Worker] = []  # taking batches; retired ones leave this list
        self._tasks: set[asyncio.Task[None]] = set()  # worker tasks alive, retiring included
        self._reaper_task: asyncio.Task[None] | None = None
        self._seen: Config | None = None  # the config the pools and workers were set up for
        self._inflight: set[int] = set()
        self.holds = Holds()  # active suspensions: never leased; filters compiled per change
        self._cleanups: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        if self._resolver is None:
            self._resolver = DnsResolver()
        released = await asyncio.to_thread(self._release_all)
        if released:
            log.info("delivery: %d entries left leased by an earlier run are due again", released)
        self._seen = self._config()
        if self._sealer is not None:
            try:
                self._sealer.check(self._seen)
            except InvalidInput as exc:
                log.error("delivery: %s; mail goes unsealed until the key is there", exc)
        self._resize(self._seen.queue.workers)
        self._reaper_task = asyncio.create_task(self._reaper(), name="delivery-reaper")
        log.info("delivery: %d workers started as %s", len(self._workers), self.owner)

    async def stop(self) -> None:
        """Let workers finish their batch (up to the grace time), then give back what is left."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        tasks = list(self._tasks) + ([self._reaper_task] if self._reaper_task else [])
        self._workers, self._reaper_task = [], None
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._inflight:
            left, self._inflight = sorted(self._inflight), set()
            await asyncio.to_thread(self._release, left)
            log.info("delivery: released %d unfinished leases", len(left))
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self.pool.close_all()

    def kick(self) -> None:
        """Look for due entries now (after an enqueue or a retry request)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(wake.set)

    # -- configuration changes ----------------------------------------------------------------
    @property
    def workers(self) -> int:
        """Workers taking new batches (retiring ones may still be finishing theirs)."""
        return len(self._workers)

    @property
    def running_workers(self) -> int:
        """Worker tasks alive, retiring ones included."""
        return sum(1 for t in self._tasks if not t.done())

    def apply(self, old: Config, new: Config) -> None:
        """appliance.config.holder.Subscriber: follow a new revision (see `reconfigure`); a
        revision that turns ARC sealing on, or names another sealing key, which this node
        lacks is refused."""
        if self._sealer is not None and _seal_settings(new) != _seal_settings(old):
            self._sealer.check(new)
        self.reconfigure(new)

    def reconfigure(self, new: Config) -> None:
        """Follow a new config from any thread: the worker count changes (a retiring worker
        finishes its batch first) and destinations of changed transports get fresh pools, so
        new limits, timeouts and TLS settings apply to the next connections. Sessions in use
        finish on the old settings. Queue timings and routes are read at each batch anyway."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._stopping:
            return  # not running: start() reads the config then
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._switch(new)
        else:
            loop.call_soon_threadsafe(self._switch, new)

    def _switch(self, new: Config) -> None:
        if self._stopping:
            return
        old, self._seen = self._seen, new
        if new.queue.workers != len(self._workers):
            log.info("delivery: workers %d -> %d (config change)", len(self._workers), new.queue.workers)
            self._resize(new.queue.workers)
        changed = _changed_transports(old, new)
        if changed:
            task = asyncio.create_task(self.pool.retire(lambda key: getattr(key, "transport", None) in changed))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
            log.info("delivery: new connection settings for transports %s", ", ".join(sorted(changed)))

    def _resize(self, count: int) -> None:
        while len(self._workers) < count:
            worker = _Worker()
            task = asyncio.create_task(self._worker(worker), name=f"delivery-{len(self._workers)}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._workers.append(worker)
        while len(self._workers) > count:
            self._workers.pop().retired = True
        if self._wake is not None:
            self._wake.set()  # idle retiring workers leave now

    # -- the loop ---------------------------------------------------------------------------
    async def _worker(self, me: _Worker) -> None:
        while not self._stopping and not me.retired:
            try:
                worked = await self._round()
            except StoreUnavailable as exc:
                log.warning("delivery: %s", exc)
                worked = False
            except Exception:  # a worker must survive one bad batch; leases bring it back
                log.exception("delivery: batch failed")
                worked = False
            if not worked and not self._stopping and not me.retired:
                await self._sleep(self._config().queue.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _reaper(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            await self.pool.close_idle()

    async def _round(self) -> bool:
        cfg = self._config()
        batch, meta = await asyncio.to_thread(self._claim, cfg)
        if not batch:
            return False
        ids = {e.id for e in batch}
        self._inflight |= ids
        outcomes = await self._attempt(batch, meta, cfg)
        await self._finish(outcomes, meta, cfg)
        self._inflight -= ids
        return True

    # -- attempts ---------------------------------------------------------------------------
    async def _attempt(
        self, batch: Sequence[QueueEntry], meta: dict[int, dict[str, str]], cfg: Config
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        routed: dict[Destination, list[QueueEntry]] = {}
        now = self._clock()
        for entry in batch:
            verdict = self._flow.pre_delivery(_info(entry, meta))
            decided = _policy_outcome(entry, verdict, cfg, now)
            if decided is not None:
                outcomes.append(decided)
                continue
            tid = verdict.transport or entry.transport or "default"
            try:
                transport = cfg.transport(tid)
            except KeyError:
                outcomes.append(decide(entry, Reply(0, f"unknown transport {tid!r}"), queue=cfg.queue, now=now))
                continue
            dest = destination_for(transport=tid, nexthop=verdict.nexthop or transport.nexthop,
                                   rcpt_domain=entry.rcpt_domain, source_ip=verdict.source_ip)
            routed.setdefault(dest, []).append(entry)
        signatures, unsaved = await self._sign(routed, meta, cfg)
        if unsaved:
            routed, held = _without(routed, unsaved)
            now = self._clock()
            reply = Reply(0, "4.3.0 the DKIM signature or ARC set could not be recorded; retrying later")
            outcomes += [decide(e, reply, queue=cfg.queue, now=now) for e in held]
        groups = list(routed.items())
        results = await asyncio.gather(*(self._deliver(d, es, cfg, signatures) for d, es in groups))
        now = self._clock()
        for (_, entries), result in zip(groups, results):
            for entry in entries:
                r = result.get(entry.id) or Result(Reply(0, "not attempted"))
                if r.missing_body:
                    outcomes.append(Outcome(entry=entry, fate=Fate.ERROR, reply=r.reply, reason=str(r.reply)))
                else:
                    outcomes.append(decide(entry, r.reply, queue=cfg.queue, now=now, peer=r.peer,
                                           transfertime=r.transfertime, started=r.started))
        return outcomes

    async def _deliver(self, dest: Destination, entries: list[QueueEntry], cfg: Config,
                       signatures: dict[str, bytes]) -> dict[int, Result]:
        transport = cfg.transport(dest.transport)
        assert self._resolver is not None
        try:
            hops = await hops_for(dest, port=transport.port, resolver=self._resolver)
        except RouteError as exc:
            reply = Reply(550, f"5.1.2 {exc}") if exc.permanent else Reply(0, str(exc))
            return {e.id: Result(reply) for e in entries}
        lanes = Lanes(
            pool=self.pool, dest=self.pool.for_destination(dest, transport.max_connections),
            hops=hops, options=_options(transport, cfg, dest),
            max_messages=transport.max_messages_per_connection,
            read_bodies=functools.partial(self._read_bodies, signatures),
        )
        return await lanes.run(transactions(entries), transport.max_connections)

    async def _read_bodies(self, signatures: dict[str, bytes], paths: Sequence[str]) -> list[bytes | None]:
        return await asyncio.to_thread(self._read_many, paths, signatures)

    def _read_many(self, paths: Sequence[str], signatures: dict[str, bytes]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for path in paths:
            try:
                body = self._spool.read_own(path)
            except (NotFound, InvalidInput, FileNotFoundError):  # gone, or a path the spool refuses
                out.append(None)
                continue
            signature = signatures.get(path)
            out.append(body if signature is None else signature + body)
        return out

    # -- DKIM signatures and ARC sets ---------------------------------------------------------
    async def _sign(self, routed: dict[Destination, list[QueueEntry]], meta: dict[int, dict[str, str]],
                    cfg: Config) -> tuple[dict[str, bytes], set[str]]:
        """Each message's header fields to put on top by spool path, its ARC set and its
        DKIM-Signature field: made once, on its first attempt, and kept in its entries'
        metadata so that every retry and every recipient sends the same ones. Returns also the
        messages whose new fields could not be recorded."""
        prefixes: dict[str, bytes] = {}
        todo: dict[str, _Work] = {}
        signer = self._signer
        may: dict[tuple[str, bool], bool] = {}  # may_sign() once per (choice, is_dsn) in a batch
        for entries in routed.values():
            for entry in entries:
                if entry.msgid in todo:
                    continue
                values = meta.get(entry.id, {})
                kept = {k: values[k].encode("utf-8") for k in _PREFIX_KEYS if values.get(k)}
                make: list[str] = []
                if SIGNATURE_KEY not in kept and signer is not None:
                    asked = (values.get(CHOICE_KEY, ""), bool(entry.is_dsn))
                    if asked not in may:
                        may[asked] = signer.may_sign(choice=parse_choice(asked[0]), is_dsn=asked[1],
                                                     cfg=cfg.dkim)
                    if may[asked]:
                        make.append(SIGNATURE_KEY)
                if SEAL_KEY not in kept and self._sealer is not None \
                        and self._sealer.may_seal(values, cfg):
                    make.append(SEAL_KEY)
                if make:
                    todo[entry.msgid] = _Work(entry, make, kept)
                elif kept:
                    prefixes[entry.path] = _prefix(kept)
        if not todo:
            return prefixes, set()
        made = await self._make_signatures(todo, meta, cfg)
        if made:
            try:
                made = await asyncio.to_thread(self._keep_signatures, made)
            except StoreUnavailable as exc:
                log.warning("delivery: DKIM signatures / ARC sets not recorded, deferring: %s", exc)
                return prefixes, set(todo)
        for msgid, work in todo.items():
            fields = {**work.kept, **made.get(msgid, {})}
            if fields:
                prefixes[work.entry.path] = _prefix(fields)
        return prefixes, set()

    async def _make_signatures(self, todo: dict[str, _Work], meta: dict[int, dict[str, str]],
                               cfg: Config) -> dict[str, dict[str, bytes]]:
        """The signatures and ARC sets of a batch, made on the event loop one message at a
        time, with the sessions' replies handled between two. A thread signing a whole batch
        holds the GIL (OpenSSL's RSA does not release it) against the loop, which then gets a
        turn only each switch interval. Large bodies (canonicalization is linear) still go to
        a thread."""
        bodies = await asyncio.to_thread(self._read_for_signing, todo)
        made: dict[str, dict[str, bytes]] = {}
        for msgid, body in bodies.items():
            work, fields = todo[msgid], {}
            if SIGNATURE_KEY in work.make:
                header = await _beside_loop(len(body), self._signature, work.entry, body, meta, cfg)
                if header is not None:
                    fields[SIGNATURE_KEY] = header
            if SEAL_KEY in work.make:
                assert self._sealer is not None
                arc = await _beside_loop(len(body), self._sealer.seal, body, config=cfg,
                                         now=self._clock(), name=work.entry.msgid)
                if arc is not None:
                    fields[SEAL_KEY] = arc
            if fields:
                made[msgid] = fields
        return made

    def _read_for_signing(self, todo: dict[str, _Work]) -> dict[str, bytes]:
        bodies: dict[str, bytes] = {}
        for msgid, work in todo.items():
            try:
                bodies[msgid] = self._spool.read_own(work.entry.path)
            except (NotFound, InvalidInput, FileNotFoundError):
                continue  # the attempt reports the missing body
        return bodies

    def _signature(self, entry: QueueEntry, body: bytes, meta: dict[int, dict[str, str]],
                   cfg: Config) -> bytes | None:
        assert self._signer is not None
        choice = parse_choice(meta.get(entry.id, {}).get(CHOICE_KEY, ""))
        try:
            return self._signer.signature(body, choice=choice, is_dsn=bool(entry.is_dsn),
                                          cfg=cfg.dkim, now=self._clock())
        except SignError as exc:
            log.warning("delivery: %s not DKIM-signed: %s", entry.msgid, exc)
            return None

    def _keep_signatures(self, made: dict[str, dict[str, bytes]]) -> dict[str, dict[str, bytes]]:
        """Record new fields in one transaction; where another worker made one of a message
        between our claim and now, its field is kept and returned instead."""
        out = {msgid: dict(fields) for msgid, fields in made.items()}
        with self._sign_lock, self._store.transaction() as s:
            for key in _PREFIX_KEYS:
                new = {m: f[key] for m, f in made.items() if key in f}
                if not new:
                    continue
                kept = q.message_metadata(s, new, key)
                q.set_message_metadata(s, {m: v.decode("utf-8") for m, v in new.items()
                                           if m not in kept}, key)
                for msgid, value in kept.items():
                    out[msgid][key] = value.encode("utf-8")
        return out

    # -- outcomes ---------------------------------------------------------------------------
    async def _finish(self, outcomes: list[Outcome], meta: dict[int, dict[str, str]], cfg: Config) -> None:
        written, orphans = await asyncio.to_thread(self._record, outcomes, cfg.node.hostname)
        if orphans:  # committed: unlinking is slow on some disks, so not on the worker's path
            task = asyncio.create_task(asyncio.to_thread(self._remove, orphans))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
        if self._metrics is not None:
            _count(self._metrics, written, self._clock())
        for out in written:
            _log_outcome(out)
            self._flow.post_delivery(_info(out.entry, meta), DeliveryOutcome(
                action=out.fate.value, code=out.reply.code, text=out.reply.text,
                transfertime=out.transfertime,
            ))

    # -- store work (in threads) ------------------------------------------------------------
    def _claim(self, cfg: Config) -> tuple[list[QueueEntry], dict[int, dict[str, str]]]:
        with self._store.transaction() as s:
            now = self._clock()
            ended = self.holds.refresh(s, now=now, spread=float(cfg.queue.retry_schedule[0]))
            if ended:
                log.info("delivery: suspension %s ended; its entries are released over %d s",
                         ", ".join(ended), cfg.queue.retry_schedule[0])
            entries = q.claim(s, owner=self.owner, now=now, lease=cfg.queue.lease, limit=self._batch,
                              exclude=self.holds.exclusion())
            meta = q.metadata_of(s, [e.id for e in entries]) if entries else {}
        return entries, meta

    def _record(self, outcomes: list[Outcome], hostname: str) -> tuple[list[Outcome], list[str]]:
        with self._store.transaction() as s:
            return record(s, self._spool, outcomes, owner=self.owner, now=self._clock(), hostname=hostname)

    def _remove(self, paths: list[str]) -> None:
        self._spool.remove_many(paths)  # only after the commit: a rollback must still find its body

    def _release_all(self) -> int:
        with self._store.transaction() as s:
            return q.release_all_leases(s)

    def _release(self, ids: list[int]) -> None:
        with self._store.transaction() as s:
            for entry_id in ids:
                q.release(s, entry_id, owner=self.owner)


# The metadata of fields put on top of a message, in their order there: the ARC set above
# the node's DKIM-Signature (neither covers the other).
_PREFIX_KEYS = (SEAL_KEY, SIGNATURE_KEY)


def _prefix(fields: dict[str, bytes]) -> bytes:
    return b"".join(fields[k] for k in _PREFIX_KEYS if k in fields)


@dataclasses.dataclass
class _Work:
    """A message whose fields are to be made: its first entry, what to make, what is kept."""

    entry: QueueEntry
    make: list[str]
    kept: dict[str, bytes]


@dataclasses.dataclass(eq=False)
class _Worker:
    retired: bool = False


async def _beside_loop(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the loop, then a turn for the sessions; on a thread when the
    message is over _SIGN_ON_LOOP_MAX bytes."""
    if size > _SIGN_ON_LOOP_MAX:
        return await asyncio.to_thread(fn, *args, **kwargs)
    out = fn(*args, **kwargs)
    await asyncio.sleep(0)
    return out


def _seal_settings(config: Config) -> tuple[bool, tuple[str, str]]:
    return config.mailauth.arc_seal, Sealer.key_name(config)


def _without(routed: dict[Destination, list[QueueEntry]], msgids: set[str]
             ) -> tuple[dict[Destination, list[QueueEntry]], list[QueueEntry]]:
    kept: dict[Destination, list[QueueEntry]] = {}
    held: list[QueueEntry] = []
    for dest, entries in routed.items():
        for entry in entries:
            (held if entry.msgid in msgids else kept.setdefault(dest, [])).append(entry)
    return kept, held


def _changed_transports(old: Config | None, new: Config) -> set[str]:
    """Transport ids whose connection settings differ; all of them when the HELO name did."""
    if old is None:
        return set()
    before = {t.id: t for t in old.transports}
    if old.node.hostname != new.node.hostname:
        return set(before) | {t.id for t in new.transports}
    after = {t.id: t for t in new.transports}
    return {i for i in before.keys() | after.keys() if before.get(i) != after.get(i)}


def _options(transport: Transport, cfg: Config, dest: Destination) -> SessionOptions:
    return SessionOptions(
        helo=cfg.node.hostname, starttls=transport.starttls, tls_verify=transport.tls_verify,
        connect_timeout=transport.connect_timeout, timeout=transport.timeout, source_ip=dest.source_ip,
    )


def _info(entry: QueueEntry, meta: dict[int, dict[str, str]]) -> DeliveryInfo:
    return DeliveryInfo(
        queueid=entry.id, msgid=entry.msgid, sender=entry.sender, recipient=entry.rcpt,
        transport=entry.transport, listener=entry.listener, sasl=entry.sasl, retries=entry.retries,
        metadata=meta.get(entry.id, {}),
    )


def _policy_outcome(entry: QueueEntry, verdict: Verdict, cfg: Config, now: float) -> Outcome | None:
    """A pre-delivery verdict that settles the entry without an attempt, or None to deliver."""
    decided = _settled(entry, verdict, cfg, now)
    if decided is None or not verdict.script:
        return decided
    return dataclasses.replace(decided, script=verdict.script, rates=verdict.rates)


def _settled(entry: QueueEntry, verdict: Verdict, cfg: Config, now: float) -> Outcome | None:
    if verdict.decision is Decision.REJECT:
        reply = Reply(verdict.code or 550, verdict.text or "5.7.1 rejected by delivery policy")
        return decide(entry, reply, queue=cfg.queue, now=now)
    if verdict.decision is Decision.DEFER:
        reply = Reply(verdict.code or 451, verdict.text or "4.7.1 deferred by delivery policy")
        return decide(entry, reply, queue=cfg.queue, now=now)
    if verdict.decision is Decision.QUARANTINE:
        name = verdict.quarantine or "quarantine"
        reply = Reply(0, verdict.text or f"quarantined in {name} by delivery policy")
        return Outcome(entry=entry, fate=Fate.QUARANTINE, reply=reply, reason=str(reply), quarantine=name)
    if verdict.decision is Decision.DELETE:
        reply = Reply(0, verdict.text or "deleted by delivery policy")
        return Outcome(entry=entry, fate=Fate.DELETE, reply=reply, reason=str(reply))
    return None


def _count(metrics: Instruments, outcomes: list[Outcome], now: float) -> None:
    """Attempts by reply class, delivery time, and time in queue of final actions."""
    for out in outcomes:
        e = out.entry
        if out.peer or out.reply.code:  # a policy verdict settles an entry without an attempt
            metrics.delivery_attempts.labels(e.transport, reply_class(out.reply.code or None)).inc()
        if out.fate is Fate.DELIVER:
            metrics.delivery_seconds.labels(e.transport).observe(out.transfertime)
        if out.fate is not Fate.DEFER:
            metrics.time_in_queue.labels(out.fate.value).observe(max(now - e.ts0, 0.0))


def _log_outcome(out: Outcome) -> None:
    e = out.entry
    via = f"via {e.transport} {out.peer}".rstrip()
    if out.fate is Fate.DELIVER:
        log.info("delivered %s:%d to <%s> %s in %.3fs: %s", e.msgid, e.id, e.rcpt, via, out.transfertime, out.reply)
    elif out.fate is Fate.DEFER:
        log.info("deferred %s:%d to <%s> %s, retry at %.0f: %s", e.msgid, e.id, e.rcpt, via, out.next_retry, out.reply)
    elif out.fate is Fate.BOUNCE:
        log.info("failed %s:%d to <%s> %s, bouncing (%s): %s", e.msgid, e.id, e.rcpt, via, out.status, out.reason)
    elif out.fate is Fate.QUARANTINE:
        log.info("quarantined %s:%d to <%s> in %s: %s", e.msgid, e.id, e.rcpt, out.quarantine, out.reason)
    else:
        log.info("%s %s:%d to <%s>: %s", out.fate.value.lower(), e.msgid, e.id, e.rcpt, out.reason)
