"""One child process of a node: forked by the fork server (`run_forked`), or started as
`appliance child ROLE` (`run_child`), by the supervisor only.

The supervisor hands over, in the APPLIANCE_CHILD environment variable (JSON): the pipe to
log to and report on (`log_fd`), its own pid (`parent`), and for receivers the listening
sockets it bound (`listen`: listener id -> file descriptor).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from appliance import crashpoint
from appliance.process import logpipe
from appliance.settings import Settings

log = logging.getLogger(__name__)

ENV = "APPLIANCE_CHILD"
_PR_SET_PDEATHSIG = 1
SUPERVISOR_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")  # systemd's, for it only


def title(role: str, index: int) -> str:
    """The name a child has in ps and in the node log."""
    return f"appliance {role} {index}" if role == "smtp" else f"appliance {role}"


def die_with_parent(parent: int) -> None:
    """The kernel kills this process when the supervisor dies (even by kill -9), so a crashed
    supervisor never leaves receivers holding its listening sockets."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def run_forked(request: dict[str, Any], fds: list[int]) -> int:
    """A child in a process the fork server forked: `fds` are its log pipe, then the listening
    sockets `request["listen"]` numbers (from 1)."""
    spec = {"log_fd": fds[0], "parent": int(request["parent"]),
            "listen": {lid: fds[int(i)] for lid, i in request["listen"].items()}}
    os.environ[ENV] = json.dumps(spec)
    for name in SUPERVISOR_ONLY_ENV:
        os.environ.pop(name, None)
    given = request["settings"]
    settings = Settings(
        data_dir=Path(given["data_dir"]), database_url=str(given["database_url"]),
        smtp_listen=_hostport(given.get("smtp_listen")), relay=_hostport(given.get("relay")),
        soap_listen=given.get("soap_listen"), spool_grace=float(given["spool_grace"]))
    return run_child(settings, str(request["role"]), int(request["index"]))


def _hostport(value: Any) -> tuple[str, int] | None:
    return None if value is None else (str(value[0]), int(value[1]))


def run_child(settings: Settings, role: str, index: int) -> int:
    from appliance import compose
    from appliance.db.engine import Store

    spec: dict[str, Any] = json.loads(os.environ.get(ENV, "{}"))
    if "parent" in spec:
        die_with_parent(int(spec["parent"]))
    crashpoint.arm_from_environment(supervisor=int(spec["parent"]) if "parent" in spec else None)
    log_fd = spec.get("log_fd")
    _log_to_pipe(log_fd)
    try:
        import setproctitle

        setproctitle.setproctitle(title(role, index))
    except ImportError:
        pass
    if role not in compose.ROLES:
        raise ValueError(f"unknown child role {role!r}")
    sockets = {name: socket.socket(fileno=int(fd))
               for name, fd in (spec.get("listen") or {}).items()}
    # The supervisor made the store, serial and first admin already.
    store = Store(settings.database_url)
    core = compose.build_core(settings, role=role, store=store, serial=compose.read_serial(store),
                              announce=lambda kind: logpipe.control(log_fd, kind))
    parts = compose.build_child(role, core, sockets)

    def ready() -> None:
        fields: dict[str, Any] = {}
        if isinstance(parts, compose.ApiParts):
            fields["api_url"], fields["api_port"] = parts.soap.url, parts.soap.port
        logpipe.control(log_fd, "ready", **fields)
        log.info("%s running", title(role, index))

    asyncio.run(compose.run(parts, ready=ready))
    return 0


def _log_to_pipe(fd: int | None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    out: logging.Handler = logpipe.PipeHandler(fd) if fd is not None \
        else logging.StreamHandler(sys.stderr)
    out.setLevel(logging.INFO)
    root.addHandler(out)
    root.setLevel(logging.INFO)
