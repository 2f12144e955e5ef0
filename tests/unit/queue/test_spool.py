"""Spool files: durable writes, and no path that leaves the spool."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from appliance.errors import InvalidInput, NotFound, StoreUnavailable
from appliance.queue.spool import Spool


def test_write_read_remove(spool: Spool) -> None:
    msgid = str(uuid.uuid4())
    rel = spool.write(msgid, b"Subject: x\r\n\r\nbody\r\n")
    assert spool.read(rel).endswith(b"body\r\n")
    assert spool.read_headers(rel) == b"Subject: x\r\n\r\n"
    assert rel in spool.all_paths()
    assert not list((spool.root / "tmp").iterdir())
    spool.remove(rel)
    with pytest.raises(NotFound):
        spool.read(rel)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "ab/../../x", "", "a\x00b"])
def test_paths_outside_refused(spool: Spool, bad: str) -> None:
    with pytest.raises((InvalidInput, NotFound)):
        spool.read(bad)


def test_symlink_out_of_spool_refused(spool: Spool, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (spool.root / "ab").mkdir()
    os.symlink(secret, spool.root / "ab" / "link.eml")
    with pytest.raises(InvalidInput):
        spool.read("ab/link.eml")


def test_a_body_is_never_overwritten_and_a_failed_write_leaves_nothing(spool: Spool) -> None:
    msgid = str(uuid.uuid4())
    rel = spool.write(msgid, b"first\r\n")
    with pytest.raises(StoreUnavailable):
        spool.write(msgid, b"second\r\n")  # created exclusively: the first body stays
    assert spool.read(rel) == b"first\r\n"
    with pytest.raises(TypeError):
        spool.write(str(uuid.uuid4()), "not bytes")  # type: ignore[arg-type]
    assert spool.all_paths() == [rel]


def test_a_new_subdirectory_is_made_on_demand(spool: Spool) -> None:
    rel = spool.write("ff" + str(uuid.uuid4())[2:], b"x")
    assert rel.startswith("ff/") and (spool.root / rel).read_bytes() == b"x"
