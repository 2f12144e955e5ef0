"""The node log: one escaped syslog-like line per record, rotated files found oldest first."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

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


def test_json_lines_carry_the_message_ids(tmp_path: Path) -> None:
    import json as json_

    from appliance.nodelog import JsonLineFormatter

    record = logging.LogRecord("appliance.delivery", logging.INFO, __file__, 1,
                               "delivered %s:%d to <%s>", ("0b6c1f7e-4a8f-4c1e-9a57-2f3b1c9d0e11",
                                                           42, "a@b.c"), None)
    fields = json_.loads(JsonLineFormatter("mx1").format(record))
    assert fields["msgid"] == "0b6c1f7e-4a8f-4c1e-9a57-2f3b1c9d0e11"
    assert fields["queueid"] == 42
    assert fields["host"] == "mx1" and fields["level"] == "info"
    assert fields["msg"].startswith("delivered 0b6c1f7e")
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "line\nbreak", (), None)
    line = JsonLineFormatter("mx1").format(plain)
    assert "\n" not in line and "msgid" not in json_.loads(line)


def test_reopen_follows_a_file_renamed_by_logrotate(tmp_path: Path) -> None:
    logger = logging.getLogger("test.reopen")
    node_log = NodeLog(tmp_path, max_bytes=0, logger=logger, hostname="h")
    node_log.start()
    try:
        logger.info("before")
        (tmp_path / "appliance.log").rename(tmp_path / "appliance.log-20261202")
        logger.info("still into the renamed file")
        node_log.reopen()
        logger.info("after")
    finally:
        node_log.stop()
    assert "still into the renamed file" in (tmp_path / "appliance.log-20261202").read_text()
    current = (tmp_path / "appliance.log").read_text()
    assert "after" in current and "before" not in current


def test_no_rotation_when_max_bytes_is_zero(tmp_path: Path) -> None:
    logger = logging.getLogger("test.norotate")
    node_log = NodeLog(tmp_path, max_bytes=0, logger=logger, hostname="h")
    node_log.start()
    try:
        for i in range(200):
            logger.info("line %d %s", i, "x" * 100)
    finally:
        node_log.stop()
    assert [p.name for p in tmp_path.iterdir()] == ["appliance.log"]


def test_stderr_lines_in_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json as json_

    logger = logging.getLogger("test.stderr")
    node_log = NodeLog(tmp_path, logger=logger, hostname="h", stderr=True, line_format="json")
    node_log.start()
    try:
        logger.warning("queued 0b6c1f7e-4a8f-4c1e-9a57-2f3b1c9d0e11 from [127.0.0.1]")
    finally:
        node_log.stop()
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    assert json_.loads(line)["msgid"] == "0b6c1f7e-4a8f-4c1e-9a57-2f3b1c9d0e11"
    assert "queued" in (tmp_path / "appliance.log").read_text()  # the file stays text
