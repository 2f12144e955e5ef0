"""fast_init sets a protocol up exactly as aiosmtpd's SMTP.__init__ does (no introspection)."""

from __future__ import annotations

import asyncio
import types
import weakref
from pathlib import Path
from typing import Any

import pytest

from appliance.config.schema import Listener
from appliance.policy.flow import DefaultFlow
from appliance.smtp.handler import Protocol
from appliance.smtp.server import SmtpServer


def normal(value: Any, owner: object) -> Any:
    """Comparable form: methods by function and by whether bound to their own protocol."""
    if isinstance(value, types.MethodType):
        return ("method", value.__func__, value.__self__ is owner or type(value.__self__))
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return tuple(normal(v, owner) for v in value)
    if isinstance(value, dict):
        return {k: normal(v, owner) for k, v in value.items()}
    if isinstance(value, weakref.ref):
        return ("weakref", type(value()))
    if isinstance(value, (asyncio.StreamReader, asyncio.Future)):
        return type(value)
    return value


def state(proto: Protocol) -> dict[str, Any]:
    return {k: normal(v, proto) for k, v in vars(proto).items()}


@pytest.mark.parametrize("auth,starttls", [(True, False), (False, False), (True, True)])
def test_later_connections_get_the_state_the_first_one_got(tmp_path: Path, auth: bool,
                                                           starttls: bool) -> None:
    server = SmtpServer(store=None, intake=None, listeners=[], hostname="mx.test",  # type: ignore[arg-type]
                        tls_dir=tmp_path, flow=DefaultFlow())
    listener = Listener(id="in", port=0, auth=auth, starttls=starttls, max_message_size=1234)

    async def build() -> tuple[Protocol, Protocol]:
        make = server._factory(listener)
        return make(), make()

    first, later = asyncio.run(build())
    assert "_auth_methods" in vars(later)
    assert state(later) == state(first)
    assert sorted(later._auth_methods) == (["LOGIN", "PLAIN"] if auth else [])
    assert later._smtp_methods["DATA"].__self__ is later  # bound to its own connection
    assert later.event_handler is first.event_handler


def test_an_untested_aiosmtpd_release_is_refused_at_start() -> None:
    import aiosmtpd
    import pytest

    from appliance.smtp.fastinit import TESTED_VERSIONS, check_version

    assert aiosmtpd.__version__ in TESTED_VERSIONS
    check_version()
    with pytest.raises(RuntimeError, match="aiosmtpd 1.5.0 is not one of the versions"):
        check_version("1.5.0")


# Arguments of MAIL FROM: / RCPT TO: as clients send them, plain and otherwise.
PATHS = [
    "<a@b.example>", "<a@b.example> SIZE=10", "<a@b.example>  BODY=8BITMIME SMTPUTF8",
    "<A+tag=x@EX-1.example.com>", "<a.b.c@d>", "<>", "<> SIZE=1", "a@b.example", " <a@b.example>",
    "<a@[127.0.0.1]>", '<"q x"@b.example>', "<a@b.example>SIZE=1", "<a@b..example>", "<.a@b>",
    "<a.@b>", "<a@-b>", "<@relay:a@b.example>", "<a@b.example", "<a@b.example >",
    "<a@b.example.>", "<\u00fc@b.example>", "<a@b> (comment) X", "<a@b>\tX", "<a@b> ",
    "<" + "l" * 70 + "@b.example>", "<a@b@c>", "<a b@c>", "<a@b>x",
]


@pytest.mark.parametrize("arg", PATHS)
@pytest.mark.parametrize("limit", [0, 64])
def test_plain_paths_parse_as_aiosmtpd_parses_them(arg: str, limit: int) -> None:
    """simple_path answers exactly what SMTP._getaddr answers, or leaves the argument to it."""
    from aiosmtpd.smtp import SMTP

    from appliance.smtp.fastinit import simple_path

    loop = asyncio.new_event_loop()  # SMTP() makes one of its own when given none
    try:
        proto = SMTP(object(), loop=loop)
        proto.local_part_limit = limit
        fast = simple_path(arg, limit)
        if fast is not None:
            assert fast == SMTP._getaddr(proto, arg)
    finally:
        loop.close()


def test_the_common_form_takes_the_fast_path() -> None:
    from appliance.smtp.fastinit import simple_path

    assert simple_path("<sender@bench.test> SIZE=1024", 0) == ("sender@bench.test", "SIZE=1024")
    assert simple_path("<" + "l" * 70 + "@b.example>", 64) == (None, None)  # over the limit
