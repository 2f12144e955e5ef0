"""Delivering one destination's transactions over pooled, reused connections."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence

from appliance.delivery.grouping import Transaction
from appliance.delivery.outbound import Connector, OutboundSession, Outgoing, SessionError, SessionOptions
from appliance.replies import Reply
from appliance.delivery.routing import Hop


# Messages sent on one connection before waiting for their outcomes: with PIPELINING each costs
# one write and one wait, and their bodies are read from the spool together.
PIPELINE_DEPTH = 10


@dataclasses.dataclass(frozen=True)
class Result:
    """What happened to one entry in one attempt."""

    reply: Reply
    peer: str = ""
    transfertime: float = 0.0
    missing_body: bool = False
    started: float = dataclasses.field(default=0.0, compare=False)  # wall clock at the attempt's start


@dataclasses.dataclass
class _Conn:
    session: OutboundSession
    used: int = 0
    idle_since: float = 0.0


class DestinationPool:
    """Idle connections of one destination and the limit on how many are in use at once."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[_Conn] = []
        self.retired = False  # replaced after a config change: connections close when done


class ConnectionPool:
    """Connections kept open between batches, per destination, up to an idle time."""

    def __init__(self, connector: Connector, *, idle_timeout: float) -> None:
        self.connector = connector
        self.idle_timeout = idle_timeout
        self.opened = 0
        self._pools: dict[object, DestinationPool] = {}

    def for_destination(self, key: object, limit: int) -> DestinationPool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = DestinationPool(limit)
        return pool

    async def open(self, hops: Sequence[Hop], options: SessionOptions) -> OutboundSession:
        """The first hop that accepts a session, in order (RFC 5321 section 5.1)."""
        last = Reply(0, "no hosts to try")
        for hop in hops:
            try:
                session = await self.connector.open(hop, options)
            except SessionError as exc:
                # A refused greeting is the host's state, not the recipient's: retry later.
                last = Reply(0, f"{hop.name}[{hop.address}]:{hop.port}: {exc.reply}")
                continue
            self.opened += 1
            return session
        raise SessionError(last)

    async def retire(self, keys: Callable[[object], bool]) -> int:
        """Forget the pools whose key matches (their transport's settings changed): the next
        use makes a fresh pool with the new limit and options. Idle connections close now;
        connections in use finish their transaction and close instead of going back."""
        gone = [k for k in self._pools if keys(k)]
        for key in gone:
            pool = self._pools.pop(key, None)
            if pool is None:
                continue
            pool.retired = True
            idle, pool.idle = pool.idle, []
            for conn in idle:
                await conn.session.close()
        return len(gone)

    async def close_idle(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for pool in list(self._pools.values()):  # retire() may replace pools while we await
            stale = [c for c in pool.idle if now - c.idle_since >= self.idle_timeout]
            pool.idle = [c for c in pool.idle if c not in stale]
            for conn in stale:
                await conn.session.close()

    async def close_all(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            for conn in pool.idle:
                await conn.session.close()


@dataclasses.dataclass
class Lanes:
    """Transactions of one destination, worked off by up to `max_connections` lanes."""

    pool: ConnectionPool
    dest: DestinationPool
    hops: Sequence[Hop]
    options: SessionOptions
    max_messages: int
    read_bodies: Callable[[Sequence[str]], Awaitable[list[bytes | None]]]  # None: missing
    results: dict[int, Result] = dataclasses.field(default_factory=dict)
    _working: int = 0

    async def run(self, txs: Sequence[Transaction], lanes: int) -> dict[int, Result]:
        queue = collections.deque(txs)
        await asyncio.gather(*(self._lane(queue) for _ in range(max(1, min(lanes, len(txs))))))
        return self.results

    async def _lane(self, queue: collections.deque[Transaction]) -> None:
        while queue:
            async with self.dest.slots:
                if not queue:
                    return
                conn = self.dest.idle.pop() if self.dest.idle else None
                if conn is not None and not conn.session.usable:  # closed by the peer while idle
                    await conn.session.close()
                    conn = None
                if conn is None:
                    try:
                        conn = _Conn(await self.pool.open(self.hops, self.options))
                    except SessionError as exc:
                        if self._working == 0:  # nobody else can get through: fail the rest now
                            while queue:
                                self._fail(queue.popleft(), exc.reply)
                        return
                self._working += 1
                try:
                    await self._use(conn, queue)
                finally:
                    self._working -= 1
                    await self._put_back(conn)

    async def _use(self, conn: _Conn, queue: collections.deque[Transaction]) -> None:
        while queue and conn.used < self.max_messages and conn.session.usable:
            room = min(self.max_messages - conn.used, PIPELINE_DEPTH)
            txs = [queue.popleft() for _ in range(min(room, len(queue)))]
            bodies = await self.read_bodies([tx.path for tx in txs])
            ready: list[tuple[Transaction, Outgoing]] = []
            for tx, body in zip(txs, bodies):
                if body is None:
                    for e in tx.entries:
                        self.results[e.id] = Result(Reply(0, f"spool file {tx.path} is missing"), missing_body=True)
                else:
                    ready.append((tx, Outgoing(tx.sender, tuple(e.rcpt for e in tx.entries), body)))
            if not ready:
                continue
            started = time.monotonic()
            began = time.time()
            try:
                done = await conn.session.send_many([out for _, out in ready])
                error: SessionError | None = None
            except SessionError as exc:
                done, error = exc.done, exc
            conn.used += len(done)
            # Pipelined messages overlap: each is charged its share of the batch's time.
            share = (time.monotonic() - started) / max(1, len(done))
            for (tx, _), replies in zip(ready, done):
                for e in tx.entries:
                    self.results[e.id] = Result(replies[e.rcpt], conn.session.peer, share, started=began)
            if error is not None:
                for tx, _ in ready[len(done):]:
                    self._fail(tx, error.reply, conn.session.peer)
                return

    async def _put_back(self, conn: _Conn) -> None:
        if conn.session.usable and conn.used < self.max_messages and not self.dest.retired:
            conn.idle_since = time.monotonic()
            self.dest.idle.append(conn)
        else:
            await conn.session.close()

    def _fail(self, tx: Transaction, reply: Reply, peer: str = "") -> None:
        for e in tx.entries:
            self.results[e.id] = Result(reply, peer)
