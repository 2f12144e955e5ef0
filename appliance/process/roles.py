"""The parts only a node of several processes has: wake-ups to delivery, the rate() owner."""

from __future__ import annotations

from typing import Any

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


def rate_server(node: Any) -> RateServer:
    """Housekeeping owns the node's rate() windows and serves them to the other processes."""
    return RateServer(node.stats.rates, rates_path(node.settings.data_dir))
