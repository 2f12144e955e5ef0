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
