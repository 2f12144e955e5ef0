"""DKIM signing keys on the node's disk: create, list, remove, load, and the DNS record to publish.

One PEM file per key, `<dir>/<domain>/<selector>.pem` (PKCS#8, mode 0600, directories 0700).
Names are checked before they touch a path: a domain and a selector are dot-separated DNS
labels of letters, digits and hyphens (RFC 6376 section 3.1), lower-cased, so that no name can
leave the key directory. A new key is written to a temporary file, fsync'd and linked into
place only if no key of that name exists, so a failure or a race never leaves half a key.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from appliance.errors import Conflict, InvalidInput, NotFound

Algorithm = Literal["rsa", "ed25519"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa", "ed25519")
RSA_BITS = 2048
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SUFFIX = ".pem"


def check_domain(value: str) -> str:
    """The signing domain (d=) in canonical form, or InvalidInput. IDNs become A-labels."""
    text = (value or "").strip().rstrip(".")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"domain {value!r} is not a valid domain name") from None
    text = text.lower()
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"domain {value!r} is not a domain name (letters, digits and hyphens "
                           "in dot-separated labels, e.g. example.com)")
    return text


def check_selector(value: str) -> str:
    """The selector (s=) in canonical form, or InvalidInput (RFC 6376 section 3.1)."""
    text = (value or "").strip().lower()
    labels = text.split(".")
    if not text or len(text) > 63 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"selector {value!r} is not a DKIM selector (letters, digits and "
                           "hyphens, optionally dot-separated, at most 63 characters)")
    return text


def check_algorithm(value: str) -> Algorithm:
    text = (value or "rsa").strip().lower()
    for algorithm in ALGORITHMS:
        if text == algorithm:
            return algorithm
    raise InvalidInput(f"unknown DKIM key algorithm {value!r} (rsa or ed25519)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeyInfo:
    domain: str
    selector: str
    algorithm: Algorithm
    created: float
    public: bytes  # the p= value's bytes: SubjectPublicKeyInfo DER (rsa), raw 32 bytes (ed25519)

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_value(self) -> str:
        """The TXT record's text (RFC 6376 section 3.6.1; RFC 8463 section 4.2 for ed25519)."""
        return f"v=DKIM1; k={self.algorithm}; p={base64.b64encode(self.public).decode('ascii')}"

    def dns_record(self) -> str:
        """The record in zone-file form, the text split into strings of at most 255 bytes
        (RFC 1035 section 3.3.14: one character-string is at most 255 octets)."""
        text = self.txt_value()
        parts = [text[i:i + 255] for i in range(0, len(text), 255)]
        return f'{self.name}. IN TXT ' + " ".join(f'"{p}"' for p in parts)


@dataclasses.dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: Algorithm
    key: PrivateKey


def generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ed25519.Ed25519PrivateKey.generate()


def algorithm_of(key: object) -> Algorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise InvalidInput("a DKIM key must be RSA or Ed25519")


def public_bytes(key: PrivateKey) -> bytes:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


class KeyStore:
    """The node's DKIM keys under `root` (normally <data dir>/keys/dkim). Loaded keys are
    cached by file identity, so the delivery path parses a PEM once, and a key replaced or
    removed on disk (by the CLI or the API process) is seen at the next message."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[tuple[int, int, int], SigningKey]] = {}
        self._listing: dict[str, tuple[tuple[int, int], list[tuple[float, str]]]] = {}
        self._domains: tuple[tuple[int, int], list[str]] | None = None
        self._paths: dict[tuple[str, str], Path] = {}

    def path(self, domain: str, selector: str) -> Path:
        """The key file of checked names (memoized: the delivery path asks once per message)."""
        cached = self._paths.get((domain, selector))
        if cached is None:
            cached = self.root / check_domain(domain) / (check_selector(selector) + _SUFFIX)
            if len(self._paths) < 10_000:
                self._paths[(domain, selector)] = cached
        return cached

    # -- changes ------------------------------------------------------------------------------
    def create(self, domain: str, selector: str, algorithm: str = "rsa") -> KeyInfo:
        """Make a new key; Conflict if `selector` of `domain` exists (it is never replaced)."""
        algo = check_algorithm(algorithm)
        path = self.path(domain, selector)
        if path.exists():
            raise Conflict(f"a DKIM key {path.stem} for {path.parent.name} exists already")
        key = generate(algo)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self.root.parent.parent.mkdir(parents=True, exist_ok=True)
        self._private_dir(self.root.parent)
        self._private_dir(self.root)
        self._private_dir(path.parent)
        _write_new(path, pem)
        return self.info(path.parent.name, path.stem)

    def remove(self, domain: str, selector: str) -> KeyInfo:
        path = self.path(domain, selector)
        info = self.info(path.parent.name, path.stem)
        path.unlink()
        _fsync_dir(path.parent)
        try:
            path.parent.rmdir()  # the last key of the domain: the domain is gone too
            _fsync_dir(self.root)
        except OSError:
            pass
        return info

    @staticmethod
    def _private_dir(path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)

    # -- reading ------------------------------------------------------------------------------
    def info(self, domain: str, selector: str) -> KeyInfo:
        key = self.load(domain, selector)
        path = self.path(domain, selector)
        return KeyInfo(domain=key.domain, selector=key.selector, algorithm=key.algorithm,
                       created=path.stat().st_mtime, public=public_bytes(key.key))

    def all(self) -> list[KeyInfo]:
        """Every key, by domain then selector; files that are not valid keys are skipped."""
        out: list[KeyInfo] = []
        for domain in self.domains():
            for _created, selector in self.selectors(domain):
                try:
                    out.append(self.info(domain, selector))
                except (NotFound, InvalidInput):
                    continue
        return sorted(out, key=lambda k: (k.domain, k.selector))

    def domains(self) -> list[str]:
        """The domains that have a key directory (cached by the key directory's change time)."""
        try:
            st = self.root.stat()
        except FileNotFoundError:
            return []
        stamp = (st.st_mtime_ns, st.st_ino)
        with self._lock:
            if self._domains is not None and self._domains[0] == stamp:
                return self._domains[1]
        names = sorted(e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False))
        found = [n for n in names if _valid(check_domain, n)]
        with self._lock:
            self._domains = (stamp, found)
        return found

    def selectors(self, domain: str) -> list[tuple[float, str]]:
        """(created, selector) of the domain's keys, oldest first; cached by the directory's
        change time, so the delivery path looks this up with one stat()."""
        directory = self.root / check_domain(domain)
        try:
            st = directory.stat()
        except FileNotFoundError:
            return []
        stamp = (st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._listing.get(directory.name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        found: list[tuple[float, str]] = []
        for entry in os.scandir(directory):
            stem = entry.name[:-len(_SUFFIX)]
            if (entry.name.endswith(_SUFFIX) and entry.is_file(follow_symlinks=False)
                    and _valid(check_selector, stem) and stem == stem.lower()):
                found.append((entry.stat().st_mtime, stem))
        found.sort()
        with self._lock:
            self._listing[directory.name] = (stamp, found)
        return found

    def load(self, domain: str, selector: str) -> SigningKey:
        path = self.path(domain, selector)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"no DKIM key {path.stem} for {path.parent.name}") from None
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            cached = self._loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{path} is not an unencrypted PEM private key: {exc}") from None
        loaded = SigningKey(domain=path.parent.name, selector=path.stem, algorithm=algorithm_of(key),
                            key=key)  # type: ignore[arg-type]
        with self._lock:
            self._loaded[path] = (stamp, loaded)
        return loaded


def _valid(check: object, name: str) -> bool:
    try:
        return check(name) == name  # type: ignore[operator]
    except InvalidInput:
        return False


def _write_new(path: Path, data: bytes) -> None:
    """tmp (0600) -> fsync -> link into place: atomic, and never over an existing key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise Conflict(f"a DKIM key {path.stem} for {path.parent.name} exists already") from None
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
