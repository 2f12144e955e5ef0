"""Per-connection set-up of aiosmtpd's SMTP protocol without its per-connection introspection.

aiosmtpd's SMTP.__init__ (1.4) scans the protocol and the handler with inspect.getmembers()
and dir() on every connection to find the smtp_*, handle_* and auth_* methods: about 1 ms of
event-loop time per connection, which is more than everything else one message costs. The
result depends only on the classes and the handler, so a listener computes it once (`Members`,
from the first connection made the normal way) and `fast_init` sets up later connections with
the same attributes SMTP.__init__ would set. tests/unit/smtp/test_fastinit.py checks that the
two produce the same instance state, so an aiosmtpd upgrade that changes __init__ is caught.

`simple_path` is the other private seam: SMTP._getaddr parses every MAIL and RCPT argument
with the email package's header parser (and defines a class on each call), about 0.3 ms
per command; the plain `<local@domain>` form almost every client sends is answered with the
same result without it, anything else still goes to aiosmtpd (tests/unit/smtp/test_fastinit.py
compares the two).

That state is private to aiosmtpd, so the versions it was checked against are pinned
(setup.cfg) and `check_version()` refuses to start the SMTP service on any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from collections.abc import Callable
from typing import Any

import aiosmtpd
from aiosmtpd.smtp import SMTP, _AuthMechAttr, login_always_fail

# The aiosmtpd releases whose SMTP.__init__ tests/unit/smtp/test_fastinit.py was run against.
TESTED_VERSIONS = ("1.4.4", "1.4.5", "1.4.6")


def check_version(version: str = aiosmtpd.__version__) -> None:
    """Fail loudly at start rather than set up sessions with another release's private state."""
    if version not in TESTED_VERSIONS:
        raise RuntimeError(
            f"aiosmtpd {version} is not one of the versions appliance.smtp.fastinit was tested "
            f"against ({', '.join(TESTED_VERSIONS)}): install one of those")


@dataclasses.dataclass(frozen=True)
class Members:
    """What SMTP.__init__ found by introspection, as names (bound again per connection)."""

    auth: tuple[tuple[str, str, bool], ...]  # (mechanism, attribute name, on the protocol?)
    hooks: dict[str, Callable[..., Any]]  # handle_* of the shared handler: bound already
    ehlo_hook_ver: str | None
    smtp: tuple[tuple[str, str], ...]  # (command, attribute name) on the protocol


def introspect(proto: SMTP) -> Members:
    """The introspection result of a protocol built by SMTP.__init__, reusable for its class."""
    auth = []
    for mechanism, attr in proto._auth_methods.items():
        method = attr.method
        auth.append((mechanism, method.__name__, attr.is_builtin))
    smtp = tuple((command, method.__name__) for command, method in proto._smtp_methods.items())
    return Members(auth=tuple(auth), hooks=dict(proto._handle_hooks),
                   ehlo_hook_ver=proto._ehlo_hook_ver, smtp=smtp)


def fast_init(proto: SMTP, handler: Any, members: Members, *, data_size_limit: int | None,
              enable_SMTPUTF8: bool, hostname: str, ident: str,
              tls_context: ssl.SSLContext | None, auth_require_tls: bool,
              auth_exclude_mechanism: list[str], timeout: float) -> None:
    """Set `proto` up as SMTP.__init__ would with these options (and no others)."""
    proto.__ident__ = ident  # type: ignore[attr-defined]
    proto.loop = asyncio.get_event_loop()
    asyncio.StreamReaderProtocol.__init__(
        proto, asyncio.StreamReader(loop=proto.loop, limit=proto.line_length_limit),
        client_connected_cb=proto._cb_client_connected, loop=proto.loop)
    proto.event_handler = handler
    proto.data_size_limit = data_size_limit
    proto.enable_SMTPUTF8 = enable_SMTPUTF8
    proto._decode_data = False
    proto.command_size_limits.clear()
    proto.hostname = hostname
    proto.tls_context = tls_context
    proto.require_starttls = tls_context and False  # type: ignore[assignment]
    proto._timeout_duration = timeout
    proto._timeout_handle = None
    proto._tls_handshake_okay = True
    proto._tls_protocol = None
    proto._original_transport = None
    proto.session = None
    proto.envelope = None
    proto.transport = None
    proto._handler_coroutine = None
    proto._auth_require_tls = auth_require_tls
    proto._proxy_timeout = None
    proto._auth_callback = login_always_fail
    proto._authenticator = None
    proto._auth_required = False
    proto._auth_methods = {
        mechanism: _AuthMechAttr(getattr(proto if builtin else handler, name), builtin)
        for mechanism, name, builtin in members.auth
        if mechanism not in auth_exclude_mechanism
    }
    proto._handle_hooks = members.hooks
    proto._ehlo_hook_ver = members.ehlo_hook_ver
    proto._smtp_methods = {command: getattr(proto, name) for command, name in members.smtp}
    proto._enforce_call_limit = False


# A path of ASCII dot-atoms only (RFC 5322 atext), `<local@domain>`: the header parser returns
# such an address unchanged.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"<((?:{_ATOM}\.)*{_ATOM}@(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+)>")


def simple_path(arg: str, local_part_limit: int) -> tuple[str | None, str | None] | None:
    """SMTP._getaddr's answer for a plain `<local@domain>[ params]`, or None for any other
    form (aiosmtpd's own parser then decides)."""
    match = _SIMPLE_PATH.match(arg)
    if match is None:
        return None
    address = match.group(1)
    tail = arg[match.end():]
    if tail:
        rest = tail.lstrip(" ")
        if rest == tail or not rest or rest[0] in "(\t\r\n":  # comments, folding: the parser's
            return None
    else:
        rest = ""
    if local_part_limit and address.rindex("@") > local_part_limit:
        return None, None
    return address, rest
