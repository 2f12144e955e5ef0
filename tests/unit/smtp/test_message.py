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


@pytest.mark.parametrize("text,expected", [
    ("=?utf-8?b?ww==?= =?utf-8?b?qQ==?=", "é"),  # one character split over two words
    ("=?iso-8859-1?q?caf=E9?= =?utf-8?q?_x?=", "café x"),
    ("a =?utf-8?q?b?=  plain  =?utf-8?q?c?= d", "a b  plain  c d"),
    ("=?UTF-8*en?Q?a_b?=", "a b"),  # RFC 2231 language tag
    ("=?utf-8?b?!!!?= =?utf-8?q?ok?=", "=?utf-8?b?!!!?= ok"),  # a bad word stays as written
])
def test_encoded_words_decode_as_rfc2047_says(text: str, expected: str) -> None:
    from appliance.smtp.message import decode_words

    assert decode_words(text) == expected


def test_a_subject_bomb_is_cut_to_the_limits() -> None:
    from appliance.smtp.message import SUBJECT_MAX_CHARS, SUBJECT_MAX_WORDS

    words = b"Subject: " + b"\r\n ".join([b"=?utf-8?q?=C3=A9?="] * 300_000) + b"\r\n\r\nx\r\n"
    assert subject_of(words) == "é" * SUBJECT_MAX_WORDS
    plain = b"Subject: " + b"y" * 100_000 + b"\r\nTo: b@example.org\r\n\r\nx\r\n"
    assert subject_of(plain) == "y" * SUBJECT_MAX_CHARS
    assert subject_of(b"Subject: =?utf-8?q?a=00b=1Bc?=\tand\r\n\r\n") == "a\ufffdb\ufffdc and"


@pytest.mark.parametrize("argument,problem", [
    ("<a@example.com> SIZE=10", None), ("<jöran@exämple.com> SMTPUTF8", None),
    ("<a\x00@example.com>", "control"), ("<a@example.com>\x7f", "control"),
    ("<a\tb@example.com>", "control"), ("<a\x85@example.com>", "control"),
    ("host\rname", "control"), ("<a\udcff@example.com>", "utf8"),
])
def test_command_arguments_with_controls_or_non_utf8_are_refused(argument: str, problem: str | None) -> None:
    from appliance.smtp.message import command_problem

    assert command_problem(argument) == problem


@pytest.mark.parametrize("data,bare", [
    (b"a\r\nb\r\n", False), (b"", False), (b"a\nb\r\n", True), (b"a\r\nb\n", True),
    (b"a\rb\r\n", True), (b"a\r\r\n", True), (b"a\n\r\n", True),
])
def test_bare_newlines(data: bytes, bare: bool) -> None:
    from appliance.smtp.message import has_bare_newline

    assert has_bare_newline(data) is bare


def test_ipv6_address_literals_parse() -> None:
    assert is_address("r@[IPv6:2001:db8::1]") and is_address("r@[ipv6:::1]")


@pytest.mark.parametrize("data,repaired", [
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"a\rb\r\r\n", b"a\r\nb\r\n\r\n"),
    (b"x\n..\n.y\r\n..z\r\n", b"x\r\n.\r\ny\r\n..z\r\n"),  # stuffed at an LF: unstuffed once
])
def test_crlf_lines(data: bytes, repaired: bytes) -> None:
    from appliance.smtp.message import crlf_lines, has_bare_newline

    assert crlf_lines(data) == repaired and not has_bare_newline(repaired)
