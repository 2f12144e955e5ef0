"""`appliance run | db upgrade | user add|list|delete|passwd` — the node's command line."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.access import users
from appliance import cli_config as config_cli
from appliance.config.document import ConfigError
from appliance.db.engine import Store
from appliance.db.schema import ensure_schema
from appliance.errors import ApplianceError
from appliance.settings import Settings, default_database_url, parse_hostport

log = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On sub-commands the default is SUPPRESS, so `appliance --data-dir D run` and
    # `appliance run --data-dir D` both work and the later one does not reset the earlier.
    default = (lambda value: value) if top else (lambda _value: argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=default(Path("var")),
                        help="the node's data directory (default ./var)")
    parser.add_argument("--database", default=default(None),
                        help="store URL (default: SQLite file in the data directory)")


def _hostport(text: str) -> tuple[str, int]:
    try:
        return parse_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="An email gateway node.")
    _common(parser, top=True)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the node until SIGTERM/SIGINT")
    _common(run, top=False)
    run.add_argument("--config", type=Path, help="config document (TOML)")
    run.add_argument("--smtp-listen", type=_hostport, metavar="HOST:PORT",
                     help="address of the first SMTP listener")
    run.add_argument("--soap-listen", metavar="[http://|https://]HOST:PORT",
                     help="SOAP API address (https when no scheme is given)")
    run.add_argument("--relay", type=_hostport, metavar="HOST:PORT",
                     help="next hop of the default transport")
    run.add_argument("--spawn", choices=("fork", "exec"), default="fork",
                     help="children forked from a pre-loaded fork server (shared memory pages,"
                          " the default) or each a new interpreter")
    run.add_argument("--spool-sweep-grace", type=float, default=3600.0, metavar="SECONDS",
                     help="age below which an unreferenced spool file is never swept")

    child = sub.add_parser("child")  # started by `appliance run` only (appliance.process)
    _common(child, top=False)
    child.add_argument("role", choices=("smtp", "delivery", "api", "housekeeping"))
    child.add_argument("--index", type=int, default=0)
    child.add_argument("--smtp-listen", type=_hostport, metavar="HOST:PORT")
    child.add_argument("--soap-listen")
    child.add_argument("--relay", type=_hostport, metavar="HOST:PORT")
    child.add_argument("--spool-sweep-grace", type=float, default=3600.0, metavar="SECONDS")

    db = sub.add_parser("db", help="store maintenance")
    _common(db, top=False)
    db_sub = db.add_subparsers(dest="db_command", required=True)
    _common(db_sub.add_parser("upgrade", help="upgrade the store's schema"), top=False)

    user = sub.add_parser("user", help="manage the node's users")
    _common(user, top=False)
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", default="admin", choices=users.ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = user_sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    delete = user_sub.add_parser("delete", help="delete a user")
    delete.add_argument("name")
    list_ = user_sub.add_parser("list", help="list users")
    for p in (add, passwd, delete, list_):
        _common(p, top=False)

    graph = sub.add_parser("graph", help="render a graph's RRD file as a PNG with legends")
    graph.add_argument("name")
    graph.add_argument("--png", type=Path, required=True, help="output file")
    graph.add_argument("--start", default="-1d", help="now, -6h, -1d, -1w or Unix seconds")
    graph.add_argument("--end", default="now")
    statd = sub.add_parser("statd", help="print a graph's live values once a second")
    statd.add_argument("-g", dest="graph", required=True)
    statd.add_argument("-n", dest="count", type=int, default=None, help="stop after N lines")
    for p in (graph, statd):
        _common(p, top=False)
    backup = sub.add_parser("backup", help="write a consistent snapshot of the running node")
    backup.add_argument("file", type=Path, help="the backup file to write (a .tar.gz)")
    restore = sub.add_parser("restore", help="restore a backup into an empty data dir")
    restore.add_argument("file", type=Path, help="a file written by `appliance backup`")
    doctor = sub.add_parser("doctor", help="check the node's set-up and say how to fix it")
    doctor.add_argument("--config", type=Path, help="config document (TOML) the node runs with")
    for p in (backup, restore, doctor):
        _common(p, top=False)
    config_cli.add_commands(sub, _common)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = Path(args.data_dir).resolve()
    soap = getattr(args, "soap_listen", None)
    if soap is not None:
        _check_soap_listen(soap)
    return Settings(
        data_dir=data_dir,
        database_url=args.database or default_database_url(data_dir),
        config_path=getattr(args, "config", None),
        smtp_listen=getattr(args, "smtp_listen", None),
        soap_listen=soap,
        relay=getattr(args, "relay", None),
        spool_grace=getattr(args, "spool_sweep_grace", 3600.0),
    )


def _check_soap_listen(text: str) -> None:
    scheme, sep, rest = text.partition("://")
    if sep and scheme not in ("http", "https"):
        raise ValueError(f"--soap-listen: scheme must be http or https, got {scheme!r}")
    parse_hostport(rest if sep else text)


def _open_store(settings: Settings) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    ensure_schema(store.engine)
    return store


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the passwords differ")
    return first


def cmd_run(settings: Settings, *, spawn: str = "fork") -> int:
    from appliance.process.supervisor import Supervisor

    supervisor = Supervisor(settings, spawn=spawn)
    password = supervisor.prepare()
    if password is not None:
        # Printed once: only the first start creates the admin user.
        print(f"created user admin with password: {password}", flush=True)
    print(f"node {supervisor.serial} starting (data dir {settings.data_dir})", flush=True)
    return supervisor.run()


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    store = _open_store(settings)
    try:
        if args.user_command == "list":
            with store.transaction(read_only=True) as session:
                for user in users.list_users(session):
                    print(f"{user.name}\t{user.role}")
            return 0
        password = "" if args.user_command == "delete" else _read_password(args.password_stdin)
        with store.transaction() as session:
            if args.user_command == "add":
                users.add_user(session, args.name, password, role=args.role)
            elif args.user_command == "passwd":
                users.set_password(session, args.name, password)
            else:
                users.delete_user(session, args.name)
        print(f"user {args.name}: {args.user_command} done")
        return 0
    finally:
        store.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = _settings(args)
        if args.command == "run":
            return cmd_run(settings, spawn=args.spawn)
        if args.command == "child":
            from appliance.process.child import run_child

            return run_child(settings, args.role, args.index)
        if args.command in ("graph", "statd"):
            from appliance.stats import graphcmd

            if args.command == "graph":
                return graphcmd.graph_command(settings.rrd_dir, args.name, args.png, start=args.start, end=args.end)
            return graphcmd.statd_command(_open_store(settings).url, args.graph, count=args.count)
        if args.command == "db":
            _open_store(settings).dispose()
            print("store schema is up to date")
            return 0
        if args.command in ("backup", "restore"):
            from appliance import backup as backups

            act = backups.backup if args.command == "backup" else backups.restore
            print(f"{args.command}: {act(settings, args.file).text()}")
            return 0
        if args.command == "doctor":
            from appliance import doctor

            return doctor.main(settings)
        if args.command in ("config", "cluster"):
            return config_cli.run(_open_store(settings), args)
        return cmd_user(settings, args)
    except ConfigError as exc:
        print(f"appliance: invalid config: {exc}", file=sys.stderr)
        return 2
    except (ApplianceError, ValueError, OSError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
