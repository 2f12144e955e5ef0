"""previewmessage: decoded headers, text/html bodies in any charset, attachments, delta, -t."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from appliance.commands import previewmessage
from appliance.commands.base import CommandContext
from appliance.errors import InvalidInput
from appliance.queue.spool import Spool
from tests.unit.commands.conftest import Run

MSGID = "5f0e7a8c-1111-4222-8333-944455556666"


def mixed_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jörg <joerg@example.org>"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "Grüße aus Köln – 日本"
    msg.set_content("Hallo Bob,\nschöne Grüße.\n", charset="iso-8859-1", cte="quoted-printable")
    msg.add_alternative("<p>Hallo <b>Bob</b>, schöne Grüße.</p>\n", subtype="html")
    msg.add_attachment(b"%PDF-1.4 " + bytes(range(256)) * 4, maintype="application",
                       subtype="pdf", filename="Rechnung März.pdf")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner body\n")
    msg.add_attachment(inner)
    return msg.as_bytes()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def sections(out: str, mark: str) -> dict[str, str]:
    head, _, rest = out.partition(f"{mark}|TEXT\n")
    text, _, rest = rest.partition(f"{mark}|HTML\n")
    html, _, attachments = rest.partition(f"{mark}|ATTACHMENTS\n")
    return {"headers": head, "text": text, "html": html, "attachments": attachments}


def test_headers_bodies_and_attachments_decoded(run: Run, spool: Spool) -> None:
    path = spool.write(MSGID, mixed_message())
    out = run(CommandContext(log_dir=spool.root, spool=spool), ["previewmessage", path, "M0x1"])
    got = sections(out, "M0x1")
    assert "Subject: Grüße aus Köln – 日本\n" in got["headers"]
    assert "From: Jörg <joerg@example.org>\n" in got["headers"]
    assert got["text"] == "Hallo Bob,\nschöne Grüße.\n"
    assert got["html"] == "<p>Hallo <b>Bob</b>, schöne Grüße.</p>\n"
    lines = got["attachments"].splitlines()
    assert lines[0] == "application/pdf|1033|Rechnung März.pdf"
    kind, size, name = lines[1].split("|")
    assert kind == "message/rfc822" and int(size) > 50 and name == ""
    assert len(lines) == 2


def test_prefer_text_leaves_html_empty_only_when_there_is_text(run: Run, spool: Spool) -> None:
    ctx = CommandContext(log_dir=spool.root, spool=spool)
    path = spool.write(MSGID, mixed_message())
    got = sections(run(ctx, ["previewmessage", "-t", path, "MK"]), "MK")
    assert got["text"].startswith("Hallo Bob") and got["html"] == ""
    html_only = EmailMessage()
    html_only["Subject"] = "html only"
    html_only.set_content("<p>nur HTML</p>", subtype="html", charset="utf-8", cte="base64")
    path2 = spool.write("6f0e7a8c-1111-4222-8333-944455556666", html_only.as_bytes())
    got = sections(run(ctx, ["previewmessage", "-t", path2, "MK"]), "MK")
    assert got["text"] == "" and got["html"] == "<p>nur HTML</p>\n" and got["attachments"] == ""


def test_unknown_charset_and_broken_encoding_do_not_stop_the_preview(run: Run, spool: Spool) -> None:
    raw = (b"Subject: =?x-unknown?Q?abc?=\r\nContent-Type: text/plain; charset=x-unknown\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8g4pyT\r\n")
    path = spool.write(MSGID, raw)
    got = sections(run(CommandContext(log_dir=spool.root, spool=spool), ["previewmessage", path, "Z"]), "Z")
    assert got["text"] == "Hello ✓\n"
    assert got["headers"].startswith("Subject: ")


def test_delta_replaces_adds_and_removes_headers(run: Run, spool: Spool) -> None:
    path = spool.write(MSGID, mixed_message())
    delta = spool.write("7f0e7a8c-1111-4222-8333-944455556666",
                        b"Subject: [SPAM] changed\r\nX-Score: 9.5\r\nTo:\r\n\r\n")
    out = run(CommandContext(log_dir=spool.root, spool=spool), ["previewmessage", path, "D", delta])
    headers = sections(out, "D")["headers"]
    assert "Subject: [SPAM] changed\n" in headers and "Grüße" not in headers.split("From:")[0]
    assert "X-Score: 9.5\n" in headers and "\nTo:" not in "\n" + headers


def test_paths_outside_the_spool_are_refused(run: Run, spool: Spool, tmp_path: Path) -> None:
    secret = tmp_path / "secret.eml"
    secret.write_bytes(b"Subject: secret\r\n\r\nsecret\r\n")
    (spool.root / "ab").mkdir()
    (spool.root / "ab" / "link.eml").symlink_to(secret)
    ctx = CommandContext(log_dir=spool.root, spool=spool)
    for path in ("../secret.eml", str(secret), "ab/link.eml", "ab/missing.eml"):
        out = run(ctx, ["previewmessage", path, "M"])
        assert out.startswith("previewmessage: ") and "secret" not in out.split(":", 1)[1].replace(path, "")


def test_bad_argv() -> None:
    for argv in ([], ["only-path"], ["p", "bad mark"], ["p", "a|b"], ["-x", "p", "M"], ["p", "M", "d", "extra"]):
        with pytest.raises(InvalidInput, match="previewmessage"):
            previewmessage.parse(argv)
    assert previewmessage.parse(["-t", "p", "M", "d"]).deltapath == "d"
