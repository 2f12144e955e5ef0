"""/healthz, /readyz and /metrics on a real store, through the WSGI site the API listener serves."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.access.levels import AccessLevel
from appliance.access.users import add_user
from appliance.db.engine import Store
from appliance.db.models_bounce import BounceNotice
from appliance.queue import store as q
from appliance.soap.auth import Authenticator
from appliance.stats.counters import Counters
from appliance.stats.metrics import CONTENT_TYPE, Instruments, exposition
from appliance.types import Envelope, NewMessage, QueueState
from appliance.web.health import Health
from appliance.web.site import Site
from tests.support.postgres import free_port


def _call(site: Site, path: str, *, user: tuple[str, str] | None = None,
          remote: str = "192.0.2.7") -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "REMOTE_ADDR": remote}
    if user is not None:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(site(environ, start_response))
    return got["status"], got["headers"], body


def _soap(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/xml")])
    return [b"<soap/>"]


def _site(store: Store, tmp_path: Path, **health: Any) -> Site:
    checks = Health(store=store, spool_dir=tmp_path, min_free_bytes=health.pop("min_free", 1),
                    cache_for=0, **health)
    instruments = Instruments()
    instruments.delivery_attempts.labels("default", "2xx").inc(3)
    return Site(_soap, health=checks, authenticator=Authenticator(store),
                metrics=lambda: exposition(store, extra=instruments.registry),
                metrics_content_type=CONTENT_TYPE)


def _enqueue(store: Store, *recipients: str, state: QueueState = QueueState.ACTIVE) -> None:
    with store.transaction() as session:
        q.enqueue(session, NewMessage(
            msgid=f"{time.time_ns():032x}", envelope=Envelope(sender="a@b.c", recipients=recipients),
            path="00/x.eml", size=10, received=time.time(), transport="default", state=state,
        ), now=time.time())


@pytest.fixture
def users(store: Store) -> Store:
    with store.transaction() as session:
        add_user(session, "ro", "ro-password", role="readonly")
        add_user(session, "scraper", "scraper-password", role="metrics")
        add_user(session, "cust", "cust-password", role="custom")
    return store


def test_health_and_readiness(store: Store, tmp_path: Path) -> None:
    site = _site(store, tmp_path, processes=lambda: {"delivery": True, "smtp-1": True},
                 listeners=lambda: {"inbound": True})
    status, _, body = _call(site, "/healthz")
    assert status == "200 OK" and b"ok process delivery: running" in body
    status, _, body = _call(site, "/readyz")
    assert status == "200 OK" and b"ok store: reachable" in body


@pytest.mark.parametrize("fault", ["disk", "config", "listener", "process"])
def test_not_ready_for_each_fault(store: Store, tmp_path: Path, fault: str) -> None:
    site = _site(store, tmp_path, min_free=(1 << 60) if fault == "disk" else 1,
                 config_applied=lambda: fault != "config",
                 listeners=lambda: {"inbound": fault != "listener"},
                 processes=lambda: {"delivery": fault != "process"})
    status, _, body = _call(site, "/readyz")
    assert status == "503 Service Unavailable" and b"FAIL" in body
    assert (_call(site, "/healthz")[0] == "200 OK") == (fault != "process")


def test_unreachable_store_is_not_ready(tmp_path: Path) -> None:
    gone = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x?connect_timeout=2")
    try:
        site = _site(gone, tmp_path)
        status, _, body = _call(site, "/readyz")
        assert status == "503 Service Unavailable" and b"FAIL store: unreachable" in body
        assert _call(site, "/healthz")[0] == "200 OK"  # alive, just not ready
    finally:
        gone.dispose()


def test_metrics_need_credentials_and_a_level_that_may_scrape(users: Store, tmp_path: Path) -> None:
    site = _site(users, tmp_path)
    status, headers, _ = _call(site, "/metrics")
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Basic")
    assert _call(site, "/metrics", user=("ro", "wrong"))[0] == "401 Unauthorized"
    assert _call(site, "/metrics", user=("cust", "cust-password"))[0] == "403 Forbidden"
    for user in (("ro", "ro-password"), ("scraper", "scraper-password")):
        status, headers, _ = _call(site, "/metrics", user=user)
        assert status == "200 OK" and headers["Content-Type"] == CONTENT_TYPE
    assert _call(site, "/remote/")[2] == b"<soap/>"  # everything else is SOAP's


def test_metrics_level_may_call_no_soap_operation() -> None:
    level = AccessLevel(role="metrics")
    assert level.may_scrape_metrics
    assert not level.allows("getSerial", mutating=False)
    assert level.allows("login", mutating=False)


def test_queue_figures_and_counters_parse_and_match_the_store(users: Store, tmp_path: Path) -> None:
    _enqueue(users, "x@one.example", "y@one.example", "z@two.example")
    _enqueue(users, "w@two.example", state=QueueState.HOLD)
    with users.transaction() as s:  # a bulk-bounced message whose DSN is not yet written
        s.add(BounceNotice(created=1.0, msgid="m", sender="s@one.example", ts0=1.0, path="",
                           reason="550 5.1.1 gone", recipients='[["r@two.example", 7]]'))
    counters = Counters()
    counters.stat("mail:action:deliver", "inbound", "one.example", 5)
    counters.stat("mail:action:bounce", "inbound", "two.example", 2)
    counters.stat("custom", "a", "b", 7)
    from appliance.stats.flusher import StatsFlusher

    StatsFlusher(users, counters, interval=60).flush_once()
    _, _, body = _call(_site(users, tmp_path), "/metrics", user=("ro", "ro-password"))
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    queue = {(s.labels["queue"], s.labels["transport"]): s.value
             for s in families["appliance_queue_entries"].samples}
    assert queue[("ACTIVE", "default")] == 3 and queue[("HOLD", "default")] == 1
    assert queue[("DEFER", "")] == 0
    domains = {s.labels["domain"]: s.value for s in families["appliance_queue_domain_entries"].samples}
    assert domains == {"one.example": 2, "two.example": 2}
    actions = {s.labels["action"]: s.value for s in families["appliance_messages"].samples
               if s.name == "appliance_messages_total"}
    assert actions == {"DELIVER": 5, "BOUNCE": 2}
    stats = {(s.labels["key1"], s.labels["key2"], s.labels["key3"]): s.value
             for s in families["appliance_stat"].samples if s.name == "appliance_stat_total"}
    assert stats[("custom", "a", "b")] == 7
    assert [s.value for s in families["appliance_bounce_notices"].samples] == [1]
    attempts = [s for s in families["appliance_delivery_attempts"].samples
                if s.name == "appliance_delivery_attempts_total"]
    assert [(s.labels["reply_class"], s.value) for s in attempts] == [("2xx", 3)]
