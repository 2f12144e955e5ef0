"""Write the published contract, wsdl/appliance.wsdl, from the SOAP application (deterministic).

    python tools/export_wsdl.py          # rewrite the file
    python tools/export_wsdl.py --check  # exit 1 if the file differs from the service
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WSDL_FILE = ROOT / "wsdl" / "appliance.wsdl"


def render() -> bytes:
    sys.path.insert(0, str(ROOT))
    from appliance.soap.app import build_application
    from appliance.soap.wsdl import PLACEHOLDER_URL, interface_document

    return interface_document(build_application(node=None), PLACEHOLDER_URL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--output", type=Path, default=WSDL_FILE)
    args = parser.parse_args(argv)
    document = render()
    if args.check:
        same = args.output.is_file() and args.output.read_bytes() == document
        print(f"{args.output}: {'up to date' if same else 'DIFFERS from the service'}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(document)
    print(f"wrote {args.output} ({len(document)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
