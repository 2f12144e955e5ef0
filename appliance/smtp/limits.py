"""SMTP session caps per client address and in total, and the pre-command timeout.

Postfix's model: smtpd_client_connection_count_limit (50 per client) and a process limit, the
excess answered 421 at once (RFC 5321 section 3.8) instead of held open; a client that says
nothing after the greeting is dropped long before the 5-minute command timeout (section
4.5.3.2 allows the server its own timeouts). Counts are per process: when `processes`
receivers share one listener, each enforces its share of the configured limits, so the
node as a whole stays within them. The total is also kept below the process's descriptor
limit, so that a flood can never make the listeners (or the store and spool) fail with EMFILE.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from appliance.connlimits import ConditionLog, ConnectionCounter, share
from appliance.smtp import replies

log = logging.getLogger(__name__)

# Descriptors kept for everything but SMTP sessions: the API's connections, the store, the
# spool, log files, outbound delivery.
FD_RESERVE = 512


class SessionLimits:
    """One listener's caps; the Protocol calls `opened`, `heard` and `closed`."""

    def __init__(self, *, name: str, max_connections: int, per_address: int,
                 pre_command_timeout: float, processes: int = 1,
                 conditions: ConditionLog | None = None) -> None:
        total = min(share(max_connections, processes), descriptor_budget())
        self.counter = ConnectionCounter(
            total=total, per_address=share(per_address, processes), name=f"SMTP {name}",
            log=conditions or ConditionLog(log))
        self.pre_command_timeout = pre_command_timeout
        self._timeouts = conditions or ConditionLog(log)
        self._name = name
        # Sessions that have not sent a command yet, oldest first: when the total is reached,
        # the oldest of them makes room (Postfix's stress mode shortens the same wait).
        self._silent: dict[int, tuple[Any, asyncio.BaseTransport]] = {}

    def opened(self, proto: Any, transport: asyncio.BaseTransport) -> str:
        """Count a new connection; the reply to refuse it with ("" when admitted)."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else ""
        if self.counter.count >= self.counter.total and self._silent:
            self._evict()
        if self.counter.admit(address):
            return replies.TOO_MANY_CONNECTIONS
        proto.limits_address = address
        loop = asyncio.get_running_loop()
        proto.limits_timer = loop.call_later(self.pre_command_timeout, self._expired, proto,
                                             transport, address)
        self._silent[id(proto)] = (proto, transport)
        return ""

    def heard(self, proto: Any) -> None:
        """The first command line arrived: the session's own timeouts take over."""
        timer = getattr(proto, "limits_timer", None)
        if timer is not None:
            timer.cancel()
            proto.limits_timer = None
        self._silent.pop(id(proto), None)

    def closed(self, proto: Any) -> None:
        self.heard(proto)
        address = getattr(proto, "limits_address", None)
        if address is not None:
            proto.limits_address = None
            self.counter.release(address)

    def _evict(self) -> None:
        _, (proto, transport) = next(iter(self._silent.items()))
        self._timeouts.note(f"SMTP {self._name}: {self.counter.total} connections open, "
                            f"closing the longest silent ones to make room")
        self.closed(proto)  # released now, so the new connection can take its place
        _say_and_close(transport)

    def _expired(self, proto: Any, transport: asyncio.BaseTransport, address: str) -> None:
        proto.limits_timer = None
        self._silent.pop(id(proto), None)
        self._timeouts.note(f"SMTP {self._name}: no command within "
                            f"{self.pre_command_timeout:g} s of the greeting, closing such "
                            f"sessions", address)
        _say_and_close(transport)


def _say_and_close(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing():
        write = getattr(transport, "write", None)
        if write is not None:
            write(f"{replies.PRE_COMMAND_TIMEOUT}\r\n".encode())
        transport.close()


def descriptor_budget() -> int:
    """How many sessions the process's descriptor limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - FD_RESERVE, 16)


def raise_descriptor_limit(wanted: int = 65536) -> None:
    """Lift the soft descriptor limit towards the hard one (no privilege needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d: %s", soft, exc)
