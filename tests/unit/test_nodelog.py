"""The node log: one escaped syslog-like line per record, rotated files found oldest first."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from appliance.nodelog import LOG_NAME, NodeLog, NodeLogFormatter, format_time, line_time, log_files

LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00) testhost appliance\[(\d+)\]: ([\w.]+): (.*)$"
)


def _logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"nodelogtest.{name}")
    logger.propagate = False
    return logger


def test_one_line_per_record_in_the_syslog_like_format(tmp_path: Path) -> None:
    logger = _logger("format")
    node_log = NodeLog(tmp_path / "log", logger=logger, hostname="testhost")
    node_log.start()
    try:
        logger.info("delivered %s:%d to %s", "0b4c-uuid", 7, "b@example.org")
        logger.warning("two\nlines and a\ttab and \x1b escape")
        logger.debug("not written: below INFO")
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed for %s", "0b4c-uuid")
    finally:
        node_log.stop()
    lines = (tmp_path / "log" / LOG_NAME).read_text().splitlines()
    assert len(lines) == 3
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert parsed[0].group(2) == str(os.getpid())
    assert parsed[0].group(3) == "nodelogtest.format"
    assert parsed[0].group(4) == "delivered 0b4c-uuid:7 to b@example.org"
    assert parsed[1].group(4) == "two\\nlines and a\\ttab and \\x1b escape"
    assert parsed[2].group(4).startswith("failed for 0b4c-uuid | Traceback")
    assert "ValueError: bad" in parsed[2].group(4)
    assert not logger.handlers


def test_rotation_keeps_backups_and_log_files_lists_them_oldest_first(tmp_path: Path) -> None:
    logger = _logger("rotate")
    node_log = NodeLog(tmp_path, logger=logger, max_bytes=2000, backup_count=3, hostname="h")
    node_log.start()
    try:
        for i in range(200):
            logger.info("record %04d", i)
    finally:
        node_log.stop()
    files = log_files(tmp_path)
    assert [f.name for f in files] == [f"{LOG_NAME}.3", f"{LOG_NAME}.2", f"{LOG_NAME}.1", LOG_NAME]
    numbers = [int(line.rsplit(" ", 1)[1]) for f in files for line in f.read_text().splitlines()]
    assert numbers == list(range(numbers[0], 200))  # in order, nothing lost within the kept files
    assert all(f.stat().st_size <= 2000 for f in files)


def test_line_time_reads_the_stamp_back() -> None:
    stamp = format_time(1714564800.25)
    assert stamp == "2024-05-01T12:00:00.250000+00:00"
    assert line_time(f"{stamp} h appliance[1]: x: y".encode()) == 1714564800.25
    assert line_time(b"garbage line") is None
    assert line_time(b"") is None


def test_syslog_handler_gets_the_line_without_time(tmp_path: Path) -> None:
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    logger = _logger("syslog")
    node_log = NodeLog(tmp_path, logger=logger, syslog_address=sink.getsockname(), hostname="h")
    node_log.start()
    try:
        logger.info("queued %s", "abcd")
    finally:
        node_log.stop()
    datagram = sink.recv(4096).decode()
    sink.close()
    # RFC 3164 PRI: facility mail (2) * 8 + severity info (6) = 22.
    assert datagram == f"<22>appliance[{os.getpid()}]: nodelogtest.syslog: queued abcd\x00"


def test_formatter_hostname_defaults_to_this_machine() -> None:
    assert NodeLogFormatter().hostname == __import__("socket").gethostname()


def test_syslog_address_forms() -> None:
    import pytest

    from appliance.nodelog import syslog_address

    assert syslog_address("") is None
    assert syslog_address("/dev/log") == "/dev/log"
    assert syslog_address("127.0.0.1:514") == ("127.0.0.1", 514)
    assert syslog_address("[::1]:514") == ("::1", 514)
    with pytest.raises(ValueError, match="log.syslog"):
        syslog_address("nohost")


def test_a_restarted_node_keeps_appending_and_rotates_by_the_files_size(tmp_path: Path) -> None:
    (tmp_path / LOG_NAME).write_text("x" * 950 + "\n")
    logger = _logger("restart")
    node_log = NodeLog(tmp_path, logger=logger, max_bytes=1000, backup_count=2, hostname="h")
    node_log.start()
    try:
        logger.info("first after restart")  # 951 + this line > 1000: rotates first
        logger.info("second")
    finally:
        node_log.stop()
    assert (tmp_path / f"{LOG_NAME}.1").read_text() == "x" * 950 + "\n"
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert [l.rsplit(": ", 1)[1] for l in lines] == ["first after restart", "second"]
