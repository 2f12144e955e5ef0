"""smtpping against a real aiosmtpd server on loopback, and against a closed port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from appliance.commands.base import CommandContext
from tests.support.postgres import free_port
from tests.unit.commands.conftest import Run, run  # noqa: F401 (fixture)


class Banner:
    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses


@pytest.fixture
def smtp_server() -> Iterator[int]:
    controller = Controller(Banner(), hostname="127.0.0.1", port=free_port(), server_hostname="sink.test",
                            ready_timeout=10)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def test_smtpping_reports_banner_ehlo_quit_and_times(run: Run, tmp_path: Path, smtp_server: int) -> None:
    out = run(CommandContext(log_dir=tmp_path, hostname="node.test"),
              ["smtpping", f"127.0.0.1:{smtp_server}"])
    lines = out.splitlines()
    assert lines[0].startswith(f"connected to 127.0.0.1 port {smtp_server} in ")
    assert lines[1].startswith("banner: ") and lines[1].endswith(" ms")
    assert lines[2].startswith("  220 sink.test ")
    ehlo = lines.index(next(l for l in lines if l.startswith("EHLO node.test: ")))
    assert lines[ehlo + 1].startswith("  250-sink.test")
    assert any(l.startswith("  250 ") for l in lines[ehlo + 1:])
    assert any(l.startswith("QUIT: ") for l in lines) and "  221 Bye" in lines
    assert lines[-1].startswith("total ")


def test_smtpping_connection_refused(run: Run, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(CommandContext(log_dir=tmp_path), ["smtpping", f"127.0.0.1:{port}"])
    assert out == f"connect to 127.0.0.1 port {port} failed: Connection refused\n"
