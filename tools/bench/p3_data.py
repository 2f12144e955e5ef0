"""P3/P4 helper: fill a store with N synthetic queue entries fast (executemany / COPY)."""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
import uuid
from collections.abc import Iterator

from sqlalchemy import text

from appliance.db.engine import Store

WORDS = [f"w{i:04d}" for i in range(2000)]
SENDER_DOMAINS = [f"sender{i}.example" for i in range(1000)]
RCPT_DOMAINS = [f"rcpt{i}.test" for i in range(2000)]
STATES = ["ACTIVE"] * 2 + ["DEFER"] * 7 + ["HOLD"]
TRANSPORTS = ["mx", "relay", "smarthost", "local"]
LISTENERS = ["inbound", "outbound", "submission"]
_COLUMNS = [
    "msgid", "ts0", "ts", "sender", "sender_domain", "rcpt", "rcpt_domain", "subject", "size",
    "listener", "transport", "fromserver", "helo", "sasl", "action", "quarantine", "description",
    "error", "retries", "path", "actionid", "jobid", "score", "is_dsn", "state", "next_retry",
    "lease_until", "lease_owner",
]


@dataclasses.dataclass(frozen=True)
class Probes:
    """Values the benchmark searches for, taken from the generated data."""

    msgid: str
    sender: str
    rcpt_domain: str
    word: str
    since: float


def _rows(n: int, *, now: float, seed: int, bulk_domain: str | None) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    made = 0
    while made < n:
        msgid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ts0 = now - rng.random() * 7 * 86400  # one week of queue
        sdom = SENDER_DOMAINS[min(int(rng.expovariate(1 / 80)), 999)]
        sender = f"User{rng.randrange(50)}@{sdom.upper() if rng.random() < 0.1 else sdom}"
        subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        path = f"{msgid[:2]}/{msgid}"
        state = rng.choice(STATES)
        for _ in range(min(rng.randint(1, 3), n - made)):
            rdom = bulk_domain or RCPT_DOMAINS[min(int(rng.expovariate(1 / 150)), 1999)]
            rcpt = f"r{rng.randrange(100000)}@{rdom}"
            err = "451 4.7.1 greylisted, try later" if state == "DEFER" else ""
            yield (
                msgid, ts0, ts0, sender, sdom, rcpt, rdom, subject, rng.randint(500, 200000),
                rng.choice(LISTENERS), rng.choice(TRANSPORTS), f"192.0.2.{rng.randrange(256)}",
                "mail.example", "", "", "", "", err, rng.randrange(5) if state == "DEFER" else 0,
                path, 0, "", 0.0, 0, state, ts0 + 600, 0.0, "",
            )
            made += 1


def fill(store: Store, n: int, *, now: float, seed: int = 7, batch: int = 20000,
         bulk_domain: str | None = None) -> float:
    """Insert `n` entries; returns the seconds it took (then ANALYZE, so plans are realistic)."""
    started = time.perf_counter()
    rows = _rows(n, now=now, seed=seed, bulk_domain=bulk_domain)
    if store.is_sqlite:
        _fill_sqlite(store, rows, batch)
    else:
        _fill_postgres(store, rows)
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _fill_sqlite(store: Store, rows: Iterator[tuple[object, ...]], batch: int) -> None:
    sql = f"INSERT INTO queue ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        while True:
            chunk = list(itertools.islice(rows, batch))
            if not chunk:
                break
            cur.executemany(sql, chunk)
        cur.execute("COMMIT")
    finally:
        raw.close()


def _fill_postgres(store: Store, rows: Iterator[tuple[object, ...]]) -> None:
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY queue ({', '.join(_COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def probes(store: Store, *, now: float) -> Probes:
    """Search values with typical selectivity, read back from the filled store."""
    with store.engine.connect() as conn:
        msgid = conn.execute(text("SELECT msgid FROM queue WHERE id = (SELECT max(id) / 2 FROM queue)")).scalar_one()
        sender = conn.execute(text("SELECT sender FROM queue WHERE id = (SELECT max(id) / 3 FROM queue)")).scalar_one()
    return Probes(msgid=msgid, sender=sender.swapcase(), rcpt_domain="rcpt40.test",
                  word=WORDS[1234], since=now - 3600)
