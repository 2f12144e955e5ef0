"""The zeep client that builds envelopes and parses replies: one per WSDL source, cached."""

from __future__ import annotations

import functools
import os

import requests
import zeep
from zeep.transports import Transport

from appliance_client.node import NodeSpec


def load(source: str | NodeSpec) -> zeep.Client:
    """A zeep client for a WSDL file path, or for the WSDL a node serves (`?wsdl`)."""
    if isinstance(source, NodeSpec):
        return _from_node(source.url, source.username, source.password, source.verify, source.ca_file)
    return _from_file(os.path.abspath(source))


@functools.lru_cache(maxsize=8)
def _from_file(path: str) -> zeep.Client:
    return zeep.Client(path, transport=Transport(session=requests.Session()))


@functools.lru_cache(maxsize=8)
def _from_node(url: str, username: str, password: str, verify: bool, ca_file: str | None) -> zeep.Client:
    session = requests.Session()
    session.auth = (username, password)
    session.verify = ca_file if (verify and ca_file) else verify
    return zeep.Client(url.split("?")[0] + "?wsdl", transport=Transport(session=session))
