"""Every failed mutating call leaves an audit row, also when it fails before the domain call."""

from __future__ import annotations

import json

import pytest
import requests
from zeep.exceptions import Fault

from appliance.access.audit import recent
from tests.e2e.soap.conftest import Api


def _last(api: Api, operation: str) -> list[tuple[str, str, dict]]:
    with api.store.transaction(read_only=True) as s:
        return [(r.username, r.outcome, json.loads(r.arguments.rstrip("…")))
                for r in recent(s, limit=50) if r.operation == operation]


@pytest.mark.parametrize("operation", ["mailQueueDeleteBulk", "mailQueueHoldBulk",
                                       "mailQueueBounceBulk", "mailQueueRetryBulk"])
def test_bulk_action_with_an_invalid_filter(api: Api, operation: str) -> None:
    api.queue()
    with pytest.raises(Fault, match="invalid filter"):
        getattr(api.zeep().service, operation)(filter="frm=x")
    [(user, outcome, args)] = _last(api, operation)
    assert user == "admin" and outcome.startswith("fault: invalid filter")
    assert args["filter"] == "frm=x"


@pytest.mark.parametrize("entry_id", [0, -5])
def test_single_id_actions_with_a_non_positive_id(api: Api, entry_id: int) -> None:
    c = api.zeep()
    for call in (lambda: c.service.mailQueueDelete(id=entry_id),
                 lambda: c.service.mailQueueRetry(id=entry_id),
                 lambda: c.service.mailQueueHold(id=entry_id),
                 lambda: c.service.mailQueueBounce(id=entry_id),
                 lambda: c.service.mailQueueMetaDataSet(id=entry_id, key="k", value="v")):
        with pytest.raises(Fault, match="positive queue id"):
            call()
    for operation in ("mailQueueDelete", "mailQueueRetry", "mailQueueHold", "mailQueueBounce",
                      "mailQueueMetaDataSet"):
        [(_, outcome, args)] = _last(api, operation)
        assert outcome == "fault: id must be a positive queue id" and args["id"] == entry_id


def test_user_delete_of_oneself(api: Api) -> None:
    with pytest.raises(Fault, match="cannot delete itself"):
        api.zeep().service.userDelete(username="admin")
    [(user, outcome, args)] = _last(api, "userDelete")
    assert user == "admin" and "cannot delete itself" in outcome and args == {"username": "admin"}


def test_user_add_with_a_bad_restriction(api: Api) -> None:
    with pytest.raises(Fault, match="invalid filter"):
        api.zeep().service.userAdd(username="t2", password="sekrit-pw", role="custom",
                                   restriction="to~ and (")
    [(_, outcome, args)] = _last(api, "userAdd")
    assert outcome.startswith("fault: invalid filter")
    assert args["username"] == "t2" and args["restriction"] == "to~ and ("
    assert args["password"] == "***"  # never the password itself
    with api.store.transaction(read_only=True) as s:
        assert all("sekrit-pw" not in r.arguments for r in recent(s))


def test_command_run_with_non_utf8_argv(api: Api) -> None:
    with pytest.raises(Fault, match=r"argv\[1\] is not UTF-8"):
        api.zeep().service.commandRun(argv={"item": [b"searchlog", b"\xff\xfe"]}, cols=80, rows=24)
    [(_, outcome, args)] = _last(api, "commandRun")
    assert outcome == "fault: argv[1] is not UTF-8"
    assert args["argv"] == ["searchlog", "\\xff\\xfe"]  # the bytes, escaped


def test_missing_required_argument_and_readonly_refusal_once_each(api: Api) -> None:
    c = api.zeep()
    with pytest.raises(Fault, match="username is required"):
        c.service.userPasswordSet(username="", password="x")
    with pytest.raises(Fault, match="access denied"):
        api.zeep("viewer").service.mailQueueDeleteBulk(filter="frm=x")
    assert [o for _, o, _ in _last(api, "userPasswordSet")] == ["fault: username is required"]
    # a refused call is audited once, by the access check, not again by the wrapper
    [(user, outcome, _)] = _last(api, "mailQueueDeleteBulk")
    assert user == "viewer" and outcome.startswith("fault: access denied")


def test_failures_inside_the_domain_call_are_still_audited_once(api: Api) -> None:
    with pytest.raises(Fault, match="no queue entry"):
        api.zeep().service.mailQueueDelete(id=987654)
    assert len(_last(api, "mailQueueDelete")) == 1
    api.zeep().service.mailQueueCount(filter="")
    assert _last(api, "mailQueueCount") == []


def test_arguments_that_cannot_be_read_are_audited(api: Api) -> None:
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:h="urn:halon"><soapenv:Body><h:mailQueueDelete><h:id>abc</h:id>'
        '</h:mailQueueDelete></soapenv:Body></soapenv:Envelope>')
    resp = requests.post(api.url, data=body.encode(), auth=("admin", "admin-pw"), timeout=30,
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": '"mailQueueDelete"'})
    assert resp.status_code == 500 and b"faultstring" in resp.content
    [(user, outcome, args)] = _last(api, "mailQueueDelete")
    assert user == "admin" and outcome.startswith("fault: ") and args == {}
    # the same for a read leaves nothing
    resp = requests.post(api.url, data=body.replace("mailQueueDelete", "mailQueue")
                         .replace("<h:id>abc</h:id>", "<h:offset>abc</h:offset>").encode(),
                         auth=("admin", "admin-pw"), timeout=30,
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": '"mailQueue"'})
    assert resp.status_code == 500 and b"faultstring" in resp.content
    assert _last(api, "mailQueue") == []
