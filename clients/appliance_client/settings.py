"""Where appliancectl finds its nodes: a TOML file or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
import tomllib
from pathlib import Path

from appliance_client.node import NodeSpec

DEFAULT_PATH = Path("~/.config/appliancectl.toml")


class SettingsError(ValueError):
    pass


def load_nodes(path: str | None, *, env: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """Nodes from `path` (or $APPLIANCECTL_CONFIG, or ~/.config/appliancectl.toml), else from
    $APPLIANCECTL_NODES (comma-separated URLs) with $APPLIANCECTL_USER / $APPLIANCECTL_PASSWORD.

    File format::

        [defaults]            # any NodeSpec field, for every node
        username = "admin"
        password = "..."
        ca_file = "/etc/appliance/ca.pem"
        [[nodes]]
        name = "mx1"
        url = "https://10.0.0.5:8443/remote/"
    """
    env_: Mapping[str, str] = os.environ if env is None else env
    chosen = path or env_.get("APPLIANCECTL_CONFIG")
    file = Path(chosen).expanduser() if chosen else DEFAULT_PATH.expanduser()
    if chosen or file.exists():
        return _from_file(file)
    urls = [u.strip() for u in env_.get("APPLIANCECTL_NODES", "").split(",") if u.strip()]
    if not urls:
        raise SettingsError("no nodes: write ~/.config/appliancectl.toml or set APPLIANCECTL_NODES")
    return [
        NodeSpec(url=u, username=env_.get("APPLIANCECTL_USER", "admin"),
                 password=env_.get("APPLIANCECTL_PASSWORD", ""),
                 verify=env_.get("APPLIANCECTL_VERIFY", "1") not in ("0", "false", "no"),
                 ca_file=env_.get("APPLIANCECTL_CA_FILE") or None)
        for u in urls
    ]


def _from_file(file: Path) -> list[NodeSpec]:
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"{file}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{file}: {exc}") from exc
    defaults = data.get("defaults", {})
    nodes = data.get("nodes", [])
    if not nodes:
        raise SettingsError(f"{file}: no [[nodes]]")
    try:
        return [NodeSpec(**{**defaults, **node}) for node in nodes]
    except TypeError as exc:
        raise SettingsError(f"{file}: {exc}") from exc
