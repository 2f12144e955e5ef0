"""Costly filters over SOAP: a bounded number of conditions, and a statement timeout per call."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from zeep.exceptions import Fault

from appliance.db.models import AuditRecord, QueueEntry
from appliance.hql.parser import MAX_CONDITIONS
from appliance.types import QueueState
from tests.e2e.soap.conftest import Api, running_api


def _items(result: object) -> list[object]:
    items = result["result"] if "result" in result else result  # type: ignore[index,operator]
    return list(getattr(items, "item", items) or [])


def test_too_many_conditions_is_a_positioned_filter_fault(api: Api) -> None:
    terms = [f"metadata.tenant=t{i}" for i in range(MAX_CONDITIONS + 1)]
    text = " or ".join(terms)
    client = api.zeep()
    for call in (lambda: client.service.mailQueue(filter=text, offset=0, limit=10),
                 lambda: client.service.mailQueueDeleteBulk(filter=text)):
        with pytest.raises(Fault) as caught:
            call()
        assert caught.value.code.endswith("Client.InvalidFilter")
        assert caught.value.message == (f"invalid filter at {text.rindex(terms[-1])}: more than "
                                        f"{MAX_CONDITIONS} conditions in one filter")


def test_300_metadata_terms_over_soap(api: Api) -> None:
    api.queue(rcpts=("a@x.example",), metadata={"tenant": "t7"})
    api.queue(rcpts=("b@x.example",), metadata={"tenant": "other"})
    text = " or ".join(f"metadata.tenant=t{i}" for i in range(300))
    items = _items(api.zeep().service.mailQueue(filter=text, offset=0, limit=10))
    assert [getattr(i, "msgto", None) for i in items] == ["a@x.example"]


def test_statement_timeout_is_a_clean_fault_and_changes_nothing(tmp_path: Path,
                                                                template_db: Path) -> None:
    with running_api(tmp_path, template_db, statement_timeout=0.05) as api:
        _statement_timeout_is_a_clean_fault_and_changes_nothing(api)


def _statement_timeout_is_a_clean_fault_and_changes_nothing(api: Api) -> None:
    api.queue(rcpts=tuple(f"r{i}@x.example" for i in range(3000)), state=QueueState.DEFER)
    # Each entry is tested against 500 patterns that the helo never matches: about 1.5 million
    # LIKE evaluations, far beyond 50 ms.
    slow = " or ".join(f"helo~nomatch{i}" for i in range(MAX_CONDITIONS - 1))
    client = api.zeep()
    for call in (lambda: client.service.mailQueue(filter=slow, offset=0, limit=10),
                 lambda: client.service.mailQueueHoldBulk(filter=f"({slow}) or to~%@x.example")):
        with pytest.raises(Fault) as caught:
            call()
        assert caught.value.code.endswith("Server.Timeout")
        assert "statement timeout (0.05 s)" in caught.value.message
    with api.store.transaction(read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(QueueEntry)
                              .where(QueueEntry.state == QueueState.HOLD.value)) == 0
        outcomes = list(session.scalars(select(AuditRecord.outcome)
                                        .where(AuditRecord.operation == "mailQueueHoldBulk")))
        assert len(outcomes) == 1 and "statement timeout" in outcomes[0], outcomes
    # Cheap calls still answer.
    assert len(_items(client.service.mailQueue(filter="to~r1", offset=0, limit=5))) == 5
