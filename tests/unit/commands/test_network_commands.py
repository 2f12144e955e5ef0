"""dnslookup (a fake zone behind the resolver protocol), smtpping argv, statd."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.resolver
import dns.rrset
import pytest

from appliance.commands import dnslookup, smtpping, statd
from appliance.commands.base import CommandContext
from appliance.errors import InvalidInput
from tests.unit.commands.conftest import Run, finish, poll_until


class Answer:
    def __init__(self, rrset: dns.rrset.RRset) -> None:
        self.rrset = rrset


class FakeResolver:
    """A zone in memory behind the same `resolve` dnspython's Resolver has."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = None) -> Answer:
        name = qname.rstrip(".").lower()
        self.asked.append((name, rdtype))
        if name == "slow.example":
            raise dns.resolver.LifetimeTimeout(timeout=lifetime or 0, errors=[])
        if not any(n == name for n, _ in self.records):
            raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(name)])
        values = self.records.get((name, rdtype))
        if not values:
            raise dns.resolver.NoAnswer()
        return Answer(dns.rrset.from_text(name + ".", 300, "IN", rdtype, *values))


ZONE = {
    ("example.org", "MX"): ["10 mx1.example.org.", "20 mx2.example.org."],
    ("example.org", "A"): ["192.0.2.10"],
    ("10.2.0.192.in-addr.arpa", "PTR"): ["mail.example.org."],
}


def test_dnslookup_answers_and_errors(run: Run, tmp_path: Path) -> None:
    resolver = FakeResolver(ZONE)
    ctx = CommandContext(log_dir=tmp_path, resolver=resolver)
    out = run(ctx, ["dnslookup", "example.org", "mx"]).splitlines()
    assert out[:2] == ["example.org.\t300\tIN\tMX\t10 mx1.example.org.",
                       "example.org.\t300\tIN\tMX\t20 mx2.example.org."]
    assert out[2].startswith(";; MX example.org: ")
    assert run(ctx, ["dnslookup", "example.org"]).startswith("example.org.\t300\tIN\tA\t192.0.2.10\n")
    assert "mail.example.org." in run(ctx, ["dnslookup", "192.0.2.10"])
    assert resolver.asked[-1] == ("10.2.0.192.in-addr.arpa", "PTR")
    assert run(ctx, ["dnslookup", "nope.example"]).startswith("nope.example: no such domain (NXDOMAIN)")
    assert run(ctx, ["dnslookup", "example.org", "TXT"]).startswith("example.org: no TXT records")
    assert "no answer within 10 s" in run(ctx, ["dnslookup", "slow.example"])
    assert run(CommandContext(log_dir=tmp_path), ["dnslookup", "example.org"]) == \
        "dnslookup: this node has no resolver configured\n"


def test_dnslookup_bad_argv() -> None:
    for argv in ([], ["a..b"], ["-bad.example"], ["example.org", "ANY"], ["x" * 64 + ".org"],
                 ["example.org", "A", "extra"], ["exa mple.org"]):
        with pytest.raises(InvalidInput, match="dnslookup"):
            dnslookup.parse(argv)


def test_smtpping_argv() -> None:
    assert smtpping.parse(["mx.example.org"]) == smtpping.Args("mx.example.org", 25)
    assert smtpping.parse(["[::1]:2525"]) == smtpping.Args("::1", 2525)
    assert smtpping.parse(["::1"]) == smtpping.Args("::1", 25)
    for argv in ([], ["a b"], ["host:99999"], ["host:0"], ["host:x"], ["; rm -rf /"], ["a", "b"]):
        with pytest.raises(InvalidInput, match="smtpping"):
            smtpping.parse(argv)


class CountingSampler:
    """Stands in for the stats sampler: paces itself with the given sleep like the real one."""

    def __call__(self, graph: str, *, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> Iterator[str]:
        n = 0
        while True:
            sleep(0.02)
            n += 1
            yield f"{int(clock())} {graph} n={n}"

    def counter_samples(self, *, clock: Callable[[], float],
                        sleep: Callable[[float], None]) -> Iterator[dict[str, float]]:
        n = 0
        while True:
            sleep(0.02)
            n += 1
            yield {"queue:n": float(n), "queue:half": n / 2, "mail-queue-count": float(n)}


counting_sampler = CountingSampler()


def test_statd_streams_until_q_or_stop(run: Run, tmp_path: Path) -> None:
    runner = run.runner(CommandContext(log_dir=tmp_path, sampler=counting_sampler))
    cid = runner.run("admin", ["statd", "-g", "queue"])
    # The old statd's lines: KEY=VALUE each (a graph's sources), an empty line after a sample.
    out = poll_until(runner, "admin", cid, b"queue:n=3\r\n")
    assert out.startswith(b"queue:half=0.50\r\nqueue:n=1\r\n\r\nqueue:half=1\r\nqueue:n=2\r\n\r\n")
    runner.push("admin", cid, b"q")
    out, fault = finish(runner, "admin", cid)
    assert "exit 0" in fault
    cid = runner.run("admin", ["statd", "-g", "mail-queue-count"])
    out = poll_until(runner, "admin", cid, b"mail-queue-count=2\r\n")
    assert b"queue:" not in out
    runner.end("admin", cid)
    assert "stopped" in finish(runner, "admin", cid)[1]
    listed = run(CommandContext(log_dir=tmp_path, sampler=counting_sampler), ["statd", "-l"])
    assert listed == "mail-queue-count=1\nqueue:half=0.50\nqueue:n=1\n"
    for argv in ([], ["-g"], ["-g", "a b"], ["queue"], ["-l", "-g", "queue"]):
        with pytest.raises(InvalidInput, match="statd"):
            statd.parse(argv)


def test_statd_with_the_real_sampler(run: Run, tmp_path: Path) -> None:
    from appliance.stats.sampler import Sampler
    from appliance.stats.sources import Probe

    runner = run.runner(CommandContext(log_dir=tmp_path, sampler=Sampler(Probe())))
    cid = runner.run("admin", ["statd", "-g", "load"])
    out = poll_until(runner, "admin", cid, b"\r\n\r\n", timeout=5)
    assert [line.split("=")[0] for line in out.decode().splitlines()[:3]] == [
        "load:load1", "load:load15", "load:load5"]
    runner.end("admin", cid)
    finish(runner, "admin", cid)
    text = run(CommandContext(log_dir=tmp_path, sampler=Sampler(Probe())), ["statd", "-g", "nosuch"])
    assert text == "statd: no counter or graph 'nosuch' (statd -l lists them)\n"
    listed = dict(line.split("=", 1) for line in run(
        CommandContext(log_dir=tmp_path, sampler=Sampler(Probe(), storage=tmp_path)),
        ["statd", "-l"]).splitlines())
    assert 0 <= float(listed["system-cpu-usage"]) <= 100 and 0 < float(listed["system-mem-usage"]) < 100
    assert 0 < float(listed["system-storage-usage"]) <= 100 and "cpu:idle" in listed
    assert any(k.startswith("interface-lo-") for k in listed)
