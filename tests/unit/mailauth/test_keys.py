"""DKIM keys on disk: names that cannot leave the key directory, no half-written or replaced
keys, modes, and DNS records split into 255-byte strings."""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path

import pytest

from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.mailauth import keys as k
from appliance.mailauth.keys import KeyStore


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "data" / "keys" / "dkim")


@pytest.mark.parametrize("name", ["..", ".", "../etc", "a/b", "/etc", "a..b", "-a.com", "a-.com",
                                  "", " ", "a_b.com", "x" * 64 + ".com", "a.com/..", "a\x00b",
                                  "ex ample.com", "a." * 130 + "com"])
def test_hostile_domains_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a (valid )?domain name"):
        k.check_domain(name)


@pytest.mark.parametrize("name", ["..", "../s", "s/1", "", "s1.", ".s1", "s_1", "x" * 64, "s\n1"])
def test_hostile_selectors_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a DKIM selector"):
        k.check_selector(name)


def test_names_are_canonical() -> None:
    assert k.check_domain("Mail.Example.COM.") == "mail.example.com"
    assert k.check_domain("bücher.example") == "xn--bcher-kva.example"
    assert k.check_selector("Jan2026.Mail") == "jan2026.mail"
    with pytest.raises(InvalidInput, match="unknown DKIM key algorithm 'dsa'"):
        k.check_algorithm("dsa")


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_create_writes_a_private_file_and_a_record(store: KeyStore, algorithm: str) -> None:
    info = store.create("Example.com", "S1", algorithm)
    path = store.root / "example.com" / "s1.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in (store.root, store.root.parent, path.parent))
    assert b"PRIVATE KEY" in path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["s1.pem"]  # no temporary file left
    record = info.dns_record()
    assert record.startswith(f's1._domainkey.example.com. IN TXT "v=DKIM1; k={algorithm}; p=')
    strings = re.findall(r'"([^"]*)"', record)
    assert all(len(s) <= 255 for s in strings)
    public = base64.b64decode("".join(strings).split("p=")[1])
    assert len(public) == (32 if algorithm == "ed25519" else 294)  # raw key / 2048-bit SPKI
    if algorithm == "rsa":
        assert len(strings) == 2  # 400-odd characters: two strings
    assert store.load("example.com", "s1").algorithm == algorithm


def test_an_existing_key_is_never_replaced(store: KeyStore) -> None:
    store.create("example.com", "s1", "rsa")
    before = (store.root / "example.com" / "s1.pem").read_bytes()
    with pytest.raises(Conflict, match="exists already"):
        store.create("example.com", "S1", "ed25519")
    assert (store.root / "example.com" / "s1.pem").read_bytes() == before


def test_concurrent_creates_of_one_name_make_exactly_one_key(store: KeyStore) -> None:
    outcomes: list[str] = []

    def create() -> None:
        try:
            store.create("race.example", "s1", "ed25519")
            outcomes.append("made")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("made") == 1 and outcomes.count("conflict") == 5
    assert [p.name for p in (store.root / "race.example").iterdir()] == ["s1.pem"]


def test_list_selectors_oldest_first_and_remove(store: KeyStore) -> None:
    store.create("example.com", "new", "ed25519")
    store.create("example.com", "newer", "ed25519")
    store.create("other.example", "s1", "ed25519")
    assert [s for _, s in store.selectors("example.com")] == ["new", "newer"]
    assert [(i.domain, i.selector) for i in store.all()] == [
        ("example.com", "new"), ("example.com", "newer"), ("other.example", "s1")]
    store.remove("other.example", "s1")
    assert not (store.root / "other.example").exists()
    assert store.domains() == ["example.com"]
    with pytest.raises(NotFound):
        store.remove("other.example", "s1")
    with pytest.raises(NotFound):
        store.load("example.com", "s9")


def test_foreign_files_are_ignored_and_bad_pems_refused(store: KeyStore) -> None:
    store.create("example.com", "s1", "ed25519")
    (store.root / "example.com" / "notes.txt").write_text("x")
    (store.root / "example.com" / "Bad..pem").write_text("x")
    (store.root / "example.com" / "broken.pem").write_text("not a key")
    (store.root / "..weird").mkdir()
    assert [s for _, s in store.selectors("example.com")] == ["s1", "broken"]  # oldest first
    assert [i.selector for i in store.all()] == ["s1"]
    with pytest.raises(InvalidInput, match="not an unencrypted PEM private key"):
        store.load("example.com", "broken")


def test_a_replaced_key_file_is_loaded_again(store: KeyStore) -> None:
    store.create("example.com", "s1", "rsa")
    first = store.load("example.com", "s1")
    assert store.load("example.com", "s1") is first  # cached
    store.remove("example.com", "s1")
    store.create("example.com", "s1", "ed25519")
    assert store.load("example.com", "s1").algorithm == "ed25519"
