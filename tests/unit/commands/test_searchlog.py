"""searchlog: matching lines across rotated files, -a by time, -n, and -f across rotations."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from appliance.commands import searchlog
from appliance.commands.base import CommandContext
from appliance.errors import InvalidInput
from appliance.nodelog import LOG_NAME, NodeLog, format_time
from tests.unit.commands.conftest import Run, finish, poll_until

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def line(ts: float, text: str) -> str:
    return f"{format_time(ts)} host appliance[1]: appliance.test: {text}\n"


def write_log(path: Path, first: float, count: int, *, step: float = 1.0, tag: str = "") -> float:
    """`count` lines one `step` apart; the file's mtime is its last line's time. Returns it."""
    with open(path, "w") as fh:
        for i in range(count):
            fh.write(line(first + i * step, f"event {tag}{i} msgid-{i % 10}"))
    last = first + (count - 1) * step
    os.utime(path, (last, last))
    return last


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Three files: .2 covers T0.., .1 covers T0+100.., current covers T0+200.. (100 lines each)."""
    for n, name in enumerate([f"{LOG_NAME}.2", f"{LOG_NAME}.1", LOG_NAME]):
        write_log(tmp_path / name, T0 + 100 * n, 100, tag=f"f{n}-")
    return tmp_path


def test_searches_every_file_oldest_first(run: Run, logs: Path) -> None:
    out = run(CommandContext(log_dir=logs), ["searchlog", "--", "msgid-3"]).splitlines()
    assert len(out) == 30
    assert [o.split()[-2] for o in out[:2]] == ["f0-3", "f0-13"]
    assert out[-1].split()[-2] == "f2-93"


def test_after_skips_older_files_and_bisects_into_the_first(run: Run, logs: Path) -> None:
    ctx = CommandContext(log_dir=logs)
    out = run(ctx, ["searchlog", "-a", str(T0 + 150), "--", "msgid-"]).splitlines()
    assert out[0].split()[-2] == "f1-50" and len(out) == 150
    iso = run(ctx, ["searchlog", "-a", "2024-05-01T12:04:10", "--", "msgid-"]).splitlines()
    assert iso[0].split()[-2] == "f2-50"
    assert run(ctx, ["searchlog", "-a", str(T0 + 10_000), "--", "msgid-"]) == ""


def test_max_lines(run: Run, logs: Path) -> None:
    out = run(CommandContext(log_dir=logs), ["searchlog", "-n", "5", "--", "msgid-1"]).splitlines()
    assert [o.split()[-2] for o in out] == ["f0-1", "f0-11", "f0-21", "f0-31", "f0-41"]


def test_bad_argv() -> None:
    for argv in (["-n", "0", "--", "x"], ["-a", "yesterday", "--", "x"], [], ["--", " "],
                 ["-x", "--", "a"], ["--", "a\nb"]):
        with pytest.raises(InvalidInput, match="searchlog"):
            searchlog.parse(argv)
    assert searchlog.parse(["--", "-f", "x"]).text == b"-f x"


def test_bisect_finds_the_first_line_at_or_after_a_time(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    write_log(path, T0, 50_000, step=0.5)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        for target in (T0 - 5, T0, T0 + 0.25, T0 + 7777, T0 + 24_999.5, T0 + 30_000):
            offset = searchlog.first_offset_at(fh, target, size)
            fh.seek(offset)
            first = fh.readline()
            expected = max(0, int((target - T0) * 2 + 0.999))
            if expected >= 50_000:
                assert offset == size
            else:
                assert first.decode().split()[-2] == str(expected), target


def test_matching_lines_across_block_boundaries_and_an_unterminated_tail() -> None:
    text = b"".join(b"%06d %s\n" % (i, b"hit" if i % 7 == 0 else b"miss") for i in range(300_000))
    fh = io.BytesIO(text + b"999999 hit-unterminated")
    found = list(searchlog.matching_lines(fh, b"hit"))
    assert len(found) == 300_000 // 7 + 1 + 1
    assert found[-1] == b"999999 hit-unterminated"
    assert all(f.endswith(b"hit") for f in found[:-1])
    fh.seek(0)
    following = list(searchlog.matching_lines(fh, b"hit", final=False))
    assert following == found[:-1] and fh.tell() == len(text)


def test_follow_sees_new_lines_across_rotation_until_quit(run: Run, tmp_path: Path) -> None:
    logger = logging.getLogger("appliance.test.follow")
    logger.propagate = False
    node_log = NodeLog(tmp_path, logger=logger, max_bytes=1500, backup_count=8)
    node_log.start()
    try:
        logger.info("before msgid-old")
        runner = run.runner(CommandContext(log_dir=tmp_path))
        cid = runner.run("admin", ["searchlog", "-f", "--", "msgid-"])
        poll_until(runner, "admin", cid, b"before msgid-old")
        for i in range(60):  # about 6 kB: rotates several times within one follow interval
            logger.info("after %d msgid-new", i)
        out = poll_until(runner, "admin", cid, b"after 59 msgid-new")
        assert len(list(tmp_path.glob(f"{LOG_NAME}.*"))) >= 3
        runner.push("admin", cid, b"q")
        out += finish(runner, "admin", cid)[0]
    finally:
        node_log.stop()
    numbers = [int(l.split()[-2]) for l in out.decode().splitlines() if "msgid-new" in l]
    assert numbers == list(range(60))


def test_follow_with_after_skips_an_old_current_file(run: Run, tmp_path: Path) -> None:
    write_log(tmp_path / LOG_NAME, T0, 50)  # every line older than TIME
    runner = run.runner(CommandContext(log_dir=tmp_path))
    cid = runner.run("admin", ["searchlog", "-f", "-a", str(T0 + 1000), "--", "msgid-"])
    with open(tmp_path / LOG_NAME, "a") as fh:
        fh.write(line(T0 + 2000, "new msgid-9"))
    out = poll_until(runner, "admin", cid, b"new msgid-9")
    runner.end("admin", cid)
    out += finish(runner, "admin", cid)[0]
    assert out.decode().splitlines() == [line(T0 + 2000, "new msgid-9").rstrip("\n")]
