"""`appliance config show|edit|diff|revert|log|get|set` and `appliance cluster create|join|leave|nodes`."""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.cluster.membership import last_good
from appliance.cluster.service import ClusterService
from appliance.cluster.shared import StoreRouter
from appliance.config.document import ConfigError, parse
from appliance.config.revisions import text_get
from appliance.cluster.configservice import ConfigService
from appliance.cluster.watcher import initial_running
from appliance.db.engine import Store
from appliance.db.models import NodeInfo

Common = Callable[..., None]


def add_commands(sub: argparse._SubParsersAction, common: Common) -> None:  # type: ignore[type-arg]
    config = sub.add_parser("config", help="show, edit and revert the configuration")
    common(config, top=False)
    cs = config.add_subparsers(dest="config_command", required=True)
    show = cs.add_parser("show", help="print a revision's text (the newest by default)")
    show.add_argument("--revision", type=int)
    edit = cs.add_parser("edit", help="edit in $EDITOR (or take --file, '-' = stdin) and commit")
    edit.add_argument("--file", help="commit this file's text instead of opening an editor")
    edit.add_argument("--comment", "-m", default="")
    diff = cs.add_parser("diff", help="unified diff between two revisions (default: last change)")
    diff.add_argument("from_", type=int, nargs="?", metavar="FROM")
    diff.add_argument("to", type=int, nargs="?")
    revert = cs.add_parser("revert", help="commit a copy of an earlier revision")
    revert.add_argument("revision", type=int)
    revert.add_argument("--comment", "-m", default="")
    log = cs.add_parser("log", help="revisions, newest first")
    log.add_argument("--limit", type=int, default=20)
    get = cs.add_parser("get", help="one dotted key's value (local:KEY = this node's override)")
    get.add_argument("key")
    set_ = cs.add_parser("set", help="set one dotted key (local:KEY = this node's override)")
    set_.add_argument("key")
    set_.add_argument("value")
    set_.add_argument("--comment", "-m", default="")
    cluster = sub.add_parser("cluster", help="cluster membership")
    common(cluster, top=False)
    cl = cluster.add_subparsers(dest="cluster_command", required=True)
    for name, text in (("create", "start a cluster in an empty PostgreSQL database"),
                       ("join", "join the cluster whose shared store is at DSN")):
        p = cl.add_parser(name, help=text)
        p.add_argument("--dsn", required=True, help="postgresql://... or 'host=... dbname=...'")
    cl.add_parser("leave", help="leave the cluster, keeping its config as a local revision")
    cl.add_parser("nodes", help="list the cluster's nodes")
    for p in (show, edit, diff, revert, log, get, set_, *cl.choices.values()):
        common(p, top=False)


def run(store: Store, args: argparse.Namespace) -> int:
    """Run a `config` or `cluster` command against the node's store (running or not)."""
    router = StoreRouter(store)
    serial = _serial(store)
    initial_running(router, serial, file_text=None)  # a fresh store gets revision 1
    try:
        if args.command == "cluster":
            return _cluster(ClusterService(router, serial, _identity(router)), args)
        return _config(ConfigService(router, serial), args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2
    finally:
        router.close()


def _config(service: ConfigService, args: argparse.Namespace) -> int:
    author = f"{getpass.getuser()}@cli"
    command = args.config_command
    if command == "show":
        sys.stdout.write(service.text_get(args.revision, reveal=True))
    elif command == "edit":
        text = _edited(service.text_get(reveal=True), args.file)
        print(f"revision {service.text_set(text, comment=args.comment, author=author)}")
    elif command == "diff":
        newest = service.log(0, 1)[0].id
        to = args.to if args.to is not None else (args.from_ if args.from_ is not None else newest)
        from_ = args.from_ if args.to is not None and args.from_ is not None else max(to - 1, 1)
        sys.stdout.write(service.diff(from_, to, reveal=True))
    elif command == "revert":
        print(f"revision {service.revert(args.revision, comment=args.comment, author=author)}")
    elif command == "log":
        for entry in service.log(0, args.limit):
            when = datetime.datetime.fromtimestamp(entry.ts).isoformat(timespec="seconds")
            print(f"{entry.id}\t{when}\t{entry.author}\t{entry.comment}")
    elif command == "get":
        print(service.key_get(args.key, reveal=True))
    else:
        revision = service.key_set(args.key, args.value, comment=args.comment, author=author)
        print(f"revision {revision}")
    return 0


def _cluster(service: ClusterService, args: argparse.Namespace) -> int:
    command = args.cluster_command
    if command == "create":
        print(f"cluster created at revision {service.create(args.dsn)}")
    elif command == "join":
        print(f"joined; the cluster is at revision {service.join(args.dsn)}")
    elif command == "leave":
        print(f"left the cluster; running local revision {service.leave()}")
    else:
        for node in service.node_list():
            print(f"{node.serial}\t{node.name}\t{node.url}\t{node.status}\t"
                  f"revision {node.configrevision}\t{int(time.time() - node.lastseen)}s ago")
    return 0


def _edited(current: str, file: str | None) -> str:
    if file == "-":
        return sys.stdin.read()
    if file is not None:
        return Path(file).read_text(encoding="utf-8")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".toml", delete=False) as handle:
        handle.write(current)
    try:
        while True:
            subprocess.run([editor, handle.name], check=True)
            text = Path(handle.name).read_text(encoding="utf-8")
            try:
                parse(text)
                return text
            except ConfigError as exc:
                print(exc, file=sys.stderr)
                if input("edit again? [Y/n] ").strip().lower() == "n":
                    raise
    finally:
        os.unlink(handle.name)


def _serial(store: Store) -> str:
    """The node's serial (the same node_info row `appliance run` creates)."""
    with store.transaction() as session:
        row = session.get(NodeInfo, "serial")
        if row is None:
            row = NodeInfo(key="serial", value=secrets.token_hex(8).upper())
            session.add(row)
            session.flush()
        return str(row.value)


def _identity(router: StoreRouter) -> Callable[[], tuple[str, str]]:
    def identity() -> tuple[str, str]:
        with router.local.transaction(read_only=True) as session:
            good = last_good(session)
        if good is not None:
            config = parse(good.text)
        else:
            with router.local.transaction(read_only=True) as session:
                config = parse(text_get(session))
        listen = config.api.public_url or f"{config.api.listen.rstrip('/')}/remote/"
        return config.node.name, listen

    return identity
