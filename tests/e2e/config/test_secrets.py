"""A live node: config secrets never leave over SOAP, and a redacted text written back keeps them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from zeep.exceptions import Fault

from tests.e2e.config.support import soap
from tests.support.node import RunningNode

SECRET = "S3cret-pw"
# Port 1 on loopback: nothing listens, and the node only joins a cluster named here at start.
DSN = f"postgresql://app:{SECRET}@127.0.0.1:1/appl?sslmode=disable"
SHOWN = "postgresql://app:********@127.0.0.1:1/appl?sslmode=disable"


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    with RunningNode(tmp_path) as running:
        yield running


def _stored(node: RunningNode) -> str:
    shown = node.cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_text_round_trip_keeps_the_secret(node: RunningNode) -> None:
    api = soap(node)
    base = api.configTextGet()
    first = api.configTextSet(
        text=base + f'\n[cluster]\ndsn = "{DSN}"  # the shared store\n', comment="with a secret")
    text = api.configTextGet()
    assert SECRET not in text and f'dsn = "{SHOWN}"  # the shared store' in text
    assert SECRET not in api.configTextGet(revision=first)
    # An edit of the redacted text elsewhere keeps the stored password.
    assert "workers = 4" in text
    second = api.configTextSet(text=text.replace("workers = 4", "workers = 7"),
                               comment="more workers")
    stored = _stored(node)
    assert f'dsn = "{DSN}"' in stored and "workers = 7" in stored
    diff = api.configRevisionDiff(**{"from": first, "to": second})
    assert "+workers = 7" in diff and SECRET not in diff
    assert SECRET not in api.configRevisionDiff(**{"from": 1, "to": first})
    # A new password replaces it.
    rotated = api.configTextSet(text=api.configTextGet().replace("********", "N3w-pw"),
                                comment="rotate")
    assert "app:N3w-pw@" in _stored(node)
    diff = api.configRevisionDiff(**{"from": second, "to": rotated})
    assert "+dsn = \"postgresql://app:********(changed)@" in diff and "N3w-pw" not in diff


def test_keys_are_redacted_and_a_placeholder_keeps_the_secret(node: RunningNode) -> None:
    api = soap(node)
    api.configKeySet(key="cluster.dsn", value=DSN, comment="join later")
    assert api.configKeyGet(key="cluster.dsn") == SHOWN
    keys = {item.key: item.value for item in api.configKeys()}
    assert keys["cluster.dsn"] == SHOWN and SECRET not in repr(keys)
    api.configKeySet(key="cluster.dsn", value=SHOWN.replace("127.0.0.1:1", "127.0.0.2:1"),
                     comment="other host")
    assert f'"{DSN.replace("127.0.0.1:1", "127.0.0.2:1")}"' in _stored(node)
    with sqlite3.connect(node.data_dir / "appliance.db") as db:
        rows = db.execute("SELECT operation, arguments FROM audit "
                          "WHERE operation LIKE 'config%'").fetchall()
    assert len(rows) == 2 and all(SECRET not in arguments for _, arguments in rows)


def test_a_placeholder_with_no_stored_secret_is_a_fault(node: RunningNode) -> None:
    api = soap(node)
    before = _stored(node)
    with pytest.raises(Fault, match="stands for the stored secret"):
        api.configTextSet(text=api.configTextGet() + f'\n[cluster]\ndsn = "{SHOWN}"\n',
                          comment="placeholder only")
    with pytest.raises(Fault, match="stands for the stored secret"):
        api.configKeySet(key="cluster.dsn", value=SHOWN, comment="placeholder only")
    assert _stored(node) == before
    with sqlite3.connect(node.data_dir / "appliance.db") as db:
        outcomes = [o for (o,) in db.execute("SELECT outcome FROM audit ORDER BY id")]
    assert len(outcomes) == 2 and all("stands for the stored secret" in o for o in outcomes)
