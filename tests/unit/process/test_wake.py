"""Delivery's wake-up socket: datagrams from any process become kicks; no listener is no error."""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.process.wake import WakeListener, WakeSender


def test_a_sender_wakes_the_listener_and_never_fails_without_one(tmp_path: Path) -> None:
    path = tmp_path / "run" / "wake.sock"
    sender = WakeSender(path)
    sender.wake()  # nobody listens yet: silently dropped (delivery polls at start)
    woken = threading.Event()
    listener = WakeListener(path, woken.set)
    listener.start()
    try:
        sender.wake()
        assert woken.wait(10)
        woken.clear()
        for _ in range(100):  # a burst: at least one kick, the datagrams drained
            sender.wake()
        assert woken.wait(10)
    finally:
        listener.stop()
        sender.close()
    assert not path.exists()
