"""`appliance dkim keygen|list|remove` — the node's DKIM signing keys in its data directory."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable

from appliance.mailauth.keys import ALGORITHMS, KeyStore
from appliance.settings import Settings

Common = Callable[..., None]


def add_commands(sub: argparse._SubParsersAction, common: Common) -> None:  # type: ignore[type-arg]
    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    common(dkim, top=False)
    ds = dkim.add_subparsers(dest="dkim_command", required=True)
    keygen = ds.add_parser("keygen", help="create a key and print the DNS TXT record to publish")
    keygen.add_argument("domain")
    keygen.add_argument("selector")
    keygen.add_argument("--algorithm", default="rsa", choices=ALGORITHMS,
                        help="rsa (2048 bits, default) or ed25519 (RFC 8463)")
    ds.add_parser("list", help="the keys and their DNS records")
    remove = ds.add_parser("remove", help="delete a key (mail of its domain is then signed "
                                          "with another of its keys, or not at all)")
    remove.add_argument("domain")
    remove.add_argument("selector")
    for p in ds.choices.values():
        common(p, top=False)


def run(settings: Settings, args: argparse.Namespace) -> int:
    keys = KeyStore(settings.dkim_key_dir)
    if args.dkim_command == "keygen":
        info = keys.create(args.domain, args.selector, args.algorithm)
        print(f"created {info.algorithm} key {info.selector} for {info.domain}; publish:")
        print(info.dns_record())
    elif args.dkim_command == "remove":
        info = keys.remove(args.domain, args.selector)
        print(f"removed key {info.selector} of {info.domain} "
              f"(you may now remove {info.name} from DNS)")
    else:
        for info in keys.all():
            created = datetime.datetime.fromtimestamp(info.created, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            print(f"{info.domain}\t{info.selector}\t{info.algorithm}\t{created}")
            print(f"\t{info.dns_record()}")
    return 0
