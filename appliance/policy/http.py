"""The HTTP client scripts' http() uses: urllib with per-call TLS options and a size cap."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from appliance.policy.functions import HttpResponse
from appliance.policy.sandbox import ScriptError

MAX_BODY = 4 * 1024 * 1024


class UrllibHttpClient:
    """Plain http/https only; errors become a ScriptError the script may pcall()."""

    def __init__(self, *, max_body: int = MAX_BODY, max_timeout: float = 30.0) -> None:
        self.max_body = max_body
        self.max_timeout = max_timeout

    def request(self, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 10.0, ca_file: str = "",
                verify: bool = True) -> HttpResponse:
        if not url.lower().startswith(("http://", "https://")):
            raise ScriptError("http() takes http:// or https:// URLs only")
        request = urllib.request.Request(url, data=body or None, headers=headers or {}, method=method)
        context = None
        if url.lower().startswith("https://"):
            context = ssl.create_default_context(cafile=ca_file or None)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        try:
            with opener.open(request, timeout=min(max(timeout, 0.1), self.max_timeout)) as response:
                return HttpResponse(status=response.status, headers=dict(response.headers.items()),
                                    body=response.read(self.max_body))
        except urllib.error.HTTPError as exc:  # a 4xx/5xx is an answer, not a failure
            with exc:
                return HttpResponse(status=exc.code, headers=dict(exc.headers.items()),
                                    body=exc.read(self.max_body))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ScriptError(f"http({url!r}) failed: {getattr(exc, 'reason', exc)}") from exc
