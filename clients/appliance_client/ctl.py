"""appliancectl: operate every node of a cluster at once from the command line.

Exit codes: 0 every node answered, 1 one or more nodes failed, 2 bad usage or settings,
3 a destructive action was not confirmed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from zeep.helpers import serialize_object

from appliance_client import provision
from appliance_client.cluster import BULK_OPERATIONS, Cluster, ClusterResult, _items, ttl_seconds
from appliance_client.errors import NodeError
from appliance_client.settings import SettingsError, load_nodes

EXIT_OK, EXIT_NODE_FAILED, EXIT_USAGE, EXIT_NOT_CONFIRMED = 0, 1, 2, 3
QUEUE_COLUMNS = ("id", "msgid", "msgts0", "msgfrom", "msgto", "msgqueue", "msgsubject", "msgerror")


def plain(value: Any) -> Any:
    """zeep objects -> JSON-ready values; base64 fields (bytes) become text."""
    value = serialize_object(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Output:
    def __init__(self, *, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console()
        self.failed = False

    def errors(self, errors: dict[str, NodeError]) -> None:
        for label, err in sorted(errors.items()):
            self.failed = True
            Console(stderr=True).print(f"[red]{label}: {err.message}[/red]")

    def emit(self, data: Any, table: Table | None = None) -> None:
        if self.as_json or table is None:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            self.console.print(table)

    def per_node(self, title: str, result: ClusterResult, *, column: str = "value",
                 total: int | None = None) -> None:
        self.errors(result.errors)
        data = {label: plain(v) for label, v in result.values.items()}
        table = Table(title=title)
        table.add_column("node")
        table.add_column(column, justify="right")
        for label, value in sorted(data.items()):
            table.add_row(label, str(value))
        if total is not None:
            table.add_section()
            table.add_row("total", str(total))
        self.emit({"nodes": data, "errors": {k: e.message for k, e in result.errors.items()}}, table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        nodes = load_nodes(args.config)
    except SettingsError as exc:
        print(f"appliancectl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.node:
        nodes = [n for n in nodes if n.label in args.node]
        if not nodes:
            print("appliancectl: --node matches no configured node", file=sys.stderr)
            return EXIT_USAGE
    out = Output(as_json=args.json)
    cluster = Cluster(nodes)
    try:
        code = args.handler(cluster, args, out)
    except (ValueError, provision.ProvisionError) as exc:
        print(f"appliancectl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        cluster.close()
    if code is not None:
        return code
    return EXIT_NODE_FAILED if out.failed else EXIT_OK


def _queue_list(cluster: Cluster, args: argparse.Namespace, out: Output, *, history: bool = False) -> None:
    cursor = json.loads(args.cursor) if args.cursor else None
    page = cluster.search(filter=args.filter, limit=args.limit, cursor=cursor, history=history)
    out.errors(page.errors)
    rows = [{"node": label, **plain(item)} for label, item in page.items]
    table = Table(title=f"{'history' if history else 'queue'} ({sum(page.totals.values())} matches)")
    for col in ("node", *QUEUE_COLUMNS):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in ("node", *QUEUE_COLUMNS)])
    out.emit({"items": rows, "cursor": page.cursor, "totals": page.totals}, table)
    if not out.as_json:
        out.console.print(f"next page: --cursor '{json.dumps(page.cursor)}'")


def _queue_count(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    total, result = cluster.count(filter=args.filter)
    out.per_node("matching entries", result, column="count", total=total)


def _queue_shape(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    rows, result = cluster.group_by(filter=args.filter, field=args.field)
    out.errors(result.errors)
    labels = sorted(cluster.nodes)
    table = Table(title=f"queue shape by {args.field}")
    for col in ("key", "total", *labels, "<5m", "<10m", "<20m", "<40m", "<80m", "<160m",
                "<320m", "<640m", "<1280m", "older"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.key, str(r.count), *[str(r.per_node.get(n, 0)) for n in labels],
                      *[str(b) for b in r.buckets])
    out.emit([vars(r) for r in rows], table)


def _queue_preview(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    """`--preview`: what a bulk action would take on each node, nothing changed."""
    previews, errors = cluster.bulk_preview(args.action, filter=args.filter, limit=args.sample)
    out.errors(errors)
    samples = {p.node: [plain(i) for i in p.sample] for p in previews}
    data = {p.node: {"count": p.count, "sample": samples[p.node]} for p in previews}
    table = Table(title=f"{args.action} would take {sum(p.count for p in previews)} entries")
    for col in ("node", *QUEUE_COLUMNS):
        table.add_column(col)
    for p in previews:
        table.add_row(p.node, f"({p.count} entries)", *[""] * (len(QUEUE_COLUMNS) - 1))
        for item in samples[p.node]:
            table.add_row(p.node, *[str(item.get(c, "")) for c in QUEUE_COLUMNS])
    out.emit({"preview": data, "errors": {k: e.message for k, e in errors.items()}}, table)


def _queue_action(cluster: Cluster, args: argparse.Namespace, out: Output) -> int | None:
    if args.preview:
        _queue_preview(cluster, args, out)
        return None
    if not args.yes and args.action in ("bounce", "delete"):
        total, _ = cluster.count(filter=args.filter)
        if not sys.stdin.isatty():
            print("appliancectl: refusing a destructive bulk action without --yes", file=sys.stderr)
            return EXIT_NOT_CONFIRMED
        answer = input(f"{args.action} {total} entries on {len(cluster.nodes)} node(s)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return EXIT_NOT_CONFIRMED
    with Progress(transient=True, disable=out.as_json) as progress:
        progress.add_task(f"{args.action} on {len(cluster.nodes)} node(s)", total=None)
        result = cluster.bulk(args.action, filter=args.filter, duplicate=args.duplicate)
    out.per_node(args.action, result, column="affected",
                 total=sum(int(v) for v in result.values.values()))
    return None


TRASH_COLUMNS = ("id", "msgid", "msgfrom", "msgto", "msgqueue", "msgretries", "msgdeleted",
                 "msgdeletedby")
JOB_COLUMNS = ("node", "id", "action", "filter", "per_minute", "state", "done", "remaining",
               "rate", "eta", "createdby")


def _trash_list(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    cursor = json.loads(args.cursor) if args.cursor else None
    page = cluster.trash(filter=args.filter, limit=args.limit, cursor=cursor)
    out.errors(page.errors)
    rows = [{"node": label, **plain(item)} for label, item in page.items]
    table = Table(title=f"trash ({sum(page.totals.values())} matches)")
    for col in ("node", *TRASH_COLUMNS):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in ("node", *TRASH_COLUMNS)])
    out.emit({"items": rows, "cursor": page.cursor, "totals": page.totals}, table)
    if not out.as_json:
        out.console.print(f"next page: --cursor '{json.dumps(page.cursor)}'")


def _trash_action(cluster: Cluster, args: argparse.Namespace, out: Output) -> int | None:
    act = cluster.trash_restore if args.trash_action == "restore" else cluster.trash_purge
    if args.trash_action == "purge" and not args.yes and not args.preview:
        if not sys.stdin.isatty():
            print("appliancectl: refusing to purge without --yes", file=sys.stderr)
            return EXIT_NOT_CONFIRMED
        answer = input(f"purge matching trash on {len(cluster.nodes)} node(s) for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return EXIT_NOT_CONFIRMED
    result = act(filter=args.filter, preview=args.preview)
    title = f"{args.trash_action}{' (preview)' if args.preview else ''}"
    out.per_node(title, result, column="entries", total=sum(int(v) for v in result.values.values()))
    return None


def _queue_drain(cluster: Cluster, args: argparse.Namespace, out: Output) -> int | None:
    if args.per_minute < 1:
        raise ValueError("--per-minute must be 1 or more")
    result = cluster.drain(filter=args.filter, action=args.drain_action, per_minute=args.per_minute)
    out.per_node(f"drain ({args.drain_action}, {args.per_minute}/min per node)", result,
                 column="job id")
    if args.follow and result.values:
        _follow_jobs(cluster, out, only={label: int(v) for label, v in result.values.items()},
                     interval=args.interval)
    return None


def _queue_jobs(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    if args.cancel is not None:
        result = cluster.job_cancel({label: args.cancel for label in cluster.nodes})
        out.per_node(f"cancel job {args.cancel}", result, column="cancelled")
        return
    if args.follow:
        _follow_jobs(cluster, out, only=None, interval=args.interval)
        return
    rows, errors = cluster.jobs()
    out.errors(errors)
    data = [{"node": label, **plain(job)} for label, job in rows]
    table = Table(title="queue jobs")
    for col in JOB_COLUMNS:
        table.add_column(col)
    for row in data:
        table.add_row(*[str(row.get(c, "")) for c in JOB_COLUMNS])
    out.emit(data, table)


def _follow_jobs(cluster: Cluster, out: Output, *, only: dict[str, int] | None,
                 interval: float) -> None:
    """A progress bar per running job (done of done + remaining, rate, ETA) until none runs."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    tasks: dict[tuple[str, int], Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}/min"), TimeRemainingColumn())
    with Progress(*columns, console=out.console, disable=out.as_json) as progress:
        while True:
            rows, errors = cluster.jobs()
            out.errors(errors)
            running = 0
            for label, job in rows:
                if only is not None and only.get(label) != int(job.id):
                    continue
                if only is None and job.state != "RUNNING" and (label, int(job.id)) not in tasks:
                    continue
                key = (label, int(job.id))
                total = int(job.done) + int(job.remaining)
                if key not in tasks:
                    tasks[key] = progress.add_task(f"{label} #{job.id} {job.action}", total=total,
                                                   rate=job.rate)
                progress.update(tasks[key], completed=int(job.done), total=max(total, 1),
                                rate=job.rate, description=f"{label} #{job.id} {job.action} "
                                                            f"{job.state.lower()}")
                if out.as_json:
                    print(json.dumps({"node": label, **plain(job)}, sort_keys=True), flush=True)
                running += job.state == "RUNNING"
            if not running:
                return
            time.sleep(interval)


def _log_search(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    argv = ["searchlog"] + (["-f"] if args.follow else []) + ["-n", str(args.max), "--", args.text]
    hits = {label: 0 for label in cluster.nodes}
    with Progress(transient=True, disable=out.as_json) as progress:
        task = progress.add_task("searching", total=None)
        for label, chunk in cluster.run_command(argv):
            lines = chunk.decode("utf-8", "replace").splitlines()
            hits[label] += len(lines)
            progress.update(task, description=" ".join(f"{k}:{v}" for k, v in sorted(hits.items())))
            for line in lines:
                print(json.dumps({"node": label, "line": line}) if out.as_json else f"{label}: {line}")
    out.errors(cluster.errors)


def _simple(operation: str, title: str, **fixed: Any):  # type: ignore[no-untyped-def]
    def handler(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
        kwargs = {k: getattr(args, k) for k in vars(args) if k.startswith("arg_")}
        kwargs = {k[4:]: v for k, v in kwargs.items() if v is not None}
        result = cluster.call(operation, **fixed, **kwargs)
        out.errors(result.errors)
        data = {label: plain(_items(v) if not isinstance(v, (str, int, bytes)) else v)
                for label, v in result.values.items()}
        if out.as_json:
            out.emit(data)
            return
        for label, value in sorted(data.items()):
            out.console.rule(f"{title} — {label}")
            if isinstance(value, list):
                for item in value:
                    out.console.print(item)
            else:
                out.console.print(value, markup=False)
    return handler


def _graph(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    import os
    import tempfile

    import rrdtool

    result = cluster.graphs(args.name)
    out.errors(result.errors)
    written = {}
    for label, data in sorted(result.values.items()):
        target = args.png if len(cluster.nodes) == 1 else args.png.replace(".png", f"-{label}.png")
        with tempfile.NamedTemporaryFile(suffix=".rrd", delete=False) as fh:
            fh.write(bytes(data))
        try:
            info = rrdtool.info(fh.name)
            sources = sorted({k.split("[")[1].split("]")[0] for k in info if k.startswith("ds[")})
            defs = [f"DEF:{ds}={fh.name}:{ds}:AVERAGE" for ds in sources]
            lines = [f"LINE1:{ds}#{_colour(i)}:{ds}" for i, ds in enumerate(sources)]
            rrdtool.graph(target, "--start", f"-{args.period}", "--title", f"{args.name} on {label}",
                          "--width", "800", "--height", "250", *defs, *lines)
        finally:
            os.unlink(fh.name)
        written[label] = target
    out.emit(written)


def _colour(i: int) -> str:
    return ["1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f"][i % 8]


def _dkim_list(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.dkim_keys()
    out.errors(result.errors)
    rows = [{"node": label, **plain(item)} for label, items in sorted(result.values.items())
            for item in items]
    table = Table(title="DKIM keys")
    columns = ("node", "domain", "selector", "algorithm", "active", "dnsrecord")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    out.emit(rows, table)


def _dkim_generate(cluster: Cluster, args: argparse.Namespace, out: Output) -> int | None:
    if len(cluster.nodes) != 1:
        print("appliancectl: dkim generate makes a key on one node: name it with --node "
              "(give each node its own selector, or copy the key file)", file=sys.stderr)
        return EXIT_USAGE
    result = cluster.dkim_generate(args.domain, args.selector, args.algorithm)
    out.errors(result.errors)
    data = {label: str(v) for label, v in result.values.items()}
    if out.as_json:
        out.emit(data)
    else:
        for record in data.values():
            print(record)
    return None


def _dkim_delete(cluster: Cluster, args: argparse.Namespace, out: Output) -> int | None:
    if not args.yes:
        print("appliancectl: refusing to delete a signing key without --yes", file=sys.stderr)
        return EXIT_NOT_CONFIRMED
    result = cluster.dkim_delete(args.domain, args.selector)
    out.errors(result.errors)
    out.emit({label: "deleted" for label in result.values})
    return None


def _suspend(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    sid, result = cluster.suspend(filter=args.filter, ttl=ttl_seconds(args.ttl), reason=args.reason,
                                  id=args.id)
    out.errors(result.errors)
    table = Table(title=f"suspension {sid}")
    table.add_column("node")
    table.add_column("id")
    for label, value in sorted(result.values.items()):
        table.add_row(label, str(value))
    out.emit({"id": sid, "nodes": {k: str(v) for k, v in result.values.items()},
              "errors": {k: e.message for k, e in result.errors.items()}}, table)


def _suspensions(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    rows, result = cluster.suspensions(ended=args.ended)
    out.errors(result.errors)
    table = Table(title="suspensions")
    for col in ("id", "filter", "reason", "by", "until", "state", "held", "per node"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.id, r.filter, r.reason, r.author, _stamp(r.expires), r.state, str(r.held),
                      " ".join(f"{k}:{v}" for k, v in sorted(r.per_node.items())))
    out.emit([vars(r) for r in rows], table)


def _unsuspend(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.unsuspend(args.id)
    out.per_node(f"suspension {args.id} removed", result, column="released",
                 total=sum(int(v) for v in result.values.values()))


def _explain(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.explain(args.id)
    if not result.values:
        out.errors(result.errors)
    data = {label: plain(v) for label, v in result.values.items()}
    if out.as_json:
        out.emit(data)
        return
    for label, value in sorted(data.items()):
        out.console.rule(f"queue entry {args.id} on {label}")
        out.console.print(value.get("summary", ""), markup=False)
        for key in ("msgqueue", "waitson", "lastreply", "enhancedcode", "meaning", "suspension",
                    "quarantine", "ratelimit", "destination", "nextretry", "retries", "retriesleft",
                    "age", "lifetime"):
            if value.get(key) not in (None, "", 0):
                out.console.print(f"  {key}: {value[key]}", markup=False)


def _trace(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    merged, result = cluster.timeline(args.msgid)
    out.errors(result.errors)
    rows = [{"node": e.node, "time": e.time, "msgid": e.event.msgid, "queueid": e.event.queueid,
             "kind": e.event.kind, "summary": bytes(e.event.summary or b"").decode("utf-8", "replace"),
             "detail": {p.first: p.second for p in _items(e.event.detail)}} for e in merged]
    table = Table(title=f"timeline of {args.msgid}")
    for col in ("time", "node", "entry", "event", "what"):
        table.add_column(col)
    for r in rows:
        entry = f"{r['msgid'][:8]}:{r['queueid']}" if r["queueid"] else r["msgid"][:8]
        table.add_row(_stamp(r["time"], precise=True), r["node"], entry, r["kind"], r["summary"])
    out.emit(rows, table)


def _alert_list(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.alerts()
    out.errors(result.errors)
    rows = [{"node": label, **plain(item)} for label, value in sorted(result.values.items())
            for item in _items(value)]
    table = Table(title="alerts")
    for col in ("node", "owner", "name", "filter", "threshold", "minutes", "state", "since", "lastcount"):
        table.add_column(col)
    for r in rows:
        table.add_row(*[_stamp(r[c]) if c == "since" else str(r.get(c, "")) for c in
                        ("node", "owner", "name", "filter", "threshold", "minutes", "state", "since",
                         "lastcount")])
    out.emit(rows, table)


def _alert_add(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.alert_add(name=args.name, filter=args.filter, threshold=args.threshold,
                               minutes=args.minutes, mailto=args.mailto, webhook=args.webhook)
    out.per_node(f"alert {args.name} added", result, column="id")


def _alert_delete(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    result = cluster.alert_delete(name=args.name, owner=args.owner)
    out.per_node(f"alert {args.name} deleted", result, column="result")


def _stamp(ts: Any, *, precise: bool = False) -> str:
    import datetime

    if not ts:
        return "-"
    when = datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else when.strftime("%Y-%m-%d %H:%M:%S")


def _provision(cluster: Cluster, args: argparse.Namespace, out: Output) -> None:
    report = provision.apply(cluster, provision.load(args.file))
    out.errors(report.errors)
    out.emit(report.changes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="appliancectl", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="node list (TOML); default ~/.config/appliancectl.toml")
    p.add_argument("--node", action="append", help="only this node (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers()

    q = sub.add_parser("queue", help="the mail queue").add_subparsers()
    lst = q.add_parser("list")
    lst.add_argument("--filter", default="")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--cursor", help="the cursor a previous page printed")
    lst.set_defaults(handler=_queue_list)
    cnt = q.add_parser("count")
    cnt.add_argument("--filter", default="")
    cnt.set_defaults(handler=_queue_count)
    shape = q.add_parser("shape")
    shape.add_argument("--filter", default="")
    shape.add_argument("--field", default="to-domain")
    shape.set_defaults(handler=_queue_shape)
    for action in BULK_OPERATIONS:
        a = q.add_parser(action)
        a.add_argument("--filter", required=True)
        a.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        a.add_argument("--duplicate", action="store_true", help="retry: deliver a copy, keep the original")
        a.add_argument("--preview", action="store_true",
                       help="show what it would take (count and first entries), change nothing")
        a.add_argument("--sample", type=int, default=10, help="entries a preview shows per node")
        a.set_defaults(handler=_queue_action, action=action)
    sus = q.add_parser("suspend", help="hold delivery of matching entries (and new mail) for a time")
    sus.add_argument("filter", help="HQL, e.g. to~%%@dst.example")
    sus.add_argument("--ttl", required=True, help="how long: seconds, or 15m, 2h, 1d")
    sus.add_argument("--reason", default="")
    sus.add_argument("--id", help="the suspension id (default: a new one, the same on every node)")
    sus.set_defaults(handler=_suspend)
    sl = q.add_parser("suspensions", help="active suspensions and what they hold")
    sl.add_argument("--ended", action="store_true", help="also those that have ended")
    sl.set_defaults(handler=_suspensions)
    un = q.add_parser("unsuspend", help="end a suspension now (its entries are released gradually)")
    un.add_argument("id")
    un.set_defaults(handler=_unsuspend)
    ex = q.add_parser("explain", help="why a queue entry is still queued")
    ex.add_argument("id", type=int)
    ex.set_defaults(handler=_explain)
    tr = q.add_parser("trash", help="deleted entries, restorable for queue.trash_hours").add_subparsers()
    tl = tr.add_parser("list")
    tl.add_argument("--filter", default="")
    tl.add_argument("--limit", type=int, default=50)
    tl.add_argument("--cursor", help="the cursor a previous page printed")
    tl.set_defaults(handler=_trash_list)
    for verb in ("restore", "purge"):
        t = tr.add_parser(verb)
        t.add_argument("--filter", required=True)
        t.add_argument("--preview", action="store_true", help="count only, change nothing")
        t.add_argument("--yes", action="store_true", help="purge: do not ask for confirmation")
        t.set_defaults(handler=_trash_action, trash_action=verb)
    dr = q.add_parser("drain", help="retry, bounce or delete matching entries at a bounded rate")
    dr.add_argument("filter")
    dr.add_argument("--action", dest="drain_action", required=True,
                    choices=("retry", "bounce", "delete"))
    dr.add_argument("--per-minute", dest="per_minute", type=int, required=True)
    dr.add_argument("--follow", action="store_true", help="show progress until it is done")
    dr.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    dr.set_defaults(handler=_queue_drain)
    jb = q.add_parser("jobs", help="drain jobs and their progress")
    jb.add_argument("--follow", action="store_true", help="progress bars until none runs")
    jb.add_argument("--cancel", type=int, metavar="ID", help="cancel job ID (use --node)")
    jb.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    jb.set_defaults(handler=_queue_jobs)

    h = sub.add_parser("history", help="the history of final actions")
    h.add_argument("--filter", default="")
    h.add_argument("--limit", type=int, default=50)
    h.add_argument("--cursor")
    h.set_defaults(handler=lambda c, a, o: _queue_list(c, a, o, history=True))

    trc = sub.add_parser("trace", help="every event of a message on every node, in order")
    trc.add_argument("msgid")
    trc.set_defaults(handler=_trace)

    al = sub.add_parser("alerts", help="saved queries with alert thresholds").add_subparsers()
    al.add_parser("list").set_defaults(handler=_alert_list)
    aa = al.add_parser("add")
    aa.add_argument("name")
    aa.add_argument("--filter", required=True)
    aa.add_argument("--threshold", type=int, required=True, help="alert when the count is above this")
    aa.add_argument("--minutes", type=float, default=0.0, help="... for this long")
    aa.add_argument("--mailto", default="", help="mail the alert here (default: [alerts] mail_to)")
    aa.add_argument("--webhook", default="", help="POST the alert as JSON to this URL")
    aa.set_defaults(handler=_alert_add)
    ad = al.add_parser("delete")
    ad.add_argument("name")
    ad.add_argument("--owner", help="another user's alert (admins)")
    ad.set_defaults(handler=_alert_delete)

    lg = sub.add_parser("log").add_subparsers()
    s = lg.add_parser("search")
    s.add_argument("text")
    s.add_argument("--follow", action="store_true")
    s.add_argument("--max", type=int, default=1000)
    s.set_defaults(handler=_log_search)

    st = sub.add_parser("stats", help="counters")
    for k in ("key1", "key2", "key3"):
        st.add_argument(f"--{k}", dest=f"arg_{k}", default="")
    st.add_argument("--limit", dest="arg_limit", type=int, default=100)
    st.set_defaults(handler=_simple("statList", "counters", offset=0))
    rt = sub.add_parser("rates", help="rate() windows")
    rt.add_argument("ns", help="namespace")
    rt.add_argument("--entry", dest="arg_entry", default="")
    rt.add_argument("--limit", dest="arg_limit", type=int, default=100)
    rt.set_defaults(handler=lambda c, a, o: _simple("hslRate", "rates", offset=0, ns=a.ns)(c, a, o))

    sub.add_parser("graph-list", help="graph names per node").set_defaults(
        handler=_simple("graphList", "graphs"))
    g = sub.add_parser("graph", help="render a node graph to PNG")
    g.add_argument("name")
    g.add_argument("--png", required=True)
    g.add_argument("--period", default="1d", help="how far back, rrdtool syntax (1h, 1d, 1w)")
    g.set_defaults(handler=_graph)

    cfg = sub.add_parser("config").add_subparsers()
    show = cfg.add_parser("show")
    show.add_argument("--revision", dest="arg_revision", type=int)
    show.set_defaults(handler=_simple("configTextGet", "config"))
    diff = cfg.add_parser("diff")
    diff.add_argument("from_", type=int, metavar="FROM")
    diff.add_argument("to", type=int)
    diff.set_defaults(handler=lambda c, a, o: _simple(
        "configRevisionDiff", "diff", **{"from": a.from_, "to": a.to})(c, a, o))
    rev = cfg.add_parser("revert")
    rev.add_argument("id", type=int)
    rev.add_argument("--comment", default="revert")
    rev.set_defaults(handler=lambda c, a, o: _simple(
        "configRevisionRevert", "reverted", id=a.id, comment=a.comment)(c, a, o))
    log = cfg.add_parser("log")
    log.add_argument("--limit", dest="arg_limit", type=int, default=20)
    log.set_defaults(handler=_simple("configRevisionLog", "revisions", offset=0))

    cl = sub.add_parser("cluster").add_subparsers()
    cl.add_parser("nodes").set_defaults(handler=_simple("clusterNodeList", "cluster nodes"))

    u = sub.add_parser("user").add_subparsers()
    u.add_parser("list").set_defaults(handler=_simple("userList", "users"))

    dk = sub.add_parser("dkim", help="DKIM signing keys").add_subparsers()
    dk.add_parser("list").set_defaults(handler=_dkim_list)
    gen = dk.add_parser("generate", help="a new key on one node (--node); prints its DNS record")
    gen.add_argument("domain")
    gen.add_argument("selector")
    gen.add_argument("--algorithm", default="rsa", choices=("rsa", "ed25519"))
    gen.set_defaults(handler=_dkim_generate)
    rm = dk.add_parser("delete")
    rm.add_argument("domain")
    rm.add_argument("selector")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(handler=_dkim_delete)

    pv = sub.add_parser("provision", help="apply a declarative description to every node")
    pv.add_argument("file")
    pv.set_defaults(handler=_provision)
    return p


if __name__ == "__main__":
    sys.exit(main())
