"""The shipped systemd unit, sysusers and tmpfiles entries are valid for systemd itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs" / "systemd"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by tools/setup.sh --test"
    executable = shutil.which("appliance")
    assert executable, "the appliance console script is installed by tools/setup.sh"
    text = (DOCS / "appliance.service").read_text()
    assert "ExecStart=/usr/bin/appliance " in text
    unit = tmp_path / "appliance.service"
    # verify checks that ExecStart's program exists: point it at this machine's install.
    unit.write_text(text.replace("/usr/bin/appliance", executable))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in done.stderr.splitlines() if "appliance.service" in ln]
    assert done.returncode == 0 and not problems, done.stderr


@pytest.mark.parametrize("broken", ["Type=notfy", "NoNewPrivilegs=yes"])
def test_verify_would_catch_a_broken_unit(tmp_path: Path, broken: str) -> None:
    executable = shutil.which("appliance") or "/bin/true"
    text = (DOCS / "appliance.service").read_text().replace("/usr/bin/appliance", executable)
    unit = tmp_path / "appliance.service"
    unit.write_text(text + f"\n[Service]\n{broken}\n")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert "appliance.service" in done.stderr


def test_unit_hardening_and_notify() -> None:
    fields = dict(line.split("=", 1) for line in (DOCS / "appliance.service").read_text()
                  .splitlines() if "=" in line and not line.startswith("#"))
    assert fields["Type"] == "notify" and fields["WatchdogSec"]
    assert fields["NoNewPrivileges"] == "yes" and fields["ProtectSystem"] == "strict"
    assert fields["User"] == "appliance"
    assert fields["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"


def test_sysusers_entry_is_read_by_systemd_sysusers() -> None:
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers, "systemd is installed by tools/setup.sh --test"
    done = subprocess.run([sysusers, "--dry-run", str(DOCS / "appliance.sysusers")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "u appliance " in (DOCS / "appliance.sysusers").read_text()
    lines = (DOCS / "appliance.tmpfiles").read_text().splitlines()
    assert "d /var/lib/appliance 0750 appliance appliance -" in lines
