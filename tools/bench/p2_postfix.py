"""Debian's Postfix as P2's reference: a private instance (own config and queue in a temp dir,
127.0.0.1 high ports) relaying every message to a sink; messages held on arrival, then released
at once so that its delivery rate from a full queue can be timed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MASTER_CF = Path("/etc/postfix/master.cf")


def available() -> bool:
    return all(shutil.which(c) for c in ("postfix", "postsuper", "smtp-source")) and MASTER_CF.exists() \
        and os.geteuid() == 0


class PostfixRelay:
    """`postfix -c DIR start|stop` with an instance of its own; relayhost = the sink."""

    def __init__(self, *, smtp_port: int, relay_port: int, concurrency: int = 20) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2-postfix-"))
        self.smtp_port = smtp_port
        self.conf = self.dir / "etc"
        self.conf.mkdir()
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", user="postfix")
        self.dir.chmod(0o755)
        (self.conf / "main.cf").write_text(_main_cf(self.dir, relay_port, concurrency))
        (self.conf / "master.cf").write_text(_master_cf(smtp_port))

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Postfix reports errors on stderr only when it is a terminal: give it one (script(1)).
        cmd = ["script", "-qec", " ".join(argv), "/dev/null"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout.strip()[-2000:]}")
        return done

    def start(self) -> None:
        self._run("postfix", "-c", str(self.conf), "check", check=False)
        self._run("postfix", "-c", str(self.conf), "start")

    def stop(self) -> None:
        self._run("postfix", "-c", str(self.conf), "stop", check=False)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def inject(self, count: int, *, size: int = 1024, sessions: int = 32) -> None:
        """smtp-source: `count` messages of `size` bytes over `sessions` parallel sessions."""
        self._run("smtp-source", "-c", "-l", str(size), "-m", str(count), "-s", str(sessions),
                  "-f", "sender@bench.test", "-t", "rcpt@sink.test", f"127.0.0.1:{self.smtp_port}")

    def held(self) -> int:
        return sum(1 for _ in (self.dir / "queue" / "hold").rglob("*") if _.is_file())

    def release(self) -> None:
        # -H moves held mail to the deferred queue; -f schedules all of it for delivery now.
        self._run("postsuper", "-c", str(self.conf), "-H", "ALL")
        self._run("postqueue", "-c", str(self.conf), "-f")

    def queued(self) -> int:
        q = self.dir / "queue"
        return sum(1 for d in ("incoming", "active", "deferred", "hold", "maildrop")
                   for p in (q / d).rglob("*") if p.is_file())


def _main_cf(base: Path, relay_port: int, concurrency: int) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
# Hold every accepted message: the queue is filled first, then released and timed.
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
smtp_destination_concurrency_limit = {concurrency}
default_process_limit = 200
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
biff = no
"""


def _master_cf(smtp_port: int) -> str:
    out = []
    for line in MASTER_CF.read_text().splitlines():
        fields = line.split()
        if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{smtp_port}"
            if fields[4] == "y":
                fields[4] = "n"  # no chroot: the instance lives in a temp dir
            line = "  ".join(fields)
        out.append(line)
    return "\n".join(out) + "\n"
