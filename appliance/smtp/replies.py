"""Every SMTP reply the node's listeners send, with enhanced status codes (RFC 3463)."""

from __future__ import annotations

# Connection (RFC 5321 §3.1, §4.2.2)
SERVICE_UNAVAILABLE = "421 4.3.2 Service not available, closing transmission channel"
LOCAL_ERROR = "451 4.3.0 Local error in processing, try again later"
CONNECT_REJECTED = "554 5.7.1 Connection rejected"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
PRE_COMMAND_TIMEOUT = "421 4.4.2 No command received in time, closing connection"

# Envelope
OK = "250 2.0.0 OK"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
BAD_PATH_SYNTAX = "501 5.5.4 Syntax error in the path: unbalanced angle brackets"
# RFC 5321 §4.1.2: paths and domains are printable text; RFC 3463 X.5.2 is a syntax error.
CONTROL_CHARACTERS = "501 5.5.2 Syntax error: control characters are not allowed in commands"
NOT_UTF8 = "501 5.5.2 Syntax error: command arguments must be ASCII or UTF-8"
# RFC 6531 §3.5 with RFC 6533's X.6.7: a non-ASCII mailbox needs MAIL FROM:<...> SMTPUTF8.
SENDER_NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII sender address without the SMTPUTF8 parameter"
RECIPIENT_NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII recipient address without SMTPUTF8 in MAIL FROM"
BAD_SENDER_ADDRESS = "553 5.1.7 Malformed sender address"
BAD_RECIPIENT_ADDRESS = "553 5.1.3 Malformed recipient address"
# RFC 5321 §4.5.3.1.10: 452 for too many recipients, the client sends the rest later.
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
AUTH_REQUIRED = "530 5.7.0 Authentication required"

# Policy verdicts: the default reply for each decision at each stage
MAIL_REJECTED = "550 5.7.1 Sender rejected"
MAIL_DEFERRED = "451 4.7.1 Sender deferred, try again later"
RCPT_REJECTED = "550 5.7.1 Recipient rejected"
RCPT_DEFERRED = "450 4.7.1 Recipient deferred, try again later"
DATA_REJECTED = "550 5.7.1 Message rejected"
DATA_DEFERRED = "451 4.7.1 Message deferred, try again later"

# Authentication (RFC 4954 §6)
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_TEMPORARY = "454 4.7.0 Temporary authentication failure"
AUTH_THROTTLED = "454 4.7.0 Too many failed authentication attempts, try again later"
AUTH_BAD_BASE64 = "501 5.5.2 Cannot decode base64"
AUTH_MALFORMED = "501 5.5.2 Malformed authentication data"

# Message
# RFC 5321 §2.3.8: CR and LF only as CRLF. Refused from clients outside mynetworks, as Postfix's
# smtpd_forbid_bare_newline does (its exclusions default to mynetworks, whose messages are
# repaired instead): relayed as received, a bare LF lets a client smuggle a second message past
# a next hop that ends DATA at <LF>.<LF>.
BARE_NEWLINE = "550 5.5.2 Message refused: bare <CR> or <LF> in the message; lines end with <CR><LF>"
# RFC 5321 §4.2.5: 250 only once the message is durable.
QUEUED = "250 2.0.0 Ok: queued as {msgid}"
STORE_FAILED = "451 4.3.0 Temporary failure storing the message, try again later"


def verdict_reply(code: int, text: str, default: str) -> str:
    """The reply for a policy verdict: its own code/text, else the stage's default.

    A code in the wrong class for the decision keeps the default code (a reject is never 2xx).
    """
    default_code = int(default[:3])
    if code and code // 100 == default_code // 100:
        default_code = code
    if not text:
        text = default[4:]
    # One line only: a script's text must not inject extra reply lines (RFC 5321 §4.2.1).
    text = " ".join(text.split())
    return f"{default_code} {text}"
