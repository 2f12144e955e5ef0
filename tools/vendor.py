#!/usr/bin/env python3
"""Re-fetch the console's front-end libraries from npm at pinned versions.

    python tools/vendor.py            # every library in LIBRARIES
    python tools/vendor.py htmx       # only the ones named

Each library's built files and its licence land in appliance/console/static/vendor/<name>/,
with a VERSION file naming the npm package and version. The result is committed: a node never
fetches anything at run time. `npm pack` (the ordinary npm client) downloads the tarball; its
integrity is the one the registry publishes, and the SHA-256 of each file taken is printed so
that a re-run can be compared with what is committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "appliance" / "console" / "static" / "vendor"


@dataclasses.dataclass(frozen=True)
class Library:
    package: str  # npm package name
    version: str  # exact version, never a range
    files: dict[str, str]  # path inside the package -> file name under vendor/<name>/


LIBRARIES: dict[str, Library] = {
    "htmx": Library("htmx.org", "2.0.11", {
        "dist/htmx.min.js": "htmx.min.js",
        "LICENSE": "LICENSE",
    }),
}


def fetch(name: str, lib: Library) -> None:
    target = VENDOR / name
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", "--silent", f"{lib.package}@{lib.version}"],
                             cwd=tmp, check=True, capture_output=True, text=True)
        tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for inner, local in lib.files.items():
                member = tar.extractfile(f"package/{inner}")
                if member is None:
                    raise SystemExit(f"{lib.package}@{lib.version} has no {inner}")
                data = member.read()
                (target / local).write_bytes(data)
                print(f"{name}/{local}  {hashlib.sha256(data).hexdigest()}")
    (target / "VERSION").write_text(f"{lib.package}@{lib.version}\n")


def main(argv: list[str]) -> int:
    names = argv or list(LIBRARIES)
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        print(f"unknown libraries: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in names:
        fetch(name, LIBRARIES[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
