"""A part only a node of several processes has: housekeeping's check that the supervisor bound
the listeners a new revision asks for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from appliance.config.schema import Config


class ListenerCheck:
    """Housekeeping speaks for the node: a revision whose new SMTP listeners this node's
    supervisor cannot bind (another process holds the port) is refused, with the reason in the
    node's heartbeat, instead of being reported as running while nothing listens. The
    supervisor follows the same revision and publishes in run/ports.json what it bound, or
    the listener set it could not bind; this waits for that answer."""

    def __init__(self, data_dir: Path, *, within: float = 30.0) -> None:
        self.ports_file = Path(data_dir) / "run" / "ports.json"
        self.within = within

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def apply(self, old: Config, new: Config) -> None:
        before = {(lst.id, lst.address, lst.port) for lst in old.listeners}
        wanted = [(lst.id, lst.port) for lst in new.listeners
                  if (lst.id, lst.address, lst.port) not in before and lst.port != 0]
        deadline = time.monotonic() + self.within
        while wanted:
            ports = self._ports()
            held = ports.get("smtp") or {}
            wanted = [(lid, port) for lid, port in wanted if held.get(lid) != port]
            refused = ports.get("refused") or {}
            if any([lid, port] in refused.get("listeners", []) for lid, port in wanted):
                raise ValueError(str(refused.get("error") or "SMTP listeners cannot be bound"))
            if not wanted:
                return
            if time.monotonic() > deadline:
                raise ValueError(f"SMTP listener {wanted[0][0]} was not bound on port "
                                 f"{wanted[0][1]} within {self.within:.0f} s")
            time.sleep(0.05)

    def _ports(self) -> dict[str, Any]:
        try:
            value = json.loads(self.ports_file.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

