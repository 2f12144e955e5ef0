"""Queue and history operations: search, count, group, single-id and bulk actions, fileRead."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from spyne import Boolean, ByteArray, Long, ServiceBase, Unicode, rpc
from sqlalchemy.orm import Session

from appliance.access.levels import spool_path_visible
from appliance.bounce.handling import bounce_all, bounce_entry
from appliance.errors import InvalidInput
from appliance.queue import bulk, query, trash
from appliance.queue import store as queue_store
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done
from appliance.soap.convert import history_item, queue_item
from appliance.soap.wire import GroupItem, GroupItems, HistoryItems, QueueItems, SearchOptions

PREVIEW_SAMPLE = 10  # entries a bulk preview shows by default
MAX_PREVIEW_SAMPLE = 1000

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
MAX_READ = 4 * 1024 * 1024  # fileRead bytes per call
BOUNCE_REASON = "bounced by an administrator"
_FILTER = {"filter_": "filter"}


class QueueService(ServiceBase):  # type: ignore[misc]
    @rpc(Unicode, Long, Long, SearchOptions, _in_arg_names=_FILTER,
         _returns=(QueueItems, Long), _out_variable_names=("result", "totalhits"))
    def mailQueue(ctx: Any, filter_: str | None, offset: int | None, limit: int | None,
                  options: SearchOptions | None) -> tuple[list[Any], int | None]:
        return _search(ctx.udc, filter_, offset, limit, options, history=False)

    @rpc(Unicode, Long, Long, SearchOptions, _in_arg_names=_FILTER,
         _returns=(HistoryItems, Long), _out_variable_names=("result", "totalhits"))
    def mailHistory(ctx: Any, filter_: str | None, offset: int | None, limit: int | None,
                    options: SearchOptions | None) -> tuple[list[Any], int | None]:
        return _search(ctx.udc, filter_, offset, limit, options, history=True)

    @rpc(Unicode, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result")
    def mailQueueCount(ctx: Any, filter_: str | None) -> int:
        call: Call = ctx.udc
        where = call.where(filter_)
        with call.read() as session:
            return query.count(session, where)

    @rpc(Unicode, Unicode, _in_arg_names=_FILTER, _returns=GroupItems,
         _out_variable_name="result")
    def mailQueueGroupBy(ctx: Any, filter_: str | None, field: str | None) -> list[GroupItem]:
        call: Call = ctx.udc
        where = call.where(filter_)
        with call.read() as session:
            rows = query.group_by(session, where, field or "", now=call.now())
        return [GroupItem(key=r.key, count=r.count, buckets=list(r.buckets)) for r in rows]

    @rpc(Long, Boolean, _udd=MUTATING)
    def mailQueueRetry(ctx: Any, id: int | None, duplicate: bool | None) -> None:
        call: Call = ctx.udc
        entry_id = _id(id)

        def act(session: Session, where: Any) -> None:
            queue_store.retry(session, entry_id, now=call.now(), duplicate=bool(duplicate),
                              where=where)

        _single(call, {"id": entry_id, "duplicate": bool(duplicate)}, act)
        if call.node.kick_delivery is not None:
            call.node.kick_delivery()

    @rpc(Long, _udd=MUTATING)
    def mailQueueBounce(ctx: Any, id: int | None) -> None:
        call: Call = ctx.udc
        entry_id = _id(id)

        def act(session: Session, where: Any) -> str | None:
            entry = queue_store.get_entry(session, entry_id, where=where)
            return bounce_entry(session, call.node.spool, entry, reason=BOUNCE_REASON,
                                now=call.now(), hostname=call.node.hostname)

        _single(call, {"id": entry_id}, act)

    @rpc(Long, _udd=MUTATING)
    def mailQueueDelete(ctx: Any, id: int | None) -> None:
        call: Call = ctx.udc
        entry_id = _id(id)
        # Into the trash (mailTrashRestore undoes it) with a DELETE history row, as before.
        _single(call, {"id": entry_id}, lambda s, where: trash.delete_one(
            s, entry_id, now=call.now(), by=call.principal.user, where=where))

    @rpc(Long, _udd=MUTATING)
    def mailQueueHold(ctx: Any, id: int | None) -> None:
        call: Call = ctx.udc
        entry_id = _id(id)
        _single(call, {"id": entry_id}, lambda s, where: queue_store.hold(
            s, entry_id, now=call.now(), where=where))

    @rpc(Long, Unicode, Unicode, _udd=MUTATING)
    def mailQueueMetaDataSet(ctx: Any, id: int | None, key: str | None, value: str | None) -> None:
        call: Call = ctx.udc
        entry_id = _id(id)
        _single(call, {"id": entry_id, "key": key, "value": value},
                lambda s, where: queue_store.set_metadata(
                    s, entry_id, key or "", value or "", where=where))

    @rpc(Unicode, Boolean, Boolean, _in_arg_names=_FILTER, _returns=Long,
         _out_variable_name="result", _udd=MUTATING)
    def mailQueueRetryBulk(ctx: Any, filter_: str | None, duplicate: bool | None,
                           preview: bool | None) -> int:
        call: Call = ctx.udc
        affected = _bulk(call, filter_, "retry", duplicate=bool(duplicate), preview=preview)
        if preview:
            return affected
        if affected and call.node.kick_delivery is not None:
            call.node.kick_delivery()
        return affected

    @rpc(Unicode, Boolean, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def mailQueueBounceBulk(ctx: Any, filter_: str | None, preview: bool | None) -> int:
        return _bulk(ctx.udc, filter_, "bounce", preview=preview)

    @rpc(Unicode, Boolean, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def mailQueueDeleteBulk(ctx: Any, filter_: str | None, preview: bool | None) -> int:
        return _bulk(ctx.udc, filter_, "delete", preview=preview)

    @rpc(Unicode, Boolean, _in_arg_names=_FILTER, _returns=Long, _out_variable_name="result",
         _udd=MUTATING)
    def mailQueueHoldBulk(ctx: Any, filter_: str | None, preview: bool | None) -> int:
        return _bulk(ctx.udc, filter_, "hold", preview=preview)

    @rpc(Unicode, Unicode, Long, _in_arg_names=_FILTER, _returns=(Long, QueueItems),
         _out_variable_names=("result", "sample"))
    def mailQueueBulkPreview(ctx: Any, filter_: str | None, action: str | None,
                             limit: int | None) -> tuple[int, list[Any]]:
        """What the bulk `action` over `filter` would take (the count and its first entries),
        changing nothing; the same as calling that bulk operation with `preview`."""
        call: Call = ctx.udc
        if (action or "") not in bulk.ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(bulk.ACTIONS)}")
        _, count = _page(0, limit, default=PREVIEW_SAMPLE, maximum=MAX_PREVIEW_SAMPLE,
                         what="limit")
        where = call.where(filter_)
        with call.read() as session:
            total, rows = bulk.preview(session, where, limit=count)
            meta = queue_store.metadata_of(session, [r.id for r in rows])
        return total, [queue_item(r, meta.get(r.id, {}), call.node.serial) for r in rows]

    @rpc(Unicode, Long, Long, _returns=(ByteArray, Long, Long),
         _out_variable_names=("data", "size", "offset"))
    def fileRead(ctx: Any, file: str | None, offset: int | None,
                 size: int | None) -> tuple[bytes, int, int]:
        call: Call = ctx.udc
        # As the old API: a size past the maximum reads the maximum (halonadm asks 999999999);
        # `size` says how much came back and `offset` where to continue.
        start, want = _page(offset, min(size, MAX_READ) if size is not None else None,
                            default=MAX_READ, maximum=MAX_READ, what="size")
        path = call.node.spool.resolve(file or "")  # refuses ../, absolute paths, symlinks out
        if call.level.restriction:
            with call.read() as session:
                spool_path_visible(session, file or "", queue_where=call.restriction(),
                                   history_where=call.restriction(history=True))
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(want)
        return data, len(data), start + len(data)


def _search(call: Call, text: str | None, offset: int | None, limit: int | None,
            options: SearchOptions | None, *, history: bool) -> tuple[list[Any], int | None]:
    start, count = _page(offset, limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT, what="limit")
    where = call.where(text, history=history)
    with_total = bool(options is not None and options.totalhits)
    with call.read() as session:
        rows, total = query.search(session, where, offset=start, limit=count, history=history,
                                   with_total=with_total)
        meta = queue_store.metadata_of(session, [r.id for r in rows], history=history)
    convert = history_item if history else queue_item
    return [convert(r, meta.get(r.id, {}), call.node.serial) for r in rows], total


def _single(call: Call, arguments: dict[str, Any],
            act: Callable[[Session, Any], str | list[str] | None]) -> None:
    """One entry, found only inside the caller's restriction; orphaned spool files go after commit."""
    where = call.restriction()

    def body(session: Session) -> Done[None]:
        orphan = act(session, where)
        orphans = [orphan] if isinstance(orphan, str) else list(orphan or [])
        return Done(value=None, orphans=orphans)

    call.mutate(arguments, body)
    log.info("api %s on queue id %s by %s", call.operation, arguments["id"], call.principal.user)


def _bulk(call: Call, text: str | None, action: str, *, duplicate: bool = False,
          preview: bool | None = None) -> int:
    where = call.where(text)
    node = call.node
    if preview:
        return _preview(call, where, {"filter": text or "", "duplicate": duplicate,
                                      "preview": True})

    now = call.now()

    def bounce_many(session: Session, entries: Any) -> list[str]:
        # Per chunk: recipients of one message share one DSN, written after the commit.
        return bounce_all(session, entries, reason=BOUNCE_REASON, now=now)

    def run(progress: Callable[[Session, int], None]) -> int:
        return bulk.act_on_matching(
            node.store, where, action, now=now, duplicate=duplicate, chunk=call.bulk_chunk(),
            bounce_many=bounce_many if action == "bounce" else None, on_paths=call.remove_orphans,
            in_chunk=progress, trash_by=call.principal.user if action == "delete" else None,
        )

    return call.mutate_chunked({"filter": text or "", "duplicate": duplicate}, run)


def _preview(call: Call, where: Any, arguments: dict[str, Any]) -> int:
    """A bulk call with `preview`: how many entries it would act on; nothing changes (the
    audit row says it was a preview, with 0 affected)."""
    with call.read() as session:
        total, _ = bulk.preview(session, where, limit=0)
    call.mutate(arguments, lambda session: Done(value=None, affected=0))
    return total


def _id(value: int | None) -> int:
    if value is None or value <= 0:
        raise InvalidInput("id must be a positive queue id")
    return int(value)


def _page(offset: int | None, limit: int | None, *, default: int, maximum: int,
          what: str) -> tuple[int, int]:
    start = 0 if offset is None else int(offset)
    count = default if limit is None else int(limit)
    if start < 0:
        raise InvalidInput("offset must be 0 or more")
    if not 0 < count <= maximum:
        raise InvalidInput(f"{what} must be 1 to {maximum}")
    return start, count
