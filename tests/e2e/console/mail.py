"""Mail for the console's tests: messages sent over SMTP to a live node."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from tests.support.node import RunningNode

# rcpt_to quarantines `quarantine@…`; the sink refuses `defer…@` with a 451, so those stay
# queued (DEFER, next retry an hour away); everything else is delivered into history.
CONFIG = '''
[scripts]
main = """function rcpt_to(s, rcpt)
  local l = rcpt:match("^([^@]*)@")
  if l == "quarantine" then return quarantine("console") end
end"""

[[listeners]]
id = "inbound"
port = 2525
script = "main"

[queue]
retry_schedule = [3600]
poll_interval = 0.1
'''

# What an attacker puts into a subject and headers: each would set window.__pwned if run.
HOSTILE_SUBJECT = ('<script>window.__pwned="script"</script>'
                   '<img src=x onerror="window.__pwned=\'img\'">')
HOSTILE_HEADER = 'javascript:window.__pwned="href"'
# ...and what a remote MTA answers: it ends up in the entry's error and the node's log lines.
HOSTILE_REPLY = '451 4.2.0 <img src=x onerror="window.__pwned=\'log\'"> try later'


def send(node: RunningNode, rcpts: list[str], subject: str, *, sender: str = "alice@sender.example",
         headers: dict[str, str] | None = None, body: str = "the body of a message\n") -> str:
    """One message over SMTP; its msgid (from the 250 reply)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(rcpts), subject
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(sender)
        for rcpt in rcpts:
            smtp.rcpt(rcpt)
        code, reply = smtp.data(msg.as_bytes())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]
