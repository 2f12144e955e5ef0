"""Throttled drains: release (retry), bounce or delete the entries matching a filter at a
bounded rate until none match, as jobs persisted in the store (a restart resumes them).

A job walks the queue in id order behind a cursor, so an entry it released and that is
deferred again is not taken twice, while mail that arrives later and matches is included.
Each step acts on at most the job's credit (entries per minute / 60 per second, never more
than one second's worth at once, so a restart or a stalled process does not burst) and
commits the entries' change with the job's progress in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.db.models_trash import QueueJob
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.hql import compile_filter, restrict
from appliance.queue.bulk import BulkBouncer, act_on_chunk, next_ids

log = logging.getLogger(__name__)

ACTIONS = ("retry", "bounce", "delete")
MAX_PER_MINUTE = 600_000
RUNNING, DONE, CANCELLED, FAILED = "RUNNING", "DONE", "CANCELLED", "FAILED"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progress:
    """A job as its owner sees it."""

    id: int
    action: str
    filter: str
    per_minute: int
    state: str
    done: int
    remaining: int
    rate: float  # entries per minute achieved since it started
    eta: float  # seconds until done at per_minute (0 when not running)
    created: float
    createdby: str
    finished: float
    error: str


def burst(per_minute: int) -> float:
    """The most a job may act on in one step: one second's worth, at least one entry."""
    return max(1.0, per_minute / 60.0)


def credit_after(credit: float, *, per_minute: int, elapsed: float) -> float:
    """A job's credit after `elapsed` seconds (pure): it grows at per_minute and is capped."""
    return min(burst(per_minute), credit + max(0.0, elapsed) * per_minute / 60.0)


def eta(remaining: int, per_minute: int) -> float:
    return remaining * 60.0 / per_minute if per_minute > 0 else 0.0


def create(session: Session, *, filter: str, action: str, per_minute: int, restriction: str,  # noqa: A002
           by: str, now: float) -> int:
    """A new running drain job; the filter is checked here (and kept with the caller's level
    restriction, which every step applies)."""
    if action not in ACTIONS:
        raise InvalidInput(f"drain action must be one of {', '.join(ACTIONS)}, not '{action}'")
    if isinstance(per_minute, bool) or not isinstance(per_minute, int) \
            or not 1 <= per_minute <= MAX_PER_MINUTE:
        raise InvalidInput(f"per_minute must be 1 to {MAX_PER_MINUTE}")
    compile_filter(restrict(restriction, filter))
    job = QueueJob(kind="drain", action=action, filter=filter, restriction=restriction,
                   per_minute=per_minute, state=RUNNING, done=0, cursor=0, credit=0.0,
                   last_tick=now, created=now, createdby=by[:128], finished=0.0, error="")
    session.add(job)
    session.flush()
    return int(job.id)


def condition(job: QueueJob) -> ColumnElement[bool]:
    return compile_filter(restrict(job.restriction, job.filter))


def _visible(restriction: str | None) -> ColumnElement[bool] | None:
    # A restricted user sees the jobs made under the same restriction (its own scope).
    return None if restriction is None else QueueJob.restriction == restriction


def list_jobs(session: Session, *, restriction: str | None, now: float,
              limit: int = 100) -> list[Progress]:
    """The newest jobs first, with what is left of each running one."""
    stmt = select(QueueJob).order_by(QueueJob.id.desc()).limit(limit)
    seen = _visible(restriction)
    jobs = list(session.scalars(stmt if seen is None else stmt.where(seen)))
    return [progress(session, job, now=now) for job in jobs]


def progress(session: Session, job: QueueJob, *, now: float) -> Progress:
    remaining = 0
    if job.state == RUNNING:
        try:
            remaining = int(session.scalar(select(func.count()).select_from(QueueEntry).where(
                and_(QueueEntry.id > job.cursor, condition(job)))) or 0)
        except InvalidInput:
            remaining = 0
    end = job.finished if job.state != RUNNING and job.finished else now
    elapsed = max(end - job.created, 1e-9)
    return Progress(
        id=job.id, action=job.action, filter=job.filter, per_minute=job.per_minute,
        state=job.state, done=job.done, remaining=remaining,
        rate=round(job.done * 60.0 / elapsed, 2) if job.done else 0.0,
        eta=round(eta(remaining, job.per_minute), 1) if job.state == RUNNING else 0.0,
        created=job.created, createdby=job.createdby, finished=job.finished, error=job.error)


def cancel(session: Session, job_id: int, *, restriction: str | None, now: float) -> None:
    stmt = select(QueueJob).where(QueueJob.id == job_id).with_for_update()
    seen = _visible(restriction)
    job = session.scalars(stmt if seen is None else stmt.where(seen)).one_or_none()
    if job is None:
        raise NotFound(f"no queue job {job_id}")
    if job.state != RUNNING:
        raise Conflict(f"queue job {job_id} is {job.state}, not running")
    job.state = CANCELLED
    job.finished = now
    session.flush()


def running(store: Store) -> list[int]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(QueueJob.id).where(QueueJob.state == RUNNING)
                                    .order_by(QueueJob.id)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepResult:
    acted: int
    orphans: list[str]
    finished: bool


def step(store: Store, job_id: int, *, now: float, bounce_many: BulkBouncer | None,
         trash_by: Callable[[QueueJob], str]) -> StepResult:
    """One step of a running job: act on as many next matching entries as its credit allows,
    in one transaction with its progress; the job is DONE when none are left."""
    with store.transaction() as session:
        job = session.scalars(select(QueueJob).where(QueueJob.id == job_id, QueueJob.state == RUNNING)
                              .with_for_update()).one_or_none()
        if job is None:
            return StepResult(acted=0, orphans=[], finished=True)
        try:
            cond = condition(job)
        except InvalidInput as exc:  # e.g. a restriction that no longer parses
            _finish(job, FAILED, now, str(exc))
            return StepResult(acted=0, orphans=[], finished=True)
        credit = credit_after(job.credit, per_minute=job.per_minute, elapsed=now - job.last_tick)
        job.last_tick = now
        allowed = int(credit)
        if allowed < 1:
            job.credit = credit
            return StepResult(acted=0, orphans=[], finished=False)
        ceiling = session.scalar(select(func.max(QueueEntry.id))) or 0
        ids = next_ids(session, cond, after=job.cursor, ceiling=ceiling, limit=allowed)
        if not ids:
            job.credit = credit
            _finish(job, DONE, now, "")
            return StepResult(acted=0, orphans=[], finished=True)
        acted, orphans = act_on_chunk(
            session, ids, cond, job.action, now=now, duplicate=False, bounce=None,
            bounce_many=bounce_many, trash_by=trash_by(job) if job.action == "delete" else None)
        job.cursor = ids[-1]
        job.done += acted
        job.credit = credit - len(ids)
        session.flush()
    return StepResult(acted=acted, orphans=orphans, finished=False)


def _finish(job: Any, state: str, now: float, error: str) -> None:
    job.state = state
    job.finished = now
    job.error = error[:500]
    log.info("queue job %d (%s) %s after %d entries%s", job.id, job.action, state.lower(),
             job.done, f": {error}" if error else "")
