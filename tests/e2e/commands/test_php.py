"""Commands over SOAP with PHP's SoapClient (SOAP_SINGLE_ELEMENT_ARRAYS, gzip): every command to
its end-fault, input, stopping a follower, bad argv, unknown commands, another user's id."""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from appliance.commands.runner import Limits
from appliance.nodelog import NodeLog
from tests.e2e.commands.conftest import CommandApi, argv_bytes, lf, running_api
from tests.unit.commands.test_network_commands import ZONE, FakeResolver, counting_sampler

pytestmark = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")


@pytest.fixture
def capi(tmp_path: Path, template_db: Path) -> Iterator[CommandApi]:
    with running_api(tmp_path, template_db, resolver=FakeResolver(ZONE),
                           sampler=counting_sampler, limits=Limits(max_output=50_000)) as api:
        yield api


def test_php_runs_every_command_and_reads_chunks(capi: CommandApi) -> None:
    msgid = str(uuid.uuid4())
    logger = logging.getLogger("appliance.e2e.php")
    logger.propagate = False
    node_log = NodeLog(capi.log_dir, logger=logger)
    node_log.start()
    try:
        logger.info("received %s", msgid)
        logger.info("delivered %s:1 to b@example.org", msgid)
        for i in range(1000):
            logger.info("filler %d msgid-long %s", i, "y" * 80)
    finally:
        node_log.stop()
    message = EmailMessage()
    message["Subject"] = "Smörgåsbord"
    message.set_content("bröd\n")
    path = capi.spool.write(msgid, message.as_bytes())
    out = capi.php_commands([
        {"list": True},
        {"argv": ["searchlog", "--", msgid]},
        {"argv": ["previewmessage", path, "M"]},
        {"argv": ["queuestat"]},
        {"argv": ["dnslookup", "example.org", "MX"]},
        {"argv": ["smtpping", "127.0.0.1:1"]},
        {"argv": ["statd", "-g", "queue"], "push": "q"},
        {"argv": ["searchlog", "-f", "--", msgid], "stop_when": "delivered"},
        {"argv": ["searchlog", "--", "msgid-long"]},
        {"argv": ["rm", "-rf", "/"]},
        {"argv": ["searchlog", "-n", "many", "--", "x"]},
    ])
    text = [lf(base64.b64decode(o["output"])).decode() if "output" in o else None for o in out]
    assert out[0]["list"] == ["searchlog", "previewmessage", "statd", "queuestat", "dnslookup", "smtpping"]
    assert text[1].splitlines()[0].endswith(f"received {msgid}") and len(text[1].splitlines()) == 2
    assert "exit 0" in out[1]["fault"][1] and out[1]["fault"][0].endswith("Client.NotFound")
    assert out[1]["chunk_types"] == ["string"]
    assert "Subject: Smörgåsbord\n" in text[2] and "M|TEXT\nbröd\nM|HTML\nM|ATTACHMENTS\n" in text[2]
    assert text[3].splitlines()[-1].split() == ["total", "0", "0", "0", "0"]
    assert text[4].startswith("example.org.\t300\tIN\tMX\t10 mx1.example.org.")
    assert "Connection refused" in text[5]
    assert "queue:n=1\n" in text[6] and "exit 0" in out[6]["fault"][1]  # ended by the pushed q
    assert "delivered" in text[7] and "stopped" in out[7]["fault"][1]
    assert text[8].endswith("\n[output cut at 50000 bytes; command ended]\n")
    assert out[9]["run_fault"] == ["soap11env:Client.NotFound", "unknown command 'rm'"]
    assert out[10]["run_fault"][0] == "soap11env:Client.InvalidInput" and "searchlog:" in out[10]["run_fault"][1]


def test_php_other_users_command_id_is_not_found(capi: CommandApi) -> None:
    cid = capi.zeep().service.commandRun(argv_bytes("searchlog", "-f", "--", "x"), 80, 24)
    [got] = capi.php_commands([{"poll": cid}], user="operator")
    assert got["fault"] == ["soap11env:Client.NotFound", f"no command '{cid}'"]
    capi.zeep().service.commandStop(cid)
