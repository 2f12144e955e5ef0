"""http() from a running node's scripts: `policy.http_allow` and the schemes hold on the mail path."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import RunningNode
from tests.unit.policy.test_http import _Handler, _serve, _Server, _V6Server

SCRIPT = r'''
function rcpt_to(s, rcpt)
  local path = rcpt:match("^([^@]*)@")
  local ok, status = pcall(http, URL .. "/" .. path)
  return reject(550, (ok and ("got " .. status) or status):gsub("%c", " "))
end
'''
CONFIG = '''
[policy]
http_allow = ["127.0.0.1/32"]

[scripts]
probe = """URL = "{url}"
{script}"""

[[listeners]]
id = "main"
port = 2525
script = "probe"
'''


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[_Server, _Server]]:
    for other in _serve(_V6Server(("::1", 0), _Handler)):
        web = _Server(("127.0.0.1", 0), _Handler)
        web.target = f"http://[::1]:{other.server_address[1]}/secret"
        for server in _serve(web):
            yield server, other


def _reply(port: int, rcpt: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.example")
        assert client.mail("a@sender.example")[0] == 250
        code, text = client.rcpt(rcpt)
        assert code == 550, (code, text)
        return text.decode()


def test_node_scripts_reach_only_allowed_hosts_over_http(servers: tuple[_Server, _Server],
                                                         tmp_path: Path) -> None:
    web, other = servers
    url = f"http://127.0.0.1:{web.server_address[1]}"
    with RunningNode(tmp_path, config_text=CONFIG.format(url=url, script=SCRIPT)) as node:
        assert _reply(node.smtp_port, "ok@x.example") == "got 200"
        assert "redirect to a ftp: URL is refused" in _reply(node.smtp_port, "ftp@x.example")
        assert "::1 is not an allowed destination" in _reply(node.smtp_port, "elsewhere@x.example")
    assert web.hits == ["/ok", "/ftp", "/elsewhere"]
    assert other.hits == []
