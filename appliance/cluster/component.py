"""The config watcher as a node component (appliance.wiring: COMPONENT_FACTORIES)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from appliance.cluster.service import ClusterService
from appliance.cluster.shared import StoreRouter
from appliance.config.holder import ConfigHolder
from appliance.cluster.configservice import ConfigService
from appliance.cluster.watcher import ConfigWatcher, initial_running

log = logging.getLogger(__name__)


def component(node: Any) -> ConfigWatcher:
    """Seeds/loads the running revision, sets it on the node, and follows the store.

    Leaves `node.config_service`, `node.cluster_service` and `node.config_holder` for the SOAP
    services and other parts. Must come before the parts that read `node.config` when built.
    """
    router = StoreRouter(node.store)
    # In a node of processes only housekeeping speaks for the node in the cluster (heartbeats,
    # last good revision, joining); the other children only follow the revisions.
    leader = getattr(node, "role", "node") in ("node", "housekeeping")
    path: Path | None = node.settings.config_path
    file_text = Path(path).read_text(encoding="utf-8") if path is not None else None
    running = initial_running(router, node.serial, file_text=file_text)
    holder = ConfigHolder(running)
    node.follow(holder)

    def identity() -> tuple[str, str]:
        return holder.config.node.name, _public_url(node, holder)

    watcher = ConfigWatcher(router, holder, node.serial, identity=identity, clock=time.time,
                            follower=not leader)
    if hasattr(node, "on_config_changed"):
        node.on_config_changed(watcher.wake)
    def committed() -> None:
        watcher.wake()
        announce = getattr(node, "announce", None)
        if announce is not None:  # the other processes of the node look at once too
            announce("config")

    node.config_service = ConfigService(router, node.serial, on_commit=committed)
    node.cluster_service = ClusterService(
        router, node.serial, identity, running_revision=lambda: holder.running.revision,
        stale_after=running.config.cluster.stale_after, on_change=watcher.wake,
    )
    if leader:
        _join_from_config(node, running.config.cluster.dsn)
    log.info("running config revision %d", running.revision)
    return watcher


def _public_url(node: Any, holder: ConfigHolder) -> str:
    api = holder.config.api
    if api.public_url:
        return api.public_url
    reported = _reported_api_url(node)
    if reported:
        return reported
    listen = str(getattr(node, "soap_listen", "") or api.listen).rstrip("/")
    return f"{listen}/remote/"


def _reported_api_url(node: Any) -> str:
    """The API's URL as the supervisor last reported it (run/ports.json): with port 0 or in
    another process, the address the API child really got."""
    try:
        ports = json.loads((Path(node.settings.data_dir) / "run" / "ports.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(ports.get("api_url") or "")


def _join_from_config(node: Any, dsn: str) -> None:
    """`[cluster] dsn` in the config: join (or create) that cluster once, at start."""
    if not dsn or node.config_service.router.membership() is not None:
        return
    service: ClusterService = node.cluster_service
    try:
        try:
            service.join(dsn)
        except LookupError:
            service.create(dsn)
    except Exception as exc:
        log.error("could not join the cluster named in [cluster] dsn: %s", exc)
