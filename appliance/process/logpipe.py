"""Children's log records and control messages travel to the supervisor as JSON lines on a pipe.

The supervisor is the node log's one writer (it rotates the files), so lines of several
processes never interleave and rotation never races. A control message is a line with a
"ctl" key (ready, a bound port); every other line is a log record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO


class PipeHandler(logging.Handler):
    """Writes each record as one JSON line to `fd` (one write(2), so lines stay whole)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += " | " + "".join(traceback.format_exception(*record.exc_info)).strip()
            send(self.fd, {"name": record.name, "level": record.levelno, "msg": message,
                           "created": record.created})
        except Exception:  # logging must never take the caller down
            self.handleError(record)


def send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8", "replace")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def control(fd: int | None, kind: str, **fields: Any) -> None:
    """Tell the supervisor something (a no-op when the process runs without one)."""
    if fd is not None:
        send(fd, {"ctl": kind, **fields})


class PipeReader:
    """Reads one child's pipe on a thread: records go to logging as the child's, control
    messages to `on_control(message)`. Ends at EOF (the child exited)."""

    def __init__(self, stream: BinaryIO, *, role: str, pid: int,
                 on_control: Callable[[dict[str, Any]], None]) -> None:
        self.stream = stream
        self.role = role
        self.pid = pid
        self.on_control = on_control
        self.thread = threading.Thread(target=self._run, name=f"log-{role}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        with self.stream:
            for line in self.stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {"name": "stdout", "level": logging.INFO,
                               "msg": line.decode("utf-8", "replace").rstrip("\n")}
                if "ctl" in message:
                    self.on_control(message)
                    continue
                record = logging.makeLogRecord({
                    "name": str(message.get("name", "?")), "levelno": int(message.get("level", 20)),
                    "levelname": logging.getLevelName(int(message.get("level", 20))),
                    "msg": str(message.get("msg", "")), "args": None, "process": self.pid,
                    "role": self.role,
                })
                if "created" in message:
                    record.created = float(message["created"])
                logging.getLogger(record.name).handle(record)
