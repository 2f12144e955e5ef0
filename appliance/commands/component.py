"""The node's command runner as a component: `node.commands` for the SOAP service."""

from __future__ import annotations

from typing import Any

from appliance.commands.base import CommandContext
from appliance.commands.catalog import default_catalog
from appliance.commands.dnslookup import system_resolver
from appliance.commands.runner import Runner


def component(node: Any) -> Runner:
    """Built after the stats component, whose sampler statd reads (absent: statd says so)."""
    stats = getattr(node, "stats", None)
    context = CommandContext(
        log_dir=node.settings.log_dir, spool=node.spool, store=node.store,
        resolver=system_resolver(), sampler=getattr(stats, "sampler", None),
        hostname=node.config.node.hostname,
    )
    runner = Runner(default_catalog(), context)
    node.commands = runner
    return runner
