"""Where the node's run-time data lives: inside the installed package, or beside it in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """`migrations` or `wsdl`: the copy a built wheel carries in the package, else the checkout's."""
    inside = _PACKAGE / name
    if inside.is_dir():
        return inside
    beside = _PACKAGE.parent / name
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"appliance data folder {name!r} is neither in {_PACKAGE} nor beside it")
