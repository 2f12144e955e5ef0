"""Internet DNS stands in here: a zone in a dict, behind the mail-auth Lookup Protocol, and the
same zone served over UDP on loopback for nodes running in their own processes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.mailauth.dns import Answer, DnsTempError

TIMEOUT = "timeout"  # a name whose lookups never get an answer


class Zone:
    """`records[(name, rdtype)]` = list of values (TXT: a str or a list of str chunks; MX:
    (preference, host); A/AAAA/PTR: str). `timeouts` never answer; `secure` names carry AD."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[object]] = {}
        self.timeouts: set[str] = set()
        self.secure: set[str] = set()
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rdtype: str, *values: object) -> "Zone":
        self.records.setdefault((name.lower().rstrip("."), rdtype.upper()), []).extend(values)
        return self

    def txt(self, name: str, *values: str) -> "Zone":
        return self.add(name, "TXT", *values)

    def exists(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return any(n == name or n.endswith("." + name) for n, _ in self.records)

    def lookup(self, name: str, rdtype: str) -> tuple[list[object], bool]:
        name = name.lower().rstrip(".")
        self.queries.append((name, rdtype))
        if name in self.timeouts or any(name.endswith("." + t) for t in self.timeouts):
            raise DnsTempError(f"{rdtype} {name}: timed out")
        return list(self.records.get((name, rdtype.upper()), [])), self.exists(name)


class ZoneLookup:
    """The fixture resolver: the Lookup Protocol answered from a Zone."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        values, exists = self.zone.lookup(name, rdtype)
        if rdtype.upper() in ("TXT", "SPF"):
            records: tuple[object, ...] = tuple(
                tuple(c.encode() for c in (v if isinstance(v, list) else [v])) for v in values)
        else:
            records = tuple(values)
        return Answer(records=records, exists=exists,
                      authenticated=name.lower().rstrip(".") in self.zone.secure, ttl=300)


@contextmanager
def served(zone: Zone) -> Iterator[int]:
    """The zone as a DNS server on 127.0.0.1 (UDP, a free port): yields the port."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer(wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(question.rdtype)
        response = dns.message.make_response(query)
        try:
            values, exists = zone.lookup(name, rdtype)
        except DnsTempError:
            return None  # no answer: the client times out
        if name.lower() in zone.secure:
            response.flags |= dns.flags.AD
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        texts = []
        for v in values:
            if rdtype == "TXT":
                chunks = v if isinstance(v, list) else [v]
                texts.append(" ".join('"' + c.replace('"', '\\"') + '"' for c in chunks))
            elif rdtype == "MX":
                texts.append(f"{v[0]} {v[1]}.")  # type: ignore[index]
            else:
                texts.append(str(v))
        if texts:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rdtype, texts))
        return bytes(response.to_wire())

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = answer(wire)
            except Exception:
                continue
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, name="dns-fixture", daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()
