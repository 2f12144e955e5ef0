"""SMTP reply classification (RFC 5321 section 4.2.1, RFC 3463 enhanced status codes)."""

from __future__ import annotations

import dataclasses
import enum
import re

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class Kind(str, enum.Enum):
    SUCCESS = "success"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclasses.dataclass(frozen=True)
class Reply:
    """A reply from the next hop, or a local failure dressed as one (code 0 = no reply)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text

    @property
    def kind(self) -> Kind:
        return classify(self.code)


def classify(code: int) -> Kind:
    """2xx success, 5xx permanent; 4xx, no reply at all (code 0, a connection error) and
    anything unexpected are temporary, so that mail is retried rather than lost."""
    if 200 <= code < 300:
        return Kind.SUCCESS
    if 500 <= code < 600:
        return Kind.PERMANENT
    return Kind.TEMPORARY


def connection_error(exc: BaseException) -> Reply:
    """A failure below SMTP (refused, reset, timeout, TLS): always temporary."""
    detail = str(exc) or type(exc).__name__
    return Reply(0, f"connection error: {detail}")


def enhanced_status(text: str) -> str | None:
    """The first RFC 3463 status code (class.subject.detail) in a reply or reason, if any."""
    m = _ENHANCED.search(text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None


def dsn_status(reply: Reply, *, expired: bool = False) -> str:
    """The Status of a failed recipient in a DSN (RFC 3464 section 2.3.4).

    A permanent reply keeps its own enhanced code (5.0.0 when it gave none); a message that
    ran out of queue lifetime is 4.4.7, "delivery time expired" (RFC 3463 section 3.5).
    """
    if expired or reply.kind is not Kind.PERMANENT:
        return "4.4.7"
    found = enhanced_status(reply.text)
    return found if found and found.startswith("5.") else "5.0.0"
