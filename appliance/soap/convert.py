"""Queue entries and history rows (ORM objects) to wire items; nothing else crosses the wire."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.soap.wire import HistoryItem, JobItem, Pair, QueueItem, TrashItem, filler

# QueueItem(**fields) without Spyne's per-field init walk (see wire.filler).
_new_queue_item = filler(QueueItem)
_new_history_item = filler(HistoryItem)
_new_pair = filler(Pair)
_new_trash_item = filler(TrashItem)
_new_job_item = filler(JobItem)


def queue_item(entry: Any, metadata: Mapping[str, str], serial: str) -> QueueItem:
    fields = _message_fields(entry, metadata, serial)
    fields["msgqueue"] = entry.state
    fields["msgnextretry"] = int(entry.next_retry)
    return _new_queue_item(fields)


def trash_item(entry: Any, metadata: Mapping[str, str], serial: str) -> TrashItem:
    fields = _message_fields(entry, metadata, serial)
    fields["msgqueue"] = entry.state
    fields["msgnextretry"] = int(entry.next_retry)
    fields["msgdeleted"] = int(entry.deleted)
    fields["msgdeletedby"] = entry.deletedby
    return _new_trash_item(fields)


def job_item(job: Any, serial: str) -> JobItem:
    """A queue job's progress (appliance.queue.jobs.Progress)."""
    return _new_job_item({
        "id": job.id, "action": job.action, "filter": job.filter, "per_minute": job.per_minute,
        "state": job.state, "done": job.done, "remaining": job.remaining,
        "rate": float(job.rate), "eta": float(job.eta), "created": int(job.created),
        "createdby": job.createdby, "finished": int(job.finished), "error": job.error,
        "serialno": serial,
    })


def history_item(row: Any, metadata: Mapping[str, str], serial: str) -> HistoryItem:
    fields = _message_fields(row, metadata, serial)
    fields["msgqueueid"] = row.queueid
    fields["msgtransfertime"] = float(row.transfertime)
    return _new_history_item(fields)


def _message_fields(row: Any, metadata: Mapping[str, str], serial: str) -> dict[str, Any]:
    return {
        "id": row.id, "msgid": row.msgid, "msgts0": int(row.ts0), "msgts": int(row.ts),
        "msgfrom": row.sender, "msgto": row.rcpt, "msgsubject": utf8(row.subject),
        "msgsize": row.size, "msglistener": row.listener, "msgtransport": row.transport,
        "msgfromserver": row.fromserver, "msghelo": row.helo, "msgsasl": row.sasl,
        "msgaction": row.action, "msgquarantine": row.quarantine,
        "msgdescription": row.description, "msgerror": utf8(row.error),
        "msgretries": row.retries, "msgpath": row.path, "msgactionid": row.actionid,
        "msgscore": scores(row.score),
        "msgmetadata": [_new_pair({"first": k, "second": v}) for k, v in sorted(metadata.items())],
        "serialno": serial,
    }


# The engine name of the one score a node keeps (set by policy; 0 means nothing scored it).
SCORE_ENGINE = "policy"


def scores(score: float | None) -> list[Pair]:
    """msgscore as the old API's pair array (`first` engine, `second` score); empty if unscored."""
    if not score:
        return []
    return [_new_pair({"first": SCORE_ENGINE, "second": f"{float(score):g}"})]


def utf8(text: str | None) -> bytes:
    """Bytes for a base64Binary field; undecodable header bytes kept as they came."""
    if not text:
        return b""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
