"""A SOAP server on loopback (the real gateway, Spyne app and cheroot) over a fresh SQLite store,
with three users, and the three real clients the contract names: zeep, suds and PHP."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from suds.cache import NoCache
from suds.client import Client as SudsClient

from appliance.access.users import add_user
from appliance.db.engine import Store
from appliance.db.schema import upgrade
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.soap.calls import NodeContext
from appliance.soap.server import Listen, SoapServer
from appliance.types import Envelope, NewMessage, QueueState

PHP_CLIENT = Path(__file__).with_name("php_client.php")
PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw", "tenant": "tenant-pw"}
TENANT_RESTRICTION = "to~%@tenant.example"
TENANT_OPERATIONS = [
    "mailQueue", "mailHistory", "mailQueueCount", "mailQueueGroupBy", "mailQueueRetry",
    "mailQueueBounce", "mailQueueDelete", "mailQueueHold", "mailQueueRetryBulk",
    "mailQueueBounceBulk", "mailQueueDeleteBulk", "mailQueueHoldBulk", "mailQueueMetaDataSet",
    "fileRead", "getSerial",
]


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("soap-template") / "store.db"
    store = Store(f"sqlite:///{path}")
    upgrade(store.engine)
    with store.transaction() as session:
        add_user(session, "admin", PASSWORDS["admin"], role="admin")
        add_user(session, "viewer", PASSWORDS["viewer"], role="readonly")
        add_user(session, "tenant", PASSWORDS["tenant"], role="custom",
                 operations=TENANT_OPERATIONS, restriction=TENANT_RESTRICTION)
    store.dispose()
    return path


@dataclass
class Api:
    server: SoapServer
    store: Store
    spool: Spool
    kicks: list[float]

    @property
    def url(self) -> str:
        return self.server.url

    def queue(self, *, sender: str = "alice@sender.example", rcpts: tuple[str, ...] = (
              "bob@outside.example",), subject: str = "hello", body: bytes = b"",
              state: QueueState = QueueState.HOLD, metadata: dict[str, str] | None = None,
              received: float | None = None) -> list[int]:
        """Queue a message (HOLD by default: nothing here delivers); returns its queue ids."""
        msgid = str(uuid.uuid4())
        data = body or f"Subject: {subject}\r\nFrom: <{sender}>\r\n\r\nbody of {msgid}\r\n".encode()
        path = self.spool.write(msgid, data)
        msg = NewMessage(msgid=msgid, envelope=Envelope(sender=sender, recipients=rcpts,
                         listener="inbound", client_ip="192.0.2.7", helo="client.example"),
                         path=path, size=len(data), subject=subject, received=received or time.time(),
                         transport="default", state=state, metadata=metadata or {})
        with self.store.transaction() as session:
            return queue_store.enqueue(session, msg, now=time.time())

    def zeep(self, user: str = "admin", password: str | None = None) -> zeep.Client:
        session = requests.Session()
        session.auth = (user, PASSWORDS.get(user, "") if password is None else password)
        return zeep.Client(self.url + "?wsdl", transport=zeep.Transport(session=session))

    def suds(self, user: str = "admin") -> SudsClient:
        return SudsClient(self.url + "?wsdl", username=user, password=PASSWORDS[user],
                          cache=NoCache(), timeout=30)

    def php(self, calls: list[tuple[str, dict[str, Any]]], *, user: str = "admin",
            gzip: bool = False) -> list[dict[str, Any]]:
        done = subprocess.run(
            ["php", str(PHP_CLIENT), self.url + "?wsdl", user, PASSWORDS[user],
             "1" if gzip else "0"],
            input=json.dumps(calls), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result


@pytest.fixture
def api(tmp_path: Path, template_db: Path) -> Iterator[Api]:
    with running_api(tmp_path, template_db) as running:
        yield running


@contextlib.contextmanager
def running_api(tmp_path: Path, template_db: Path, **context: Any) -> Iterator[Api]:
    """A SOAP server on a copy of the template store; `context`: NodeContext fields to set."""
    db = tmp_path / "store.db"
    shutil.copy(template_db, db)
    store = Store(f"sqlite:///{db}")
    spool = Spool(tmp_path / "spool")
    kicks: list[float] = []
    node = NodeContext(store=store, spool=spool, serial="SERIAL-E2E", hostname="node.test",
                       kick_delivery=lambda: kicks.append(time.time()), **context)
    server = SoapServer(node, Listen.parse("http://127.0.0.1:0"), max_request_bytes=1 << 20)
    server.start()
    try:
        yield Api(server=server, store=store, spool=spool, kicks=kicks)
    finally:
        server.stop()
        store.dispose()
