"""How to reach one node: URL, credentials, TLS and timeouts."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeSpec:
    url: str  # the SOAP endpoint, e.g. https://10.0.0.5:8443/remote/
    username: str
    password: str
    name: str = ""  # defaults to host:port
    verify: bool = True  # verify the TLS certificate
    ca_file: str | None = None  # trust this CA (e.g. the node's self-signed certificate)
    connect_timeout: float = 5.0
    timeout: float = 60.0  # whole call
    gzip_requests: bool = False  # send request bodies gzip-compressed

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return parts.netloc or self.url
