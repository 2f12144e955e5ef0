"""appliance doctor's checks, each with the fault it must find planted in front of it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance import doctor
from appliance.config.schema import Config, Listener, Transport
from appliance.db.engine import Store
from appliance.delivery.routing import RouteError
from appliance.settings import Settings
from tests.support.certs import write_certificate

GiB = 2**30


class FakeResolver:
    def __init__(self, known: dict[str, list[str]]) -> None:
        self.known = known

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        return []

    async def addresses(self, host: str) -> list[str]:
        if host not in self.known:
            raise RouteError(f"domain {host} does not exist", permanent=True)
        return self.known[host]


def edges(*, free: int = 50 * GiB, total: int = 100 * GiB, resolver: FakeResolver | None = None,
          refused: frozenset[tuple[str, int]] = frozenset(), ntp: bool | None = True) -> doctor.Edges:
    def connect(host: str, port: int, timeout: float) -> None:
        if (host, port) in refused:
            raise ConnectionRefusedError(111, "Connection refused")

    return doctor.Edges(resolver=resolver or FakeResolver({}), connect=connect,
                        disk_usage=lambda _p: doctor.DiskUsage(total, total - free, free),
                        clock=time.time, ntp_synchronized=lambda: ntp)


def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o750, exist_ok=True)
    return Settings(data_dir=data, database_url=f"sqlite:///{data / 'appliance.db'}")


def levels(findings: list[doctor.Finding], check: str) -> list[str]:
    return [f.level for f in findings if f.check == check]


@pytest.mark.parametrize(("free", "total", "level"), [
    (50 * GiB, 100 * GiB, "ok"), (2 * GiB, 100 * GiB, "warn"), (5 * GiB, 100 * GiB, "warn"),
    (50 * 2**20, 100 * GiB, "fail"), (GiB // 2, 20 * GiB, "warn"),
])
def test_disk_space_thresholds(tmp_path: Path, free: int, total: int, level: str) -> None:
    assert levels(doctor.check_disk(settings(tmp_path), edges(free=free, total=total)), "disk") == [level]


def test_data_dir_world_writable_and_readable_key_are_found(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert levels(doctor.check_data_dir(s), "data dir") == ["ok"]
    s.data_dir.chmod(0o777)
    s.tls_dir.mkdir()
    (s.tls_dir / "node.key").write_text("k")
    (s.tls_dir / "node.key").chmod(0o644)
    found = doctor.check_data_dir(s)
    assert levels(found, "data dir") == ["fail"] and levels(found, "tls key") == ["fail"]
    assert "chmod o-w" in found[0].fix


def test_missing_data_dir_fails(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "nope", database_url="sqlite:///x")
    assert levels(doctor.check_data_dir(s), "data dir") == ["fail"]


def test_unresolvable_next_hop_and_unreachable_relay(tmp_path: Path) -> None:
    config = Config(transports=[Transport(id="default", nexthop="relay.example.net:25"),
                                Transport(id="b", nexthop="127.0.0.1:2600")])
    good = edges(resolver=FakeResolver({"relay.example.net": ["192.0.2.1"]}))
    assert levels(doctor.check_dns(config, good), "dns") == ["ok"]
    bad = edges(resolver=FakeResolver({}), refused=frozenset({("127.0.0.1", 2600)}))
    assert levels(doctor.check_dns(config, bad), "dns") == ["fail"]
    assert levels(doctor.check_relays(config, bad), "relay") == ["ok", "fail"]


def test_address_next_hops_need_no_dns() -> None:
    config = Config(transports=[Transport(id="default", nexthop="127.0.0.1:25")])
    found = doctor.check_dns(config, edges(resolver=None))
    assert levels(found, "dns") == ["ok"]


def test_certificates_expired_soon_and_valid(tmp_path: Path) -> None:
    s = settings(tmp_path)
    write_certificate(s.tls_dir / "old.crt", days_from_now_start=-30, days_from_now_end=-1)
    write_certificate(s.tls_dir / "soon.crt", days_from_now_start=-30, days_from_now_end=5)
    write_certificate(s.tls_dir / "node.crt", days_from_now_start=-1, days_from_now_end=300)
    found = {Path(f.message.split()[0]).name: f.level
             for f in doctor.check_certificates(s, Config(), time.time)}
    assert found == {"old.crt": "fail", "soon.crt": "warn", "node.crt": "ok"}


def test_open_relay_risks_in_the_relay_section_and_scripts() -> None:
    from appliance.config.schema import RelaySection

    public = Config(listeners=[Listener(id="mx", address="0.0.0.0", port=25)])
    assert levels(doctor.check_open_relay(public), "open relay") == ["ok"]  # default rules
    anyone = Config(relay=RelaySection(mynetworks=["0.0.0.0/0"]))
    assert levels(doctor.check_open_relay(anyone), "open relay") == ["fail"]
    wide = Config(relay=RelaySection(mynetworks=["8.0.0.0/8", "10.0.0.0/8"], address_literals=True))
    assert levels(doctor.check_open_relay(wide), "open relay") == ["warn", "warn"]
    scripted = Config(listeners=[Listener(id="mx", address="0.0.0.0", port=25, script="s")],
                      scripts={"s": "function rcpt_to(ctx) return accept() end"})
    found = doctor.check_open_relay(scripted)
    assert levels(found, "open relay") == ["warn"] and "decides relaying" in found[0].message


def test_postgres_version() -> None:
    assert doctor.postgres_version(120017).level == "fail"
    assert doctor.postgres_version(150018).level == "ok"


def test_unreachable_store_fails() -> None:
    from tests.support.postgres import free_port

    store = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2")
    try:
        assert levels(doctor.check_store(store), "store") == ["fail"]
    finally:
        store.dispose()


def test_clock_behind_the_store_and_ntp(store: Store) -> None:
    from appliance.queue import store as q
    from appliance.types import Envelope, NewMessage

    with store.transaction() as session:
        later = time.time() + 3600  # written by a clock an hour ahead of this one
        q.enqueue(session, NewMessage(
            msgid="0" * 32, envelope=Envelope(sender="a@b.c", recipients=("d@e.f",)),
            path="00/x.eml", size=1, received=later, transport="default",
        ), now=later)
    found = doctor.check_clock(store, edges(ntp=False))
    assert sorted(levels(found, "clock")) == ["fail", "warn"]


def test_bounce_notices_owed_too_long(store: Store) -> None:
    from appliance.db.models_bounce import BounceNotice

    assert [(f.level, f.message) for f in doctor.check_bounce_notices(store, edges())] == [
        ("ok", "no DSN owed")]
    with store.transaction() as session:
        for age in (30.0, 7200.0):
            session.add(BounceNotice(created=time.time() - age, msgid="m", sender="s@a.test",
                                     ts0=1.0, path="", reason="550 gone", recipients="[]"))
    [late] = doctor.check_bounce_notices(store, edges())
    assert (late.level, late.message) == (
        "warn", "2 DSNs of bulk bounces are owed, the oldest for 120 minutes")
    with store.transaction() as session:
        session.query(BounceNotice).filter(BounceNotice.created < time.time() - 3600).delete()
    assert levels(doctor.check_bounce_notices(store, edges()), "bounce notices") == ["ok"]
