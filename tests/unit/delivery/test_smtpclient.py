"""The outbound SMTP client against a real aiosmtpd server and a scripted PIPELINING server on
loopback: replies per recipient, dot-stuffing, STARTTLS, timeouts and broken servers."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trustme

from appliance.delivery.outbound import Outgoing, SessionError, SessionOptions, SmtpConnector
from appliance.replies import Reply
from appliance.delivery.routing import Hop
from appliance.delivery.smtpclient import (
    SmtpClient, SmtpConnectError, SmtpDisconnected, SmtpError, SmtpProtocolError, SmtpTimeout,
    dot_stuff, parse_line,
)
from tests.e2e.delivery.sink import Sink
from tests.support.postgres import free_port
from tests.unit.delivery.scripted_server import Script, ScriptedServer

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 30))  # type: ignore[arg-type]


async def _client(port: int, timeout: float = 10.0) -> SmtpClient:
    client, greeting = await SmtpClient.connect("127.0.0.1", port, timeout=timeout, connect_timeout=5)
    assert greeting.code == 220
    await client.hello("gw.test")
    return client


# -- pure parts -------------------------------------------------------------------------------
def test_parse_line() -> None:
    assert parse_line(b"250-first") == (250, False, "first")
    assert parse_line(b"250 last") == (250, True, "last")
    assert parse_line(b"354") == (354, True, "")
    for bad in (b"25", b"hello", b"2500 x", b"abc ok"):
        with pytest.raises(SmtpProtocolError):
            parse_line(bad)


def test_dot_stuff() -> None:
    assert dot_stuff(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert dot_stuff(b".first\r\nlast") == b"..first\r\nlast\r\n.\r\n"  # leading dot, no final CRLF
    assert dot_stuff(b"bare\nlf\r\n.x\rcr") == b"bare\r\nlf\r\n..x\r\ncr\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"


def test_errors_are_typed_like_aiosmtplib() -> None:
    assert issubclass(SmtpTimeout, SmtpError) and issubclass(SmtpTimeout, TimeoutError)
    for cls in (SmtpConnectError, SmtpDisconnected, SmtpProtocolError):
        assert issubclass(cls, SmtpError) and issubclass(cls, ConnectionError)


# -- a real aiosmtpd server ---------------------------------------------------------------------
def test_aiosmtpd_transaction_without_pipelining() -> None:
    body = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nplain\r\n.\r\nend\r\n"
    with Sink() as sink:
        sink.handler.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"

        async def go() -> tuple[Any, bool]:
            client = await _client(sink.port)
            pipelining = client.supports("PIPELINING")
            out = await client.transaction(
                b"MAIL FROM:<a@s.test>", [b"RCPT TO:<x@dest.test>", b"RCPT TO:<nobody@dest.test>"], body)
            await client.quit()
            return out, pipelining

        out, pipelining = run(go)
        assert not pipelining  # aiosmtpd 1.4 does not offer it: the step-by-step path ran
        assert out.mail.code == 250 and [r.code for r in out.rcpts] == [250, 550]
        assert "no such user" in out.rcpts[1].text
        assert out.data is not None and out.data.code == 250 and out.sent
        [msg] = sink.messages
        assert msg.rcpt_tos == ["x@dest.test"] and msg.mail_from == "a@s.test"
        assert msg.content == body  # aiosmtpd removed exactly the dots we added


def test_aiosmtpd_multiline_ehlo_lists_extensions() -> None:
    with Sink() as sink:
        async def go() -> dict[str, str]:
            client = await _client(sink.port)
            await client.quit()
            return client.extensions

        ext = run(go)
        assert "8BITMIME" in ext and "SMTPUTF8" in ext and ext["SIZE"].isdigit()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


def test_starttls_verified_and_refused_when_untrusted(ca: trustme.CA) -> None:
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    with Sink(tls_context=_server_context(ca)) as sink:
        async def go() -> tuple[bool, bool]:
            client = await _client(sink.port)
            offered = client.supports("STARTTLS")
            reply = await client.starttls(trusted, "localhost")
            assert reply.code == 220 and client.extensions == {}
            await client.hello("gw.test")
            out = await client.transaction(b"MAIL FROM:<a@s.test>", [b"RCPT TO:<b@d.test>"], b"Subject: t\r\n\r\nx\r\n")
            assert out.data is not None and out.data.code == 250
            await client.quit()
            return offered, client.tls

        assert run(go) == (True, True)
        assert sink.messages[0].tls

        async def untrusted() -> None:
            client = await _client(sink.port)
            await client.starttls(stranger, "localhost")

        with pytest.raises(SmtpDisconnected, match="CERTIFICATE_VERIFY_FAILED"):
            run(untrusted)


# -- a server that offers PIPELINING ------------------------------------------------------------
def test_pipelined_group_in_one_write_with_a_reply_per_recipient() -> None:
    script = Script(rcpt={"gone@d.test": b"550 5.1.1 gone\r\n", "busy@d.test": b"452-4.2.2 mailbox\r\n452 4.2.2 full\r\n"})

    async def go() -> tuple[Any, ScriptedServer]:
        async with ScriptedServer(script) as srv:
            client = await _client(srv.port, timeout=3)
            rcpts = [b"RCPT TO:<ok@d.test>", b"RCPT TO:<gone@d.test>", b"RCPT TO:<busy@d.test>", b"RCPT TO:<ok2@d.test>"]
            out = await client.transaction(b"MAIL FROM:<a@s.test> BODY=8BITMIME", rcpts, b"Subject: p\r\n\r\n.hi\r\n")
            await client.quit()
            return out, srv

    out, srv = run(go)
    # The server answers a group only once DATA arrived: a client waiting for each reply would
    # have timed out instead.
    assert [r.code for r in out.rcpts] == [250, 550, 452, 250]
    assert out.rcpts[2] == Reply(452, "4.2.2 mailbox\n4.2.2 full")
    assert out.data == Reply(250, "2.0.0 queued") and out.sent
    assert srv.messages == [(["ok@d.test", "ok2@d.test"], b"Subject: p\r\n\r\n..hi\r\n")]
    group = next(r for r in srv.reads if r.startswith(b"MAIL"))
    assert group.count(b"\r\n") == 6 and group.endswith(b"DATA\r\n")  # MAIL, 4 RCPT, DATA together


def test_pipelined_all_recipients_refused_leaves_the_transaction_open() -> None:
    script = Script(rcpt={"x@d.test": b"550 5.1.1 no\r\n"})

    async def go() -> Any:
        async with ScriptedServer(script) as srv:
            client = await _client(srv.port, timeout=3)
            out = await client.transaction(b"MAIL FROM:<a@s.test>", [b"RCPT TO:<x@d.test>"], b"x\r\n")
            assert srv.messages == []
            await client.quit()
            return out

    out = run(go)
    assert out.rcpts == [Reply(550, "5.1.1 no")] and out.data is not None and out.data.code == 554
    assert not out.sent  # MAIL was accepted: the caller must RSET


def test_354_without_accepted_recipients_gets_an_empty_message() -> None:
    script = Script(rcpt={"x@d.test": b"550 5.1.1 no\r\n"}, data=b"354 go on anyway\r\n")

    async def go() -> tuple[Any, ScriptedServer]:
        async with ScriptedServer(script) as srv:
            client = await _client(srv.port, timeout=3)
            out = await client.transaction(b"MAIL FROM:<a@s.test>", [b"RCPT TO:<x@d.test>"], b"secret body\r\n")
            await client.quit()
            return out, srv

    out, srv = run(go)
    assert out.data is not None and out.data.code == 554 and out.sent
    assert srv.messages == [([], b"")]  # the body was not sent


def test_session_gives_each_recipient_its_outcome_and_resets_after_refusals() -> None:
    script = Script(rcpt={"gone@d.test": b"550 5.1.1 gone\r\n"},
                    ehlo=b"250-scripted\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 STARTTLS\r\n")
    options = SessionOptions(helo="gw.test", starttls="opportunistic", timeout=3, connect_timeout=3)

    async def go() -> tuple[dict[str, Reply], dict[str, Reply], bool, ScriptedServer]:
        async with ScriptedServer(script) as srv:
            session = await SmtpConnector().open(Hop("scripted", "127.0.0.1", srv.port), options)
            first = await session.send("a@s.test", ["ok@d.test", "gone@d.test"], b"Subject: 1\r\n\r\nx\r\n")
            second = await session.send("a@s.test", ["gone@d.test"], b"Subject: 2\r\n\r\nx\r\n")
            usable = session.usable
            await session.close()
            return first, second, usable, srv

    first, second, usable, srv = run(go)
    assert first == {"ok@d.test": Reply(250, "2.0.0 queued"), "gone@d.test": Reply(550, "5.1.1 gone")}
    assert second == {"gone@d.test": Reply(550, "5.1.1 gone")} and usable
    assert srv.commands[:2] == ["EHLO gw.test", "STARTTLS"]  # refused (454): the session went on plain
    assert srv.commands[-2:] == ["RSET", "QUIT"]  # nothing accepted in the second: RSET
    assert any("SIZE=" in c for c in srv.commands if c.startswith("MAIL"))


def test_required_starttls_refused_fails_the_session() -> None:
    script = Script(ehlo=b"250-scripted\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    options = SessionOptions(helo="gw.test", starttls="require", timeout=3, connect_timeout=3)

    async def go() -> None:
        async with ScriptedServer(script) as srv:
            await SmtpConnector().open(Hop("scripted", "127.0.0.1", srv.port), options)

    with pytest.raises(SessionError) as failed:
        run(go)
    assert failed.value.reply.code == 454


def test_data_injected_after_starttls_reply_is_refused() -> None:
    script = Script(ehlo=b"250-scripted\r\n250 STARTTLS\r\n", starttls=b"220 go ahead\r\n250 injected\r\n")

    async def go() -> None:
        async with ScriptedServer(script) as srv:
            client = await _client(srv.port, timeout=3)
            await client.starttls(ssl.create_default_context(), "localhost")

    with pytest.raises(SmtpProtocolError, match="after its STARTTLS reply"):
        run(go)


def test_silent_server_times_out() -> None:
    async def go() -> None:
        async with ScriptedServer(Script(silent_after="DATA")) as srv:
            client = await _client(srv.port, timeout=0.3)
            await client.transaction(b"MAIL FROM:<a@s.test>", [b"RCPT TO:<b@d.test>"], b"x\r\n")

    started = time.monotonic()
    with pytest.raises(SmtpTimeout, match="timed out after 0.3s"):
        run(go)
    assert time.monotonic() - started < 5


def test_garbage_and_disconnects_are_connection_errors() -> None:
    async def garbage() -> None:
        async with ScriptedServer(Script(ehlo=b"hello there\r\n")) as srv:
            await _client(srv.port)

    with pytest.raises(SmtpProtocolError):
        run(garbage)

    async def closed_after_mail() -> None:
        async with ScriptedServer(Script(close_after="MAIL")) as srv:
            client = await _client(srv.port)
            await client.transaction(b"MAIL FROM:<a@s.test>", [b"RCPT TO:<b@d.test>"], b"x\r\n")

    with pytest.raises(SmtpDisconnected):
        run(closed_after_mail)

    async def refused() -> None:
        await SmtpClient.connect("127.0.0.1", free_port(), timeout=1, connect_timeout=1)

    with pytest.raises(SmtpConnectError):
        run(refused)


def test_refused_greeting_is_the_servers_reply() -> None:
    options = SessionOptions(helo="gw.test", starttls="none", timeout=3, connect_timeout=3)

    async def go() -> None:
        async with ScriptedServer(Script(greeting=b"554-go away\r\n554 really\r\n")) as srv:
            await SmtpConnector().open(Hop("scripted", "127.0.0.1", srv.port), options)

    with pytest.raises(SessionError) as failed:
        run(go)
    assert failed.value.reply == Reply(554, "go away\nreally")


def test_several_transactions_pipelined_back_to_back() -> None:
    script = Script(rcpt={"x@d.test": b"550 5.1.1 no\r\n"})
    items = [
        (b"MAIL FROM:<a@s.test>", [b"RCPT TO:<one@d.test>"], b"Subject: 1\r\n\r\none\r\n"),
        (b"MAIL FROM:<a@s.test>", [b"RCPT TO:<x@d.test>"], b"Subject: 2\r\n\r\ntwo\r\n"),
        (b"MAIL FROM:<a@s.test>", [b"RCPT TO:<three@d.test>", b"RCPT TO:<x@d.test>"], b"Subject: 3\r\n\r\nthree\r\n"),
    ]

    async def go() -> tuple[Any, ScriptedServer]:
        async with ScriptedServer(script) as srv:
            client = await _client(srv.port, timeout=3)
            result = await client.transactions(items)
            await client.quit()
            return result, srv

    (outs, error), srv = run(go)
    assert error is None and len(outs) == 3
    assert [o.data.code if o.data else None for o in outs] == [250, 554, 250]
    assert [[r.code for r in o.rcpts] for o in outs] == [[250], [550], [250, 550]]
    assert all(o.sent for o in outs)
    assert srv.messages == [(["one@d.test"], b"Subject: 1\r\n\r\none\r\n"),
                            (["three@d.test"], b"Subject: 3\r\n\r\nthree\r\n")]
    verbs = [c.split(" ")[0] for c in srv.commands[1:]]
    # The refused second transaction is reset before the third's MAIL (sent in the same write).
    assert verbs == ["MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


def test_send_many_reports_what_completed_before_the_connection_broke() -> None:
    options = SessionOptions(helo="gw.test", starttls="none", timeout=3, connect_timeout=3)

    async def go() -> tuple[SessionError, bool]:
        async with ScriptedServer(Script(close_at_message=2)) as srv:
            session = await SmtpConnector().open(Hop("scripted", "127.0.0.1", srv.port), options)
            messages = [Outgoing("a@s.test", (f"r{n}@d.test",), b"Subject: x\r\n\r\nx\r\n") for n in range(3)]
            with pytest.raises(SessionError) as broke:
                await session.send_many(messages)
            usable = session.usable
            await session.close()
            return broke.value, usable

    error, usable = run(go)
    assert error.done == [{"r0@d.test": Reply(250, "2.0.0 queued")}]  # r1's outcome is unknown: retried
    assert error.reply.code == 0 and "connection" in error.reply.text and not usable
