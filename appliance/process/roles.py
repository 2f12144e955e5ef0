"""The parts only a node of several processes has: wake-ups to delivery, the rate() owner."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from appliance.config.schema import Config

from appliance.process.wake import WakeListener, WakeSender, wake_path
from appliance.stats.remote import RateServer, rates_path


class _Sender:
    def __init__(self, sender: WakeSender) -> None:
        self.sender = sender

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.sender.close()


def wake_sender(node: Any) -> _Sender:
    """Every commit this process makes (SMTP intake, mail() from scripts, retries over the
    API) wakes the delivery process."""
    sender = WakeSender(wake_path(node.settings.data_dir))
    node.on_enqueued(sender.wake)
    return _Sender(sender)


def wake_listener(node: Any) -> WakeListener:
    """Delivery: each wake-up datagram runs the queue now instead of at the next poll."""
    return WakeListener(wake_path(node.settings.data_dir), node.notify_enqueued)


class ListenerCheck:
    """Housekeeping speaks for the node: a revision whose new SMTP listeners cannot be bound
    here (another process holds the port) is refused, with the reason in the node's
    heartbeat, instead of being reported as running while the supervisor cannot bind it."""

    def __init__(self, data_dir: Path) -> None:
        self.ports_file = Path(data_dir) / "run" / "ports.json"

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def apply(self, old: Config, new: Config) -> None:
        before = {(lst.id, lst.address, lst.port) for lst in old.listeners}
        held = self._held()
        for listener in new.listeners:
            if (listener.id, listener.address, listener.port) in before or listener.port == 0:
                continue
            if held.get(listener.id) == listener.port:
                continue  # the supervisor bound it already
            try:
                _try_bind(listener.id, listener.address, listener.port)
            except ValueError:
                # The supervisor follows the same revision and may have bound the port a moment
                # before it publishes that in ports.json: only a port it does not list is a clash.
                if not self._published(listener.id, listener.port):
                    raise

    def _published(self, listener_id: str, port: int, *, within: float = 5.0) -> bool:
        deadline = time.monotonic() + within
        while self._held().get(listener_id) != port:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _held(self) -> dict[str, int]:
        try:
            ports = json.loads(self.ports_file.read_text())
            return {str(k): int(v) for k, v in ports.get("smtp", {}).items()}
        except (OSError, ValueError, AttributeError):
            return {}


def _try_bind(listener_id: str, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the supervisor binds: only a socket listening there is a clash.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ValueError(f"SMTP listener {listener_id} cannot bind {address}:{port}: "
                             f"{exc.strerror or exc}") from None


def listener_check(node: Any) -> ListenerCheck:
    check = ListenerCheck(node.settings.data_dir)
    node.subscribe(check)
    return check


def rate_server(node: Any) -> RateServer:
    """Housekeeping owns the node's rate() windows and serves them to the other processes."""
    return RateServer(node.stats.rates, rates_path(node.settings.data_dir))
