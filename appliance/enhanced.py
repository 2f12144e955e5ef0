"""RFC 3463 enhanced mail system status codes in words (class.subject.detail)."""

from __future__ import annotations

import re

_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

CLASSES = {
    "2": "success",
    "4": "persistent transient failure (may succeed if retried)",
    "5": "permanent failure (will not succeed as sent)",
}

SUBJECTS = {
    "0": "other or undefined status",
    "1": "addressing status",
    "2": "mailbox status",
    "3": "mail system status",
    "4": "network and routing status",
    "5": "mail delivery protocol status",
    "6": "message content or media status",
    "7": "security or policy status",
}

# RFC 3463 section 3 (X.7.8 from RFC 4954, X.7.10-X.7.27 from later RFCs that extend it).
DETAILS = {
    "0.0": "other undefined status",
    "1.0": "other address status",
    "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address",
    "1.3": "bad destination mailbox address syntax",
    "1.4": "destination mailbox address ambiguous",
    "1.5": "destination address valid",
    "1.6": "destination mailbox has moved, no forwarding address",
    "1.7": "bad sender's mailbox address syntax",
    "1.8": "bad sender's system address",
    "2.0": "other or undefined mailbox status",
    "2.1": "mailbox disabled, not accepting messages",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "2.4": "mailing list expansion problem",
    "3.0": "other or undefined mail system status",
    "3.1": "mail system full",
    "3.2": "system not accepting network messages",
    "3.3": "system not capable of selected features",
    "3.4": "message too big for system",
    "3.5": "system incorrectly configured",
    "4.0": "other or undefined network or routing status",
    "4.1": "no answer from host",
    "4.2": "bad connection",
    "4.3": "directory server failure",
    "4.4": "unable to route",
    "4.5": "mail system congestion",
    "4.6": "routing loop detected",
    "4.7": "delivery time expired",
    "5.0": "other or undefined protocol status",
    "5.1": "invalid command",
    "5.2": "syntax error",
    "5.3": "too many recipients",
    "5.4": "invalid command arguments",
    "5.5": "wrong protocol version",
    "6.0": "other or undefined media error",
    "6.1": "media not supported",
    "6.2": "conversion required and prohibited",
    "6.3": "conversion required but not supported",
    "6.4": "conversion with loss performed",
    "6.5": "conversion failed",
    "7.0": "other or undefined security status",
    "7.1": "delivery not authorized, message refused",
    "7.2": "mailing list expansion prohibited",
    "7.3": "security conversion required but not possible",
    "7.4": "security features not supported",
    "7.5": "cryptographic failure",
    "7.6": "cryptographic algorithm not supported",
    "7.7": "message integrity failure",
    "7.8": "authentication credentials invalid",
    "7.9": "authentication mechanism is too weak",
    "7.10": "encryption needed",
    "7.11": "encryption required for requested authentication mechanism",
    "7.12": "a password transition is needed",
    "7.13": "user account disabled",
    "7.14": "trust relationship required",
    "7.15": "priority level is too low",
    "7.16": "message is too big for the specified priority",
    "7.17": "mailbox owner has changed",
    "7.18": "domain owner has changed",
    "7.19": "RRVS test cannot be completed",
    "7.20": "no passing DKIM signature found",
    "7.21": "no acceptable DKIM signature found",
    "7.22": "no valid author-matched DKIM signature found",
    "7.23": "SPF validation failed",
    "7.24": "SPF validation error",
    "7.25": "reverse DNS validation failed",
    "7.26": "multiple authentication checks failed",
    "7.27": "sender address has null MX",
}


def find(text: str) -> str:
    """The first enhanced status code in a reply, or ''."""
    match = _CODE.search(text or "")
    return match.group(0) if match else ""


def meaning(code: str) -> str:
    """`4.4.1` -> "persistent transient failure ...: network and routing status: no answer
    from host"; an unknown detail falls back to its subject (RFC 3463 section 2)."""
    match = _CODE.fullmatch(code.strip())
    if match is None:
        return ""
    cls, subject, detail = match.groups()
    words = DETAILS.get(f"{subject}.{detail}") or SUBJECTS.get(subject, "unknown subject")
    return f"{CLASSES[cls]}: {words}"
