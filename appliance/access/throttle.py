"""Login throttling per (address, user) with a higher per-address limit, kept in the store.

One policy serves SMTP AUTH and the SOAP API alike, and because the counters are rows every
process of a node (and every listener) sees the same ones. Failures are counted in a fixed
window per key; reaching the limit blocks the key for `block` seconds, during which the caller
refuses without checking the password. Keys:

- `u:<address> <user>`: guesses at one account from one client. Blocking it leaves other
  users behind the same address (a NAT, a cluster tool) free to log in.
- `a:<address>`: every failure from one client, whichever user it names, with a higher limit,
  so that cycling through user names is bounded too.

A success clears only its own (address, user) key: one account's good login must not wipe the
count of guesses made against another, nor the address's.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.access import audit
from appliance.db.models_access import LoginThrottle

_MAX_KEY = 300


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThrottlePolicy:
    per_user: int = 5  # failures of one (address, user) within `window`
    per_address: int = 30  # failures from one address within `window`, any user
    window: float = 60.0
    block: float = 60.0


@dataclasses.dataclass(frozen=True)
class Count:
    """The pure state of one key."""

    failures: int
    window_start: float
    blocked_until: float


def user_key(address: str, user: str) -> str:
    return f"u:{address} {user}"[:_MAX_KEY]


def address_key(address: str) -> str:
    return f"a:{address}"[:_MAX_KEY]


def after_failure(count: Count | None, *, now: float, limit: int, window: float,
                  block: float) -> Count:
    """The pure core: one more failure counted, the key blocked when it reaches `limit`."""
    if count is None or now - count.window_start > window:
        count = Count(0, now, count.blocked_until if count else 0.0)
    failures = count.failures + 1
    if failures >= limit:
        return Count(0, now, now + block)
    return Count(failures, count.window_start, count.blocked_until)


def blocked_for(session: Session, *, address: str, user: str, now: float) -> float:
    """Seconds until (address, user) may try again; 0 when neither key is blocked."""
    stmt = select(LoginThrottle.blocked_until).where(
        LoginThrottle.key.in_([user_key(address, user), address_key(address)]))
    until = max(session.scalars(stmt), default=0.0)
    return max(until - now, 0.0)


def record_failure(session: Session, *, address: str, user: str, protocol: str,
                   policy: ThrottlePolicy, now: float) -> float:
    """Count a failed login against both keys and audit it; returns the block it caused (s)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.expires < now))
    blocked = 0.0
    for key, limit in ((user_key(address, user), policy.per_user),
                       (address_key(address), policy.per_address)):
        blocked = max(blocked, _count(session, key, limit, policy, now))
    outcome = "failed: bad credentials"
    if blocked:
        outcome += f"; further attempts refused for {blocked:.0f} s"
    audit.record(session, user=user, remote=address, operation="login",
                 arguments={"protocol": protocol}, affected=0, outcome=outcome, now=now)
    return blocked


def has_failures(session: Session, *, address: str, user: str) -> bool:
    """Whether (address, user) has failures counted (a success then has something to clear)."""
    return session.get(LoginThrottle, user_key(address, user)) is not None


def record_success(session: Session, *, address: str, user: str) -> None:
    """Forget the guesses at this account from this address (and nothing else)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == user_key(address, user)))
    session.flush()


def _count(session: Session, key: str, limit: int, policy: ThrottlePolicy, now: float) -> float:
    for _ in range(2):  # a second try after another process inserted the same key first
        row = session.get(LoginThrottle, key, with_for_update=True)
        before = None if row is None else Count(row.failures, row.window_start, row.blocked_until)
        after = after_failure(before, now=now, limit=limit, window=policy.window,
                              block=policy.block)
        expires = max(after.window_start + policy.window, after.blocked_until)
        try:
            with session.begin_nested():
                if row is None:
                    session.add(LoginThrottle(key=key, failures=after.failures,
                                              window_start=after.window_start,
                                              blocked_until=after.blocked_until, expires=expires))
                else:
                    row.failures, row.window_start = after.failures, after.window_start
                    row.blocked_until, row.expires = after.blocked_until, expires
        except IntegrityError:
            continue
        return after.blocked_until - now if after.blocked_until > now and (
            before is None or after.blocked_until != before.blocked_until) else 0.0
    return 0.0
