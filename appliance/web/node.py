"""The API process's site: SOAP with /healthz, /readyz and /metrics beside it, for one node."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.soap.auth import Authenticator
from appliance.stats.metrics import CONTENT_TYPE, exposition
from appliance.web.health import Health
from appliance.web.site import Site, WsgiApp


class NodeState:
    """What the supervisor published in run/ports.json: its children, and the SMTP listeners
    it holds bound."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "run" / "ports.json"

    def _read(self) -> dict[str, Any]:
        try:
            value = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def processes(self) -> dict[str, bool]:
        state = self._read()
        if not state:
            return {"supervisor": False}  # not written yet: the node is still starting
        pids = {"supervisor": state.get("pid"), **(state.get("children") or {})}
        return {name.removeprefix("appliance "): _alive(pid) for name, pid in pids.items()}

    def listeners(self, config: Config) -> dict[str, bool]:
        bound = self._read().get("smtp") or {}
        return {lst.id: lst.id in bound for lst in config.listeners}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def node_site(gateway: WsgiApp, authenticator: Authenticator, *, store: Store, data_dir: Path,
              spool_dir: Path, config: Callable[[], Config],
              config_applied: Callable[[], bool], console: WsgiApp | None = None) -> Site:
    state = NodeState(data_dir)
    api = config().api
    health = Health(
        store=store, spool_dir=spool_dir, min_free_bytes=api.ready_min_free_bytes,
        processes=state.processes, listeners=lambda: state.listeners(config()),
        config_applied=config_applied,
    )
    return Site(gateway, health=health, authenticator=authenticator,
                metrics=lambda: exposition(store), metrics_content_type=CONTENT_TYPE,
                metrics_loopback_open=api.metrics_loopback_open, console=console)
