"""Pure message helpers: trace header, subject decoding, header edits, address checks."""

from __future__ import annotations

import email
import email.policy

import pytest

from appliance.smtp.message import (
    edit_headers, is_address, protocol_name, received_header, split_headers, subject_of,
)

MSG = b"From: a@example.com\r\nSubject: =?utf-8?q?h=C3=A9llo?=\r\n wrapped\r\nX-Spam: yes\r\n  more\r\nTo: b@example.org\r\n\r\nbody\r\nX-Spam: in body\r\n"


def test_split_headers_keeps_the_blank_line_with_the_body() -> None:
    head, rest = split_headers(MSG)
    assert head.endswith(b"To: b@example.org\r\n")
    assert rest.startswith(b"\r\nbody")
    assert split_headers(b"Subject: only headers\r\n") == (b"Subject: only headers\r\n", b"")


@pytest.mark.parametrize("data,expected", [
    (MSG, "héllo wrapped"),
    (b"subject: plain\r\n\r\nx", "plain"),
    (b"From: x\r\n\r\nSubject: in body\r\n", ""),
    (b"Subject: =?bogus?q?x?=\r\n\r\n", "=?bogus?q?x?="),
    (b"Subject: \xff\xfe raw\r\n\r\n", "\ufffd\ufffd raw"),
])
def test_subject_is_the_decoded_header_text(data: bytes, expected: str) -> None:
    assert subject_of(data) == expected


@pytest.mark.parametrize("address,ok", [
    ("user@example.com", True), ("u.ser+tag@sub.example.com", True), ("user@[127.0.0.1]", True),
    ("user", False), ("@example.com", False), ("user@", False), ("a b@example.com", False),
    ("a@b@c", False), ("<a@b>", False), ("x" * 400 + "@example.com", False),
])
def test_is_address(address: str, ok: bool) -> None:
    assert is_address(address) is ok


def test_received_header_follows_rfc5321_trace_form() -> None:
    header = received_header(helo="client.example", client_ip="192.0.2.1", hostname="mx.local",
                             protocol="ESMTPS", msgid="abc", recipients=("r@example.org",),
                             when=0.0)
    parsed = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
    value = " ".join(str(parsed["Received"]).split())
    assert value == ("from client.example ([192.0.2.1]) by mx.local (appliance) with ESMTPS "
                     "id abc for <r@example.org>; Thu, 01 Jan 1970 00:00:00 +0000")


def test_received_header_omits_for_with_several_recipients_and_marks_ipv6() -> None:
    header = received_header(helo="bad\r\nInjected: x", client_ip="::1", hostname="h",
                             protocol="SMTP", msgid="m", recipients=("a@b.c", "d@e.f"), when=0.0)
    assert b" for " not in header
    assert b"[IPv6:::1]" in header
    assert header.count(b"\r\n") == header.count(b"\r\n\t") + 1  # no injected header line


def test_protocol_name_rfc3848() -> None:
    assert protocol_name(esmtp=False, tls=True, authenticated=True) == "SMTP"
    assert protocol_name(esmtp=True, tls=False, authenticated=False) == "ESMTP"
    assert protocol_name(esmtp=True, tls=True, authenticated=True) == "ESMTPSA"
    assert protocol_name(esmtp=True, tls=False, authenticated=True) == "ESMTPA"


def test_edit_headers_removes_folded_fields_and_prepends_added_ones() -> None:
    out = edit_headers(MSG, add=[("X-Added", "1"), ("X-Utf", "grüße")], remove=["x-spam"])
    head, rest = split_headers(out)
    assert head.startswith(b"X-Added: 1\r\nX-Utf: =?utf-8?")
    assert b"X-Spam" not in head and b"more" not in head
    assert b"X-Spam: in body" in rest  # the body is never touched
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed["X-Utf"] == "grüße"


def test_edit_headers_refuses_a_bad_field_name() -> None:
    with pytest.raises(ValueError):
        edit_headers(MSG, add=[("Bad Name", "x")], remove=[])


def test_edit_headers_without_changes_returns_the_same_bytes() -> None:
    assert edit_headers(MSG, add=[], remove=[]) is MSG
