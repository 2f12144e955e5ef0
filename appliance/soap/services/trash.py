"""The trash of deleted queue entries (list, restore, purge) and throttled drain jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from spyne import Boolean, Long, ServiceBase, Unicode, rpc
from sqlalchemy.orm import Session

from appliance.errors import InvalidInput
from appliance.queue import jobs, trash
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done, required
from appliance.soap.convert import job_item, trash_item
from appliance.soap.wire import JobItems, SearchOptions, TrashItems

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
_FILTER = {"filter_": "filter"}


class TrashService(ServiceBase):  # type: ignore[misc]
    @rpc(Unicode, Long, Long, SearchOptions, _in_arg_names=_FILTER,
         _returns=(TrashItems, Long), _out_variable_names=("result", "totalhits"))
    def mailTrash(ctx: Any, filter_: str | None, offset: int | None, limit: int | None,
                  options: SearchOptions | None) -> tuple[list[Any], int | None]:
        """Deleted entries still restorable, most recently deleted first; HQL on the queue's
        fields plus `deleted` (Unix time) and `deletedby` (user)."""
        call: Call = ctx.udc
        start, count = _page(offset, limit)
        where = call.where(filter_, trash=True)
        with call.read() as session:
            rows, total = trash.search(session, where, offset=start, limit=count,
                                       with_total=bool(options is not None and options.totalhits))
            meta = trash.metadata_of(session, [r.id for r in rows])
        return [trash_item(r, meta.get(r.id, {}), call.node.serial) for r in rows], total

    @rpc(Unicode, Boolean, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def mailTrashRestore(ctx: Any, filter_: str | None, preview: bool | None) -> int:
        """Put the matching trashed entries back in the queue as they were; how many."""
        call: Call = ctx.udc
        where = call.where(filter_, trash=True)
        arguments = {"filter": filter_ or "", "preview": bool(preview)}
        if preview:
            return _preview(call, where, arguments)
        kick = call.node.kick_delivery

        def run(progress: Callable[[Session, int], None]) -> int:
            return trash.restore(call.node.store, where, now=call.now(), chunk=call.bulk_chunk(),
                                 in_chunk=progress, after_chunk=(lambda _n: kick()) if kick is not None else None)

        return call.mutate_chunked(arguments, run)

    @rpc(Unicode, Boolean, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def mailTrashPurge(ctx: Any, filter_: str | None, preview: bool | None) -> int:
        """Remove the matching trashed entries for good (their bodies too); how many."""
        call: Call = ctx.udc
        where = call.where(filter_, trash=True)
        arguments = {"filter": filter_ or "", "preview": bool(preview)}
        if preview:
            return _preview(call, where, arguments)

        def run(progress: Callable[[Session, int], None]) -> int:
            return trash.purge(call.node.store, where, now=call.now(), chunk=call.bulk_chunk(),
                               in_chunk=progress, on_paths=call.remove_orphans)

        return call.mutate_chunked(arguments, run)

    @rpc(Unicode, Unicode, Long, _in_arg_names=_FILTER, _returns=Long,
         _out_variable_name="result", _udd=MUTATING)
    def mailQueueDrain(ctx: Any, filter_: str | None, action: str | None,
                       per_minute: int | None) -> int:
        """A job that retries, bounces or deletes the matching entries at `per_minute` until
        none match; returns its id (mailQueueJobList shows it)."""
        call: Call = ctx.udc
        what = required(action, "action")
        rate = required(per_minute, "per_minute")
        # Checked (with the caller's restriction) before anything is written.
        call.where(filter_)

        def body(session: Session) -> Done[int]:
            job_id = jobs.create(session, filter=filter_ or "", action=what, per_minute=int(rate),
                                 restriction=call.level.restriction or "",
                                 by=call.principal.user, now=call.now())
            return Done(value=job_id, affected=1)

        return call.mutate({"filter": filter_ or "", "action": what, "per_minute": rate}, body)

    @rpc(_returns=JobItems, _out_variable_name="result")
    def mailQueueJobList(ctx: Any) -> list[Any]:
        """Queue jobs, newest first: state, done, remaining, rate and ETA."""
        call: Call = ctx.udc
        with call.read() as session:
            found = jobs.list_jobs(session, restriction=_scope(call), now=call.now())
        return [job_item(job, call.node.serial) for job in found]

    @rpc(Long, _udd=MUTATING)
    def mailQueueJobCancel(ctx: Any, id: int | None) -> None:  # noqa: A002 - the API's name
        """Stop a running job; what it did so far stays done."""
        call: Call = ctx.udc
        if id is None or id <= 0:
            raise InvalidInput("id must be a positive job id")
        job_id = int(id)

        def body(session: Session) -> Done[None]:
            jobs.cancel(session, job_id, restriction=_scope(call), now=call.now())
            return Done(value=None)

        call.mutate({"id": job_id}, body)


def _scope(call: Call) -> str | None:
    """Which jobs a caller sees: all (None) unless its level is restricted."""
    return call.level.restriction or None


def _preview(call: Call, where: Any, arguments: dict[str, Any]) -> int:
    with call.read() as session:
        total = trash.count(session, where)
    call.mutate(arguments, lambda session: Done(value=None, affected=0))
    return total


def _page(offset: int | None, limit: int | None) -> tuple[int, int]:
    start = 0 if offset is None else int(offset)
    count = DEFAULT_LIMIT if limit is None else int(limit)
    if start < 0:
        raise InvalidInput("offset must be 0 or more")
    if not 0 < count <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}")
    return start, count
