"""Drains and the trash on a live node of processes: a drain at 60/min releases 30 entries at
that rate across a restart of the whole node, expired trash is purged by housekeeping after a
config revision shortens the grace period, and appliancectl drives it all."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep

from tests.support.node import REPO, RunningNode
from tests.support.wait import wait_until

# Released entries are attempted once (the relay is a closed port) and deferred for an hour,
# so each release leaves exactly one DEFER history row, at the time it was released.
CONFIG = "[queue]\nretry_schedule = [3600]\n"
PER_MINUTE = 60
ENTRIES = 30


def _soap(node: RunningNode) -> Any:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session)).service


def _send(node: RunningNode, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        for rcpt in rcpts:
            smtp.sendmail("sender@client.test", [rcpt], f"Subject: to {rcpt}\r\n\r\nbody\r\n")


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    items = value.item if hasattr(value, "item") else value
    return list(items or [])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    running = RunningNode(tmp_path_factory.mktemp("drain"), config_text=CONFIG,
                          relay=("127.0.0.1", 9)).start()
    try:
        yield running
    finally:
        running.stop()


def _job(api: Any, job_id: int) -> Any:
    return next(j for j in _items(api.mailQueueJobList()) if j.id == job_id)


def test_a_drain_keeps_its_rate_across_a_restart(node: RunningNode) -> None:
    _send(node, [f"r{j}@dst.example" for j in range(ENTRIES)])
    api = _soap(node)
    wait_until(lambda: api.mailQueueCount(filter="to~%@dst.example") == ENTRIES, what="queued")
    # Every first attempt is over (deferred) before the entries are held and drained: a held
    # entry is not attempted.
    wait_until(lambda: api.mailHistory(filter="action=DEFER to~%@dst.example", offset=0,
                                       limit=1, options={"totalhits": True}).totalhits == ENTRIES,
               what="first attempts recorded")
    api.mailQueueHoldBulk(filter="to~%@dst.example")
    wait_until(lambda: api.mailQueueCount(filter="to~%@dst.example queue=HOLD") == ENTRIES,
               what="all held")
    first = {r.id for r in _items(api.mailHistory(filter="action=DEFER to~%@dst.example",
                                                  offset=0, limit=1000).result)}
    job_id = api.mailQueueDrain(filter="to~%@dst.example queue=HOLD", action="retry",
                                per_minute=PER_MINUTE)
    seen = wait_until(lambda: (j := _job(api, job_id)).done >= 10 and j, timeout=120,
                      what="a third released")
    assert seen.state == "RUNNING" and seen.remaining > 0 and seen.eta > 0

    node.stop()
    node.start()
    api = _soap(node)
    done = wait_until(lambda: (j := _job(api, job_id)).state != "RUNNING" and j, timeout=180,
                      what="the drain finished")
    assert (done.state, done.done, done.remaining) == ("DONE", ENTRIES, 0)

    # The rows the first attempts left are told apart by id: whole-second timestamps can
    # put a first attempt in the second the drain was created.
    rows = [r for r in _items(api.mailHistory(filter="action=DEFER to~%@dst.example", offset=0,
                                              limit=1000).result) if r.id not in first]
    released = sorted(r.msgts for r in rows)
    assert len(released) == ENTRIES  # each once: none twice across the restart
    assert len({r.msgqueueid for r in rows}) == ENTRIES
    # At 60/min no 10-second window releases more than 10 (+2: whole-second timestamps and
    # the attempt following its release by a moment).
    busiest = max(sum(1 for t in released if start <= t < start + 10) for start in released)
    assert busiest <= PER_MINUTE // 6 + 2, released


def test_housekeeping_purges_expired_trash(node: RunningNode) -> None:
    _send(node, ["gone@expire.example"])
    api = _soap(node)
    wait_until(lambda: api.mailQueueCount(filter="to~%@expire.example") == 1, what="queued")
    (entry,) = _items(api.mailQueue(filter="to~%@expire.example", offset=0, limit=1).result)
    body = node.data_dir / "spool" / entry.msgpath
    assert api.mailQueueDeleteBulk(filter="to~%@expire.example") == 1
    trashed = lambda: api.mailTrash(filter="to~%@expire.example", offset=0, limit=1,  # noqa: E731
                                    options={"totalhits": True}).totalhits
    assert trashed() == 1 and body.exists()
    api.configKeySet(key="queue.trash_hours", value="0.0003", comment="short grace")
    wait_until(lambda: trashed() == 0, timeout=90, what="expired trash purged")
    wait_until(lambda: not body.exists(), what="its body removed")
    api.configKeySet(key="queue.trash_hours", value="24", comment="back")


def _ctl(node: RunningNode, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "appliancectl.toml"
    config.write_text(f'[[nodes]]\nname = "n0"\nurl = "{node.soap_url}"\nusername = "admin"\n'
                      f'password = "{node.admin_password}"\n')
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'clients'}", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "appliance_client.ctl", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL, cwd=REPO)


def test_appliancectl_trash_preview_drain_and_jobs(node: RunningNode, tmp_path: Path) -> None:
    _send(node, [f"c{j}@ctl.example" for j in range(3)])
    api = _soap(node)
    wait_until(lambda: api.mailQueueCount(filter="to~%@ctl.example") == 3, what="queued")
    shown = _ctl(node, tmp_path, "--json", "queue", "delete", "--filter", "to~%@ctl.example",
                 "--preview", "--sample", "2")
    assert shown.returncode == 0, shown.stderr
    preview = json.loads(shown.stdout)["preview"]["n0"]
    assert preview["count"] == 3 and len(preview["sample"]) == 2
    assert api.mailQueueCount(filter="to~%@ctl.example") == 3
    assert _ctl(node, tmp_path, "queue", "delete", "--filter", "to~%@ctl.example",
                "--yes").returncode == 0
    listed = _ctl(node, tmp_path, "--json", "queue", "trash", "list", "--filter", "to~%@ctl.example")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert len(items) == 3 and {i["msgdeletedby"] for i in items} == {"admin"}
    assert _ctl(node, tmp_path, "queue", "trash", "purge", "--filter", "to~c0%").returncode == 3
    restored = _ctl(node, tmp_path, "--json", "queue", "trash", "restore", "--filter", "to~c1%")
    assert json.loads(restored.stdout)["nodes"] == {"n0": 1}
    purged = _ctl(node, tmp_path, "--json", "queue", "trash", "purge", "--filter", "to~c%", "--yes")
    assert json.loads(purged.stdout)["nodes"] == {"n0": 2}
    assert api.mailQueueCount(filter="to~%@ctl.example") == 1

    drained = _ctl(node, tmp_path, "queue", "drain", "to~%@ctl.example", "--action", "delete",
                   "--per-minute", "600", "--follow")
    assert drained.returncode == 0, drained.stderr
    assert "#" in drained.stdout and "1/1" in drained.stdout  # the progress bar, at the end
    jobs = _ctl(node, tmp_path, "--json", "queue", "jobs")
    last = json.loads(jobs.stdout)[0]
    assert (last["action"], last["state"], last["done"]) == ("delete", "DONE", 1)
    assert api.mailTrash(filter="to~%@ctl.example", offset=0, limit=1,
                         options={"totalhits": True}).totalhits == 1
