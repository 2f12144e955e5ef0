"""What the config watcher needs beside the store: this node's public URL, joining the cluster
the config names. Built into each process by appliance.compose."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from appliance.cluster.service import ClusterService
from appliance.cluster.shared import StoreRouter
from appliance.config.schema import Config

log = logging.getLogger(__name__)


def public_url(config: Config, *, data_dir: Path, soap_listen: str) -> str:
    """The API's URL as other nodes and clients reach it: the configured public URL, else the
    one the supervisor reported (run/ports.json: with port 0 or in another process, the
    address the API child really got), else the listen address."""
    api = config.api
    if api.public_url:
        return api.public_url
    reported = reported_api_url(data_dir)
    if reported:
        return reported
    listen = (soap_listen or api.listen).rstrip("/")
    return f"{listen}/remote/"


def reported_api_url(data_dir: Path) -> str:
    try:
        ports = json.loads((Path(data_dir) / "run" / "ports.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(ports.get("api_url") or "") if isinstance(ports, dict) else ""


def join_from_config(service: ClusterService, router: StoreRouter, dsn: str) -> None:
    """`[cluster] dsn` in the config: join (or create) that cluster once, at start."""
    if not dsn or router.membership() is not None:
        return
    try:
        try:
            service.join(dsn)
        except LookupError:
            service.create(dsn)
    except Exception as exc:
        log.error("could not join the cluster named in [cluster] dsn: %s", exc)
