"""The console's pages: one module per page, each defining `PAGE` (see docs/console.md).

A module here is found by `load()`, which imports every module of this package and registers
its PAGE's blueprint on the app; the navigation lists the registered pages in NAV order.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from flask import Blueprint

# The navigation's order; a page whose module is not present is simply not listed.
NAV = ("overview", "tracking", "trash", "suspensions", "jobs", "alerts", "logsearch",
       "reporting", "rates", "scripts", "config", "terminal", "users", "cluster")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Page:
    name: str  # the blueprint's name, the NAV key, and the `page` the base layout highlights
    title: str  # shown in the navigation
    path: str  # where the navigation links to
    blueprint: Blueprint
    admin_only: bool = False  # hidden from, and refused to, users who are not admins


def load() -> list[Page]:
    pages = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        page = getattr(module, "PAGE", None)
        if isinstance(page, Page):
            pages.append(page)
    order = {name: i for i, name in enumerate(NAV)}
    return sorted(pages, key=lambda p: (order.get(p.name, len(NAV)), p.name))
