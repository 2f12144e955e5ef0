"""One child process of a node: `appliance child ROLE`, started by the supervisor only.

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
from typing import Any

from appliance import crashpoint
from appliance.process import logpipe
from appliance.settings import Settings

log = logging.getLogger(__name__)

ENV = "APPLIANCE_CHILD"
_PR_SET_PDEATHSIG = 1

# What each role builds, in start order (stop runs in reverse); see appliance.wiring.
ROLE_FACTORIES: dict[str, tuple[str, ...]] = {
    "smtp": (
        "appliance.cluster.component:component",
        "appliance.stats.component:component",
        "appliance.policy.component:component",
        "appliance.process.roles:wake_sender",
        "appliance.smtp.server:component",
    ),
    "delivery": (
        "appliance.cluster.component:component",
        "appliance.stats.component:component",
        "appliance.policy.component:component",
        "appliance.wiring:delivery_component",
        "appliance.process.roles:wake_listener",
    ),
    "api": (
        "appliance.cluster.component:component",
        "appliance.stats.component:component",
        "appliance.policy.component:component",
        "appliance.process.roles:wake_sender",
        "appliance.commands.component:component",
        "appliance.soap.server:component",
    ),
    "housekeeping": (
        "appliance.cluster.component:component",
        "appliance.stats.component:component",
        "appliance.process.roles:rate_server",
        "appliance.process.roles:listener_check",
        "appliance.queue.sweep:component",  # spool repair at start and hourly
        "appliance.queue.keeper:trash_purger",  # expired trash, every minute at most
        "appliance.queue.keeper:drain_runner",  # throttled drain jobs, every second
        "appliance.process.roles:wake_sender",
    ),
}


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


def run_child(settings: Settings, role: str, index: int) -> int:
    from appliance.wiring import Node

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
    if role not in ROLE_FACTORIES:
        raise ValueError(f"unknown child role {role!r}")
    node = Node(settings, factories=ROLE_FACTORIES[role], role=role)
    node.listen_sockets = {
        name: socket.socket(fileno=int(fd)) for name, fd in (spec.get("listen") or {}).items()
    }
    node.announce = lambda kind: logpipe.control(log_fd, kind)
    node.attach()

    def ready() -> None:
        fields: dict[str, Any] = {}
        for component in node.components:
            url = getattr(component, "url", None)
            if role == "api" and isinstance(url, str):
                fields["api_url"], fields["api_port"] = url, int(getattr(component, "port"))
        logpipe.control(log_fd, "ready", **fields)
        log.info("%s running", title(role, index))

    asyncio.run(_run(node, ready))
    return 0


async def _run(node: Any, ready: Any) -> None:
    loop = asyncio.get_running_loop()
    # SIGHUP: look at the config store now (the supervisor re-read the config file).
    loop.add_signal_handler(signal.SIGHUP, node.config_changed)
    await node.run(ready=ready)


def _log_to_pipe(fd: int | None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    out: logging.Handler = logpipe.PipeHandler(fd) if fd is not None \
        else logging.StreamHandler(sys.stderr)
    out.setLevel(logging.INFO)
    root.addHandler(out)
    root.setLevel(logging.INFO)
