"""The node's log: one syslog-like line per record, in size-rotated files under the log directory.

Line format: `<ISO 8601 UTC time> <hostname> appliance[<pid>]: <logger>: <message>`. Newlines and
other control characters inside a message are escaped (`\\n`, `\\xNN`), so one record is exactly
one line and `searchlog` can treat files as lines. Files: `appliance.log` (current), then
`appliance.log.1` (newer) ... `appliance.log.N` (oldest), as logging's RotatingFileHandler names
them. Each line is one O_APPEND write, so lines never interleave; rotation is done by the one
process that owns the files (other processes of the node should log to syslog).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import re
import socket
import traceback
from pathlib import Path
from typing import Any

LOG_NAME = "appliance.log"
_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}
_ROTATED = re.compile(re.escape(LOG_NAME) + r"\.(\d+)$")
# A message id, or `msgid:queueid`, as the node's messages write them ("delivered <id>:<n> ...").
_MSG_KEY = re.compile(r"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?::(\d+))?")


class NodeLogFormatter(logging.Formatter):
    """`<time> <host> appliance[<pid>]: <logger>: <message>` with control characters escaped."""

    def __init__(self, hostname: str | None = None, *, with_time: bool = True) -> None:
        super().__init__()
        self.hostname = hostname or socket.gethostname()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + "".join(traceback.format_exception(*record.exc_info)).strip()
        # Records of a node's child processes name it (appliance/smtp-1[pid]), as Postfix does.
        role = getattr(record, "role", None)
        program = f"appliance/{role}" if role else "appliance"
        body = f"{program}[{record.process or os.getpid()}]: {record.name}: {escape(message)}"
        if not self.with_time:  # syslog stamps time and host itself (RFC 3164 section 4.1.2)
            return body
        return f"{format_time(record.created)} {self.hostname} {body}"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line for syslog/journald collectors, with the message's ids as keys:
    `{"ts", "host", "pid", "level", "logger", "msg", "msgid"?, "queueid"?}`."""

    def __init__(self, hostname: str | None = None) -> None:
        super().__init__()
        self.hostname = hostname or socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + "".join(traceback.format_exception(*record.exc_info)).strip()
        fields: dict[str, Any] = {
            "ts": format_time(record.created), "host": self.hostname,
            "pid": record.process or os.getpid(), "level": record.levelname.lower(),
            "logger": record.name, "msg": message,
        }
        found = _MSG_KEY.search(message)
        if found:
            fields["msgid"] = found.group(1)
            if found.group(2):
                fields["queueid"] = int(found.group(2))
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def escape(text: str) -> str:
    # Most messages have nothing to escape; isprintable() is a fast C scan.
    return text if text.isprintable() else text.translate(_CONTROL)


def format_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="microseconds")


def line_time(line: bytes) -> float | None:
    """The Unix time a node-log line starts with, or None when it does not start with one."""
    stamp = line[:40].split(b" ", 1)[0]
    try:
        return dt.datetime.fromisoformat(stamp.decode("ascii")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def log_files(log_dir: Path) -> list[Path]:
    """The node's log files, oldest first (the current file last)."""
    rotated = []
    if log_dir.is_dir():
        for entry in log_dir.iterdir():
            m = _ROTATED.match(entry.name)
            if m and entry.is_file():
                rotated.append((int(m.group(1)), entry))
    files = [p for _, p in sorted(rotated, reverse=True)]
    current = log_dir / LOG_NAME
    if current.is_file():
        files.append(current)
    return files


class RotatingLogFile(logging.Handler):
    """Appends each record as one write(2) to `path` (O_APPEND), renaming it to `path.1` ...
    `path.N` past `max_bytes`, as logging's RotatingFileHandler names them.

    RotatingFileHandler formats every record twice, stats the file and asks a text stream for
    its position on every record; this keeps the size itself and writes bytes once.
    """

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__()
        self.path, self.max_bytes, self.backup_count = Path(path), max_bytes, backup_count
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(self._fd).st_size

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            os.write(self._fd, data)
            self._size += len(data)
        except Exception:  # logging must never take the caller down (logging.Handler contract)
            self.handleError(record)

    def reopen(self) -> None:
        """Open the path anew: after logrotate renamed the file (SIGHUP/SIGUSR1)."""
        self.acquire()
        try:
            if self._fd >= 0:
                os.close(self._fd)
            self._open()
        finally:
            self.release()

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for n in range(self.backup_count - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            self.release()
        super().close()


class NodeLog:
    """Installs the node-log handlers on a logger (the root logger by default); start()/stop()."""

    def __init__(
        self, log_dir: Path, *, max_bytes: int = 64 * 1024 * 1024, backup_count: int = 20,
        syslog_address: str | tuple[str, int] | None = None, level: int = logging.INFO,
        logger: logging.Logger | None = None, hostname: str | None = None,
        line_format: str = "text", stderr: bool = False,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.max_bytes, self.backup_count = max_bytes, backup_count
        self.syslog_address = syslog_address
        self.level = level
        self.logger = logger or logging.getLogger()
        self.hostname = hostname
        self.line_format = line_format
        self.stderr = stderr
        self._handlers: list[logging.Handler] = []
        self._previous_level: int | None = None

    @property
    def path(self) -> Path:
        return self.log_dir / LOG_NAME

    def start(self) -> None:
        if self._handlers:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handler = RotatingLogFile(self.path, max_bytes=self.max_bytes, backup_count=self.backup_count)
        handler.setFormatter(NodeLogFormatter(self.hostname))
        self._handlers.append(handler)
        if self.syslog_address is not None:
            syslog = logging.handlers.SysLogHandler(
                address=self.syslog_address, facility=logging.handlers.SysLogHandler.LOG_MAIL
            )
            syslog.setFormatter(self._stream_formatter(with_time=False))
            self._handlers.append(syslog)
        if self.stderr:  # journald stamps each line itself, like syslog
            console = logging.StreamHandler()
            console.setFormatter(self._stream_formatter(with_time=False))
            self._handlers.append(console)
        for h in self._handlers:
            h.setLevel(self.level)
            self.logger.addHandler(h)
        self._previous_level = self.logger.level
        if self.logger.getEffectiveLevel() > self.level:
            self.logger.setLevel(self.level)

    def _stream_formatter(self, *, with_time: bool) -> logging.Formatter:
        """Syslog and journald lines: the file's format, or JSON lines (`log.format = "json"`)."""
        if self.line_format == "json":
            return JsonLineFormatter(self.hostname)
        return NodeLogFormatter(self.hostname, with_time=with_time)

    def reopen(self) -> None:
        """Reopen the log file (logrotate's postrotate sends SIGHUP or SIGUSR1)."""
        for h in self._handlers:
            if isinstance(h, RotatingLogFile):
                h.reopen()

    def stop(self) -> None:
        for h in self._handlers:
            self.logger.removeHandler(h)
            h.close()
        self._handlers.clear()
        if self._previous_level is not None:
            self.logger.setLevel(self._previous_level)
            self._previous_level = None


def syslog_address(text: str) -> str | tuple[str, int] | None:
    """`/dev/log` (a socket path), `HOST:PORT` (UDP), or "" for none."""
    if not text:
        return None
    if text.startswith("/"):
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"log.syslog must be a socket path or HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)
