"""SmtpServer.reconfigure: listeners added, removed and rebound while sessions keep going."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from appliance.config.schema import Listener
from appliance.db.engine import Store
from tests.integration.smtp.conftest import SmtpHarness
from tests.support.postgres import free_port

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # backend-independent

MESSAGE = b"Subject: x\r\n\r\n" + (b"x" * 60 + b"\r\n") * 40  # 2.5 KB


def reconfigure(harness: SmtpHarness, old: list[Listener], new: list[Listener], **kw: Any) -> None:
    change = harness.server.reconfigure(old, new, **kw)
    asyncio.run_coroutine_threadsafe(change, harness.loop).result(30)


def accepts(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:  # QUIT: the server closes too
            return client.noop()[0] == 250
    except OSError:
        return False


def send(port: int, body: bytes = MESSAGE) -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail("s@example.com", ["r@example.org"], body)


def test_add_rebind_and_remove(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    port, extra_port = free_port(), free_port()
    harness = smtp_server(port=port)
    first = Listener(id="inbound", port=port)
    harness.server.listeners = [first]
    extra = Listener(id="extra", port=extra_port)
    reconfigure(harness, [first], [first, extra])
    assert harness.server.port_of("extra") == extra_port
    send(extra_port)
    # a changed setting rebinds that listener; a session open on it finishes on the old one
    small = first.model_copy(update={"max_message_size": 1024})
    open_session = smtplib.SMTP("127.0.0.1", port, timeout=10)
    open_session.ehlo("old.test")
    reconfigure(harness, [first, extra], [small, extra])
    assert open_session.sendmail("s@example.com", ["r@example.org"], MESSAGE) == {}
    open_session.quit()
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE from the new settings
        send(port)
    assert refused.value.smtp_code == 552
    reconfigure(harness, [small, extra], [small])
    assert not accepts(extra_port) and accepts(port)
    assert [lst.id for lst in harness.server.listeners] == ["inbound"]


def test_a_listener_that_cannot_bind_restores_the_old_ones(
        smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    port = free_port()
    harness = smtp_server(port=port)
    first = Listener(id="inbound", port=port)
    harness.server.listeners = [first]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = Listener(id="busy", port=taken.getsockname()[1])
        moved = first.model_copy(update={"max_recipients": 2})
        with pytest.raises(OSError):
            reconfigure(harness, [first], [moved, busy])
    assert harness.server.listeners == [first] and "busy" not in harness.server.servers
    send(port)  # the old listener is bound again


def test_hostname_change_rebinds_every_listener(smtp_server: Callable[..., SmtpHarness],
                                                store: Store) -> None:
    port = free_port()
    harness = smtp_server(port=port)
    first = Listener(id="inbound", port=port)
    harness.server.listeners = [first]
    reconfigure(harness, [first], [first], hostname="mx2.test")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, banner = client.ehlo("c.test")
    assert code == 250 and banner.startswith(b"mx2.test")
