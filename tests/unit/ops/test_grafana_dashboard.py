"""The Grafana dashboard in docs/ asks only for series the node exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appliance.db.engine import Store
from appliance.stats.metrics import Instruments, StoreCollector

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "appliance.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _exported(store: Store) -> set[str]:
    names = {m.name for m in Instruments().registry.collect()}
    return names | {m.name for m in StoreCollector(store).collect()}


def test_every_expression_names_an_exported_series(store: Store) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported(store)
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\bappliance_\w+", target["expr"]):
                base = name
                for suffix in SUFFIXES:
                    base = base.removesuffix(suffix)
                assert base in exported, f"{panel['title']}: {name} is not exported"
                used.add(base)
    assert {"appliance_queue_entries", "appliance_messages", "appliance_delivery_seconds"} <= used
