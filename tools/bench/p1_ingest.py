"""P1: durable SMTP ingest — messages accepted per second by a node and by Postfix, side by side.

    python tools/bench/p1_ingest.py [--count 600] [--rounds 3] [--sessions 1,8,32] [--sizes 1024,10240]
        [--postgres | --database URL] [--dkim rsa|ed25519]

smtp-source (Postfix's load generator) sends N concurrent sessions of fixed-size messages into
each system in turn; both relay to the same smtp-sink on loopback and both fsync each message
before answering 250. Prints medians and the ratio node/Postfix; writes results/p1_ingest.json.
With --dkim a second node, with a key of that algorithm for the sender's domain (bench.test),
signs what it relays; it is measured in the same rounds and the ratio signed/unsigned printed.
With --baseline DIR a node run from another checkout of the project (an earlier commit, say
`git worktree add DIR REV`) is measured in the same rounds, and the ratio node/baseline printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from p1_postfix import Postfix, available as postfix_available  # noqa: E402
from proctree import cpu_seconds  # noqa: E402


NODE_CONFIG = """\
[[listeners]]
id = "inbound"
port = 0
max_connections_per_address = 1000
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}")
            time.sleep(0.05)


def start_node(base: Path, relay_port: int, database: str | None,
               config: str | None = None, extra: tuple[str, ...] = (),
               repo: Path = REPO) -> tuple[subprocess.Popen[bytes], int]:
    """`appliance run` on port 0; the port it got comes from its run/ports.json."""
    data_dir = base / "node"
    argv = [sys.executable, "-m", "appliance", "run", "--data-dir", str(data_dir),
            "--smtp-listen", "127.0.0.1:0", "--soap-listen", "http://127.0.0.1:0",
            "--relay", f"127.0.0.1:{relay_port}"]
    if database:
        argv += ["--database", database]
    if config:
        (base / "node.toml").write_text(config)
        argv += ["--config", str(base / "node.toml")]
    argv += list(extra)
    log = open(base / "node.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=repo,
                            env={**os.environ, "PYTHONPATH": str(repo)}, start_new_session=True)
    ports_file = data_dir / "run" / "ports.json"
    deadline = time.monotonic() + 300  # new interpreters start slowly on a busy machine
    while True:
        try:
            ports = json.loads(ports_file.read_text())
            if ports.get("pid") == proc.pid:
                break
        except (OSError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node did not start: {(base / 'node.log').read_text()[-2000:]}")
        time.sleep(0.1)
    port = int(next(iter(ports["smtp"].values())))
    wait_for_port(port, proc)
    return proc, port


def dkim_keygen(base: Path, algorithm: str) -> None:
    """A key for the sender domain in the node's data dir: `[dkim]` defaults sign its mail."""
    done = subprocess.run([sys.executable, "-m", "appliance", "--data-dir", str(base / "node"),
                           "dkim", "keygen", "bench.test", "bench", "--algorithm", algorithm],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(f"dkim keygen failed: {done.stderr.strip()[-500:]}")


def signed_history(base: Path) -> int:
    import sqlite3

    with sqlite3.connect(base / "node" / "appliance.db") as db:
        (count,) = db.execute("SELECT count(*) FROM history_metadata WHERE key = 'dkim_signature'").fetchone()
    return int(count)


def inject(port: int, *, count: int, size: int, sessions: int) -> float:
    """Messages per second that smtp-source got accepted (it fails on any non-2xx reply)."""
    argv = ["smtp-source", "-l", str(size), "-m", str(count), "-s", str(sessions),
            "-f", "sender@bench.test", "-t", "rcpt@sink.test", f"127.0.0.1:{port}"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "error" in done.stderr.lower():
        raise RuntimeError(f"smtp-source failed: {done.stderr.strip()[-500:]}")
    return count / elapsed


def measure(systems: dict[str, int], *, count: int, rounds: int, sessions: list[int],
            sizes: list[int], roots: dict[str, int] | None = None) -> list[dict[str, object]]:
    """`roots`: system -> root pid whose process tree's CPU time is charged to it."""
    rows: list[dict[str, object]] = []
    roots = roots or {}
    for size in sizes:
        for n in sessions:
            samples: dict[str, list[float]] = {name: [] for name in systems}
            cpu: dict[str, list[float]] = {name: [] for name in systems}
            for _ in range(rounds):
                for name, port in systems.items():  # interleaved, so drift hits both alike
                    before = cpu_seconds(roots[name]) if name in roots else 0.0
                    samples[name].append(inject(port, count=count, size=size, sessions=n))
                    if name in roots:  # CPU ms per accepted message (the whole process tree)
                        cpu[name].append((cpu_seconds(roots[name]) - before) * 1000 / count)
            row: dict[str, object] = {"size": size, "sessions": n, "count": count,
                                      "samples": samples, "cpu_ms": cpu}
            for name in systems:
                row[name] = statistics.median(samples[name])
                if cpu[name]:
                    row[f"{name}_cpu_ms"] = statistics.median(cpu[name])
            if "postfix" in systems:
                row["ratio"] = float(row["node"]) / float(row["postfix"])  # type: ignore[arg-type]
            if "signed" in systems:
                row["signed_ratio"] = float(row["signed"]) / float(row["node"])  # type: ignore[arg-type]
            if "baseline" in systems:
                row["baseline_ratio"] = float(row["node"]) / float(row["baseline"])  # type: ignore[arg-type]
            rows.append(row)
            print_row(row, list(systems))
    return rows


def print_row(row: dict[str, object], names: list[str]) -> None:
    cells = [f"{row['size'] // 1024:>4} KiB", f"{row['sessions']:>8}"]  # type: ignore[operator]
    cells += [f"{float(row[n]):>10.0f}" for n in names]  # type: ignore[arg-type]
    cells += [f"{float(row.get(f'{n}_cpu_ms', 0)):>8.2f}" for n in names]  # type: ignore[arg-type]
    for ratio in ("ratio", "signed_ratio", "baseline_ratio"):
        if ratio in row:
            cells.append(f"{float(row[ratio]):>7.2f}")  # type: ignore[arg-type]
    print("  ".join(cells), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="messages per run (bounded)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", default="1,8,32")
    parser.add_argument("--sizes", default="1024,10240")
    parser.add_argument("--database", help="store URL for the node (default SQLite)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (tests/support) for the node")
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--dkim", choices=("rsa", "ed25519"),
                        help="also measure a node that DKIM-signs the relayed mail with this key")
    parser.add_argument("--baseline", type=Path,
                        help="also measure a node run from this other checkout of the project")
    args = parser.parse_args()
    for tool in ("smtp-source", "smtp-sink"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (Debian package postfix)", file=sys.stderr)
            return 1
    if args.dkim and (args.database or args.postgres):
        parser.error("--dkim compares two SQLite nodes; it does not take --database or --postgres")
    if args.baseline and args.database:
        parser.error("--baseline needs a store of its own: use SQLite or --postgres")
    if args.baseline and not (args.baseline / "appliance" / "__main__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project")
    sessions = [int(s) for s in args.sessions.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="p1-", dir="/var/tmp"))
    base.chmod(0o755)  # Postfix daemons (user postfix) must reach their queue inside it
    procs: list[subprocess.Popen[bytes]] = []
    postfix: Postfix | None = None
    pg = None
    if args.postgres:
        from tests.support.postgres import PostgresServer

        pg = PostgresServer(durable=True).start()
        args.database = pg.create_database("p1")
    try:
        sink_port = free_port()
        sink = subprocess.Popen(["smtp-sink", *(["-u", "postfix"] if os.geteuid() == 0 else []),
                                 f"127.0.0.1:{sink_port}", "1024"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sink)
        wait_for_port(sink_port, sink)
        # Postfix runs with its per-client connection limit off (all the load comes from one
        # address); the node's listener likewise.
        node, node_port = start_node(base, sink_port, args.database, config=NODE_CONFIG)
        procs.append(node)
        systems = {"node": node_port}
        roots = {"node": node.pid}
        signed_base = base / "signed"
        if args.dkim:
            signed_base.mkdir()
            dkim_keygen(signed_base, args.dkim)
            signed, signed_port = start_node(signed_base, sink_port, None, config=NODE_CONFIG)
            procs.append(signed)
            systems["signed"] = signed_port
            roots["signed"] = signed.pid
        if args.baseline:
            baseline_base = base / "baseline"
            baseline_base.mkdir()
            baseline, baseline_port = start_node(
                baseline_base, sink_port, pg.create_database("p1_baseline") if pg else None,
                config=NODE_CONFIG, repo=args.baseline.resolve())
            procs.append(baseline)
            systems["baseline"] = baseline_port
            roots["baseline"] = baseline.pid
        if not args.no_postfix and postfix_available():
            postfix = Postfix(smtp_port=free_port(), relay_port=sink_port, base=base)
            postfix.start()
            wait_for_port(postfix.smtp_port)
            systems["postfix"] = postfix.smtp_port
        print(f"P1 ingest: {args.count} messages per run, median of {args.rounds}, msgs/s")
        print("  ".join(["    size", "sessions", *[f"{n:>10}" for n in systems],
                         *[f"{n[:4] + ' ms':>8}" for n in systems],
                         *(["  ratio"] if "postfix" in systems else []),
                         *(["signed/node"] if "signed" in systems else []),
                         *(["node/baseline"] if "baseline" in systems else [])]))
        if postfix is not None:
            roots["postfix"] = postfix.master_pid()
        rows = measure(systems, count=args.count, rounds=args.rounds, sessions=sessions,
                       sizes=sizes, roots=roots)
        out = HERE / "results" / ("p1_ingest_postgresql.json" if args.postgres else "p1_ingest.json")
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "P1", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "database": "postgresql" if args.postgres else (args.database or "sqlite"),
            "load_average": os.getloadavg(),
            "dkim": args.dkim or "",
            "baseline": str(args.baseline or ""),
            "rows": rows,
        }, indent=2))
        if args.dkim:  # every relayed message should have been signed (history keeps metadata)
            print(f"signed node: {signed_history(signed_base)} delivered messages carry a signature")
        print(f"wrote {out.relative_to(REPO)}")
        return 0
    finally:
        if postfix is not None:
            postfix.stop()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(base, ignore_errors=True)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
