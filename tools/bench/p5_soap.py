"""P5 — SOAP overhead: requests per second for `getSerial` and a 100-item `mailQueue` with 16
concurrent clients, against the full appliance endpoint (gateway, Basic auth, access check,
audit-ready call context) and against a bare Spyne service on the same cheroot WSGI server that
answers the same two operations with the same query and wire types, but nothing else.

    python tools/bench/p5_soap.py [--clients 16] [--seconds 3] [--runs 3] [--latency-requests 60]

Each server runs in its own process; the clients are threads of this process with keep-alive
connections. Medians of the runs; ratio = appliance / bare. Then the per-request latency of the
100-item mailQueue from one client (p50/p95 ms over loopback HTTP) for the appliance, the
appliance answering with stock Spyne's Soap11 writer instead of ApplianceSoap11 ("stock
writer", the reference for the response writer), and the bare service; and the same request
handed straight to the appliance's WSGI gateway in this process (wall and CPU ms, both writers).
JSON: tools/bench/results/p5_soap.json.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

ENVELOPE = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
            "<e:Body>{}</e:Body></e:Envelope>")
CALLS = {
    "getSerial": ENVELOPE.format("<t:getSerial/>"),
    "mailQueue100": ENVELOPE.format("<t:mailQueue><t:filter></t:filter><t:offset>0</t:offset>"
                                    "<t:limit>100</t:limit></t:mailQueue>"),
}
PASSWORD = "bench-password"


def seed(db: Path, spool_dir: Path, entries: int) -> None:
    from appliance.access.users import add_user
    from appliance.db.engine import Store
    from appliance.db.schema import upgrade
    from appliance.queue import store as q
    from appliance.queue.spool import Spool
    from appliance.types import Envelope, NewMessage, QueueState

    store = Store(f"sqlite:///{db}")
    upgrade(store.engine)
    spool = Spool(spool_dir)
    with store.transaction() as session:
        add_user(session, "admin", PASSWORD, role="admin")
        for i in range(entries):
            msgid = str(uuid.uuid4())
            path = spool.write(msgid, b"Subject: bench\r\n\r\nbody\r\n")
            q.enqueue(session, NewMessage(
                msgid=msgid, envelope=Envelope(sender=f"s{i}@bench.example",
                                               recipients=(f"r{i}@bench.example",)),
                path=path, size=24, subject=f"bench message {i}", received=time.time(),
                state=QueueState.HOLD, metadata={"n": str(i)}), now=time.time())
    store.dispose()


def serve(kind: str, db: Path, spool_dir: Path, port_file: Path) -> None:
    """Run one server until killed; write its port to `port_file`."""
    import logging

    from appliance.db.engine import Store
    from appliance.queue.spool import Spool
    from appliance.soap.calls import NodeContext
    from appliance.soap.server import Listen, SoapServer

    logging.basicConfig(level=logging.WARNING)
    store = Store(f"sqlite:///{db}")
    spool = Spool(spool_dir)
    if kind in ("appliance", "stock"):
        server = SoapServer(NodeContext(store=store, spool=spool, serial="BENCH"),
                            Listen.parse("http://127.0.0.1:0"), threads=16,
                            out_protocol=_stock_writer() if kind == "stock" else None)
        server.start()
        port = server.port
    else:
        port = _serve_bare(store)
    port_file.write_text(str(port))
    threading.Event().wait()


def _stock_writer() -> Any:
    from spyne.protocol.soap import Soap11

    return Soap11()


def _serve_bare(store: Any) -> int:
    from cheroot import wsgi
    from spyne import Application, Long, ServiceBase, Unicode, rpc
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication

    from appliance.queue import query
    from appliance.queue import store as q
    from appliance.soap.convert import queue_item
    from appliance.soap.wire import TNS, QueueItems, SearchOptions

    class Bare(ServiceBase):  # type: ignore[misc]
        @rpc(_returns=Unicode, _out_variable_name="result")
        def getSerial(ctx: Any) -> str:
            return "BENCH"

        @rpc(Unicode, Long, Long, SearchOptions, _in_arg_names={"filter_": "filter"},
             _returns=(QueueItems, Long), _out_variable_names=("result", "totalhits"))
        def mailQueue(ctx: Any, filter_: Any, offset: int, limit: int, options: Any) -> Any:
            with store.transaction(read_only=True) as session:
                rows, total = query.search(session, filter_ or "", offset=offset, limit=limit)
                meta = q.metadata_of(session, [r.id for r in rows])
            return [queue_item(r, meta.get(r.id, {}), "BENCH") for r in rows], total

    app = Application([Bare], tns=TNS, in_protocol=Soap11(validator="soft"),
                      out_protocol=Soap11())
    server = wsgi.Server(("127.0.0.1", 0), WsgiApplication(app), numthreads=16,
                         request_queue_size=256)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return int(server.bind_addr[1])


def load(port: int, body: str, *, clients: int, seconds: float) -> float:
    """Requests per second from `clients` keep-alive connections for `seconds`."""
    payload = body.encode()
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "\"\"",
               "Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    counts = [0] * clients
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.monotonic() < deadline:
            conn.request("POST", "/remote/", payload, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))
                return
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"requests failed: {errors[:3]}")
    return sum(counts) / (time.monotonic() - began)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2)}


def latency_http(port: int, body: str, requests: int) -> dict[str, float]:
    """Per-request ms of `requests` sequential calls on one keep-alive connection."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "\"\"",
               "Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    for i in range(requests + 3):  # three warm-up calls
        began = time.perf_counter()
        conn.request("POST", "/remote/", body.encode(), headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"request failed: {response.status}")
        if i >= 3:
            samples.append((time.perf_counter() - began) * 1000)
    conn.close()
    return percentiles(samples)


def latency_in_process(work: Path, body: str, requests: int) -> dict[str, dict[str, float]]:
    """The request handed to the gateway's WSGI callable in this process: wall and CPU ms."""
    import io

    from appliance.db.engine import Store
    from appliance.queue.spool import Spool
    from appliance.soap.calls import NodeContext
    from appliance.soap.server import Listen, SoapServer

    store = Store(f"sqlite:///{work / 'store.db'}")
    auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    out: dict[str, dict[str, float]] = {}
    for kind, writer in (("appliance", None), ("stock", _stock_writer())):
        server = SoapServer(NodeContext(store=store, spool=Spool(work / "spool"), serial="BENCH"),
                            Listen.parse("http://127.0.0.1:0"), out_protocol=writer)
        wall, cpu = [], []
        for i in range(requests + 3):
            environ = {"PATH_INFO": "/remote/", "REQUEST_METHOD": "POST", "QUERY_STRING": "",
                       "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": auth,
                       "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
                       "wsgi.input": io.BytesIO(body.encode()), "SERVER_NAME": "bench",
                       "SERVER_PORT": "0", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
            status: list[str] = []
            began, began_cpu = time.perf_counter(), time.thread_time()
            b"".join(server.gateway(environ, lambda s, h, e=None: status.append(s)))
            if i >= 3:
                wall.append((time.perf_counter() - began) * 1000)
                cpu.append((time.thread_time() - began_cpu) * 1000)
            if not status[0].startswith("200"):
                raise RuntimeError(f"request failed: {status[0]}")
        out[kind] = {"wall": percentiles(wall), "cpu": percentiles(cpu)}
    store.dispose()
    return out


def start_server(kind: str, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = work / f"{kind}.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--work", str(work)])
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-requests", type=int, default=60)
    parser.add_argument("--serve", choices=("appliance", "stock", "bare"))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.work / "store.db", args.work / "spool", args.work / f"{args.serve}.port")
        return 0
    work = Path(tempfile.mkdtemp(prefix="p5-"))
    seed(work / "store.db", work / "spool", 150)
    servers = {kind: start_server(kind, work) for kind in ("appliance", "bare", "stock")}
    results: dict[str, dict[str, list[float]]] = {c: {"appliance": [], "bare": []} for c in CALLS}
    latency: dict[str, Any] = {}
    try:
        for name, body in CALLS.items():
            for kind in ("appliance", "bare"):
                load(servers[kind][1], body, clients=args.clients, seconds=0.5)  # warm up
            for _ in range(args.runs):
                for kind in ("appliance", "bare"):
                    results[name][kind].append(load(servers[kind][1], body, clients=args.clients,
                                                    seconds=args.seconds))
        latency["http"] = {kind: latency_http(port, CALLS["mailQueue100"], args.latency_requests)
                           for kind, (_, port) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    latency["in_process"] = latency_in_process(work, CALLS["mailQueue100"], args.latency_requests)
    report(results, latency, args)
    return 0


def report(results: dict[str, dict[str, list[float]]], latency: dict[str, Any],
           args: argparse.Namespace) -> None:
    summary = {}
    print(f"P5 SOAP overhead, {args.clients} clients, {args.runs} runs of {args.seconds:g}s "
          f"(requests/s, median)")
    print(f"{'call':<14}{'appliance':>12}{'bare spyne':>12}{'ratio':>8}")
    for name, by_kind in results.items():
        ours, bare = statistics.median(by_kind["appliance"]), statistics.median(by_kind["bare"])
        summary[name] = {"appliance_rps": round(ours, 1), "bare_rps": round(bare, 1),
                         "ratio": round(ours / bare, 3), "runs": by_kind}
        print(f"{name:<14}{ours:>12.1f}{bare:>12.1f}{ours / bare:>8.2f}")
    print(f"\nmailQueue100 per request, one client, {args.latency_requests} requests (ms)")
    print(f"{'where':<30}{'p50':>8}{'p95':>8}")
    for kind, m in latency["http"].items():
        label = {"appliance": "http appliance", "stock": "http stock writer",
                 "bare": "http bare spyne"}[kind]
        print(f"{label:<30}{m['p50_ms']:>8.1f}{m['p95_ms']:>8.1f}")
    for kind, m in latency["in_process"].items():
        label = "in-process " + ("appliance" if kind == "appliance" else "stock writer")
        for what in ("wall", "cpu"):
            row = m[what]
            print(f"{label + ' ' + what:<30}{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}")
    out = REPO / "tools" / "bench" / "results" / "p5_soap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "P5", "clients": args.clients,
                               "seconds": args.seconds, "machine": platform.node(),
                               "python": platform.python_version(), "results": summary,
                               "mailQueue100_latency": latency},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
