"""The fork server: a child it forks is re-parented to the subreaper that asked for it, gets the
descriptors sent along, and its exit code (or signal) is what the asker sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Run in a fresh interpreter: the fork server must be started before any thread exists.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from appliance.process import forkserver

    def main(request, fds):
        os.write(fds[0], json.dumps({"ppid": os.getppid(), "say": request["say"]}).encode())
        os.close(fds[0])
        if request["how"] == "hang":
            signal.pause()
        return int(request["code"])

    assert forkserver.become_subreaper()
    server = forkserver.ForkServer(main)
    results = []
    for how, code in (("exit", 3), ("exit", 0), ("hang", 0)):
        r, w = os.pipe()
        child = server.spawn({"say": f"{how}-{code}", "how": how, "code": code}, [w])
        os.close(w)
        told = json.loads(os.read(r, 4096))
        if how == "hang":
            child.kill()
        results.append({"pid": child.pid, "told": told, "code": child.wait(timeout=30),
                        "server": server.pid})
    alive = server.alive()
    server.close()
    print(json.dumps({"me": os.getpid(), "results": results, "alive": alive,
                      "after": server.alive()}))
""")


def test_children_are_reparented_to_the_asker_and_report_their_exit() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    me = out["me"]
    assert [r["told"] for r in out["results"]] == [
        {"ppid": me, "say": "exit-3"}, {"ppid": me, "say": "exit-0"},
        {"ppid": me, "say": "hang-0"}]
    assert [r["code"] for r in out["results"]] == [3, 0, -9]
    assert all(r["pid"] != r["server"] for r in out["results"])
    assert out["alive"] is True and out["after"] is False
