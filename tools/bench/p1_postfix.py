"""Debian's Postfix as P1's reference: a private instance (own config and queue in a temp dir,
an smtpd on a 127.0.0.1 high port) that queues durably and relays everything to a sink."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MASTER_CF = Path("/etc/postfix/master.cf")


def available() -> bool:
    return bool(shutil.which("postfix")) and MASTER_CF.exists() and os.geteuid() == 0


class Postfix:
    """`postfix -c DIR start|stop`; relayhost = the sink; nothing held, nothing delivered locally."""

    def __init__(self, *, smtp_port: int, relay_port: int, base: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p1-postfix-", dir=base))
        self.smtp_port = smtp_port
        self.conf = self.dir / "etc"
        self.conf.mkdir()
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", user="postfix")
        self.dir.chmod(0o755)
        (self.conf / "main.cf").write_text(_main_cf(self.dir, relay_port))
        (self.conf / "master.cf").write_text(_master_cf(smtp_port))

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Postfix prints its errors only to a terminal: give it one with script(1).
        done = subprocess.run(["script", "-qec", " ".join(argv), "/dev/null"],
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout.strip()[-2000:]}")
        return done

    def start(self) -> None:
        self._run("postfix", "-c", str(self.conf), "check", check=False)
        self._run("postfix", "-c", str(self.conf), "start")

    def stop(self) -> None:
        self._run("postfix", "-c", str(self.conf), "stop", check=False)

    def master_pid(self) -> int:
        """The master process (its children are smtpd, cleanup, qmgr, smtp, ...)."""
        return int((self.dir / "queue" / "pid" / "master.pid").read_text().split()[0])

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _main_cf(base: Path, relay_port: int) -> str:
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
myhostname = postfix-p1.test
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
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
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
