"""`searchlog [-a TIME] [-f] [-n MAX] -- TEXT`: matching lines of the node's log, oldest first.

Files are streamed in 1 MiB blocks and searched with bytes.find, so only matching lines become
Python objects; with -a the rotated files that end before TIME are skipped and the first file
is entered by bisecting on line times (lines are written in time order). -f then follows the
current file across rotations until the command is stopped (or `q` / ^C is pushed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal, positive_int, wait_or_quit
from appliance.nodelog import LOG_NAME, line_time, log_files

BLOCK = 1024 * 1024
MAX_LINE = 1024 * 1024  # a "line" longer than this is cut (a log line never is)
_FOLLOW_INTERVAL = 0.25
_MTIME_SLACK = 2.0


@dataclasses.dataclass(frozen=True)
class Args:
    text: bytes
    after: float | None
    follow: bool
    max_lines: int | None


def parse_time(text: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it names an offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"TIME must be Unix seconds or ISO 8601 (2024-05-01T12:00:00), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("searchlog")
    p.add_argument("-a", dest="after", type=parse_time, metavar="TIME")
    p.add_argument("-f", dest="follow", action="store_true")
    p.add_argument("-n", dest="max_lines", type=positive_int, metavar="MAX")
    p.add_argument("text", nargs="+", metavar="TEXT")
    ns = p.parse_argv(argv)
    text = " ".join(ns.text)
    if not text.strip() or "\n" in text or "\r" in text:
        p.error("TEXT must be one non-empty line")
    return Args(text=text.encode(), after=ns.after, follow=ns.follow, max_lines=ns.max_lines)


def matching_lines(fh: BinaryIO, needle: bytes, *, start: int = 0, final: bool = True) -> Iterator[bytes]:
    """Lines containing `needle`, read from `start` in blocks; without `final` the unterminated
    last line is left unread (the reader may be following a file that is being written)."""
    fh.seek(start)
    carry = b""
    while block := fh.read(BLOCK):
        buf = carry + block
        end = buf.rfind(b"\n") + 1
        if end == 0:
            carry = buf[-MAX_LINE:]
            continue
        carry = buf[end:]
        yield from _hits(buf, needle, end)
    if carry and final and needle in carry:
        yield carry
    elif carry and not final:
        fh.seek(-len(carry), os.SEEK_CUR)


def _hits(buf: bytes, needle: bytes, end: int) -> Iterator[bytes]:
    pos = 0
    while (hit := buf.find(needle, pos, end)) != -1:
        line_start = buf.rfind(b"\n", 0, hit) + 1
        line_end = buf.find(b"\n", hit, end)
        yield buf[line_start:line_end]
        pos = line_end + 1


def first_offset_at(fh: BinaryIO, when: float, size: int) -> int:
    """The offset of the first line stamped at or after `when` (bisecting, then a short scan)."""
    lo, hi = 0, size
    while hi - lo > 64 * 1024:
        mid = (lo + hi) // 2
        offset, stamp = _line_after(fh, mid)
        if stamp is not None and stamp < when and offset < hi:
            lo = offset
        else:
            hi = mid
    offset = _line_start(fh, lo)
    fh.seek(offset)
    while offset < size:
        line = fh.readline(MAX_LINE)
        stamp = line_time(line)
        if stamp is None or stamp >= when:
            return offset
        offset += len(line)
    return size


def _line_start(fh: BinaryIO, pos: int) -> int:
    """The start of the first whole line at or after `pos`."""
    if pos == 0:
        return 0
    fh.seek(pos - 1)
    return pos - 1 + len(fh.readline(MAX_LINE))


def _line_after(fh: BinaryIO, pos: int) -> tuple[int, float | None]:
    start = _line_start(fh, pos)
    fh.seek(start)
    return start, line_time(fh.readline(MAX_LINE))


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    budget = [args.max_lines]
    files = open_log_files(ctx.log_dir)
    try:
        current = files.pop() if args.follow and files and files[-1][0] == LOG_NAME else None
        for _, fh in files:
            if not _search(fh, os.fstat(fh.fileno()).st_size, args, term, budget, final=True):
                return
        if not args.follow:
            return
        live = current[1] if current else None
        if live is not None and not _search(live, os.fstat(live.fileno()).st_size, args, term,
                                            budget, final=False):
            return
        current = None  # _follow owns it now
        _follow(ctx.log_dir / LOG_NAME, args.text, term, budget, live)
    finally:
        for _, fh in files + ([current] if current else []):
            fh.close()


def open_log_files(log_dir: Path, *, attempts: int = 5) -> list[tuple[str, BinaryIO]]:
    """Every log file opened at once, oldest first, so that a rotation while searching (which
    renames them all) changes nothing; retried when one happened while they were being opened."""
    for _ in range(attempts):
        opened = [(p.name, fh) for p in log_files(log_dir) if (fh := _open(p)) is not None]
        inodes = [os.fstat(fh.fileno()).st_ino for _, fh in opened]
        if [s.st_ino for p in log_files(log_dir) if (s := _stat(p))] == inodes:
            return opened
        for _, fh in opened:
            fh.close()
    return [(p.name, fh) for p in log_files(log_dir) if (fh := _open(p)) is not None]


def _search(fh: BinaryIO, size: int, args: Args, term: Terminal, budget: list[int | None],
            *, final: bool) -> bool:
    # mtime comes from a coarse kernel clock and may trail the last line's stamp by a few ms.
    if args.after is not None and os.fstat(fh.fileno()).st_mtime < args.after - _MTIME_SLACK:
        fh.seek(size)  # every line is older than TIME
        return True
    start = first_offset_at(fh, args.after, size) if args.after is not None else 0
    return _emit_all(term, matching_lines(fh, args.text, start=start, final=final), budget)


def _emit(term: Terminal, line: bytes, budget: list[int | None]) -> bool:
    term.write(line + b"\n")
    if budget[0] is not None:
        budget[0] -= 1
        return budget[0] > 0
    return True


def _follow(path: Path, needle: bytes, term: Terminal, budget: list[int | None],
            fh: BinaryIO | None) -> None:
    """Read new lines as they are written; a new inode or a shrunk file means it was rotated.

    `fh` is the current file as searched so far (positioned after its last whole line).
    """
    inode = os.fstat(fh.fileno()).st_ino if fh is not None else None
    offset = fh.tell() if fh is not None else 0
    try:
        while True:
            stat = _stat(path)
            if stat is not None and (fh is None or stat.st_ino != inode or stat.st_size < offset):
                # Open before deciding: the name may be rotated again between stat and open.
                fresh = _open(path)
                if fresh is not None:
                    now = os.fstat(fresh.fileno())
                    if fh is not None:  # drain what the old file got before it was renamed
                        ok = _emit_all(term, matching_lines(fh, needle, start=offset), budget)
                        fh.close()
                        if not ok or (now.st_ino != inode and not _emit_between(
                                path.parent, inode, now.st_ino, needle, term, budget)):
                            fresh.close()
                            return
                    offset = offset if now.st_ino == inode and now.st_size >= offset else 0
                    fh, inode = fresh, now.st_ino
            if fh is not None:
                if not _emit_all(term, matching_lines(fh, needle, start=offset, final=False), budget):
                    return
                offset = fh.tell()
            wait_or_quit(term, _FOLLOW_INTERVAL)
    finally:
        if fh is not None:
            fh.close()


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _emit_between(log_dir: Path, old: int | None, new: int, needle: bytes, term: Terminal,
                  budget: list[int | None]) -> bool:
    """Files rotated in between two looks (several rotations within one interval), in order.

    When the followed file itself was already deleted (more rotations than backups within one
    interval), the files in between cannot be told apart and are skipped.
    """
    files = [(p, s.st_ino) for p in log_files(log_dir) if (s := _stat(p)) is not None]
    inodes = [i for _, i in files]
    if old not in inodes or new not in inodes:
        return True
    for p, _ in files[inodes.index(old) + 1:inodes.index(new)]:
        with open(p, "rb") as fh:
            if not _emit_all(term, matching_lines(fh, needle), budget):
                return False
    return True


def _emit_all(term: Terminal, lines: Iterator[bytes], budget: list[int | None]) -> bool:
    return all(_emit(term, line, budget) for line in lines)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def names(args: Args) -> list[tuple[str, str]]:
    return [("msgid", args.text.decode())]


SPEC = CommandSpec(
    name="searchlog",
    usage="searchlog [-a TIME] [-f] [-n MAX] -- TEXT",
    description="Show the node's log lines containing TEXT, oldest first; -a from TIME (Unix "
    "seconds or ISO 8601) on, -n at most MAX lines, -f keep following new lines (push q to end)",
    parse=parse,
    run=run,
    reads_only=True,
    names=names,
)
