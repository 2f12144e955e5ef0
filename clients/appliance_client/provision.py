"""Declarative provisioning: users and config keys applied to every node, idempotently.

File format (TOML)::

    [[users]]
    name = "ops"
    password = "..."
    role = "readonly"        # admin | readonly | custom

    [config]                 # dotted config keys and their values
    "queue.workers" = 8

Applying twice changes nothing the second time: users that exist are left alone (their password
is set only with `reset_password = true`), config keys already at the value are not written.
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

from appliance_client.cluster import Cluster, _items
from appliance_client.errors import NodeError


class ProvisionError(ValueError):
    pass


@dataclasses.dataclass
class Report:
    changes: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    errors: dict[str, NodeError] = dataclasses.field(default_factory=dict)

    def changed(self, label: str, what: str) -> None:
        self.changes.setdefault(label, []).append(what)


def load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{path}: {exc}") from exc
    unknown = set(data) - {"users", "config"}
    if unknown:
        raise ProvisionError(f"{path}: unknown sections {sorted(unknown)}")
    for user in data.get("users", []):
        if not {"name", "password"} <= set(user):
            raise ProvisionError(f"{path}: every [[users]] needs name and password")
    return data


def apply(cluster: Cluster, spec: dict[str, Any]) -> Report:
    report = Report()
    _users(cluster, spec.get("users", []), report)
    _config(cluster, spec.get("config", {}), report)
    return report


def _users(cluster: Cluster, users: list[dict[str, Any]], report: Report) -> None:
    if not users:
        return
    listed = cluster.call("userList")
    report.errors.update(listed.errors)
    for label, value in listed.values.items():
        existing = {u.username for u in _items(value)}
        for user in users:
            node = cluster.nodes[label]
            if user["name"] not in existing:
                cluster.fanout.stage(node, "userAdd", username=user["name"], password=user["password"],
                                     role=user.get("role", "readonly"),
                                     restriction=user.get("restriction", ""))
                report.changed(label, f"user {user['name']} added")
            elif user.get("reset_password"):
                cluster.fanout.stage(node, "userPasswordSet", username=user["name"], password=user["password"])
                report.changed(label, f"user {user['name']} password set")
    _dispatch(cluster, report)


def _config(cluster: Cluster, keys: dict[str, Any], report: Report) -> None:
    for key, want in keys.items():
        current = cluster.call("configKeyGet", key=key)
        report.errors.update(current.errors)
        for label, value in current.values.items():
            if str(value) != _text(want):
                cluster.fanout.stage(cluster.nodes[label], "configKeySet", key=key, value=_text(want),
                                     comment="appliancectl provision")
                report.changed(label, f"config {key} = {_text(want)}")
        _dispatch(cluster, report)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dispatch(cluster: Cluster, report: Report) -> None:
    for call in cluster.fanout.dispatch():
        if call.error is not None:
            report.errors[call.node.label] = call.error
