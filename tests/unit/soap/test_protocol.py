"""ApplianceSoap11 writes exactly the bytes stock Spyne Soap11 writes, for every operation."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spyne import Fault, MethodContext
from spyne.model import Array, ComplexModelBase
from spyne.model.binary import ByteArray
from spyne.model.primitive import Boolean, Double, Integer, Unicode
from spyne.protocol.soap import Soap11
from spyne.server import ServerBase

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.soap.app import ApplianceApplication, build_application
from appliance.soap.convert import history_item, queue_item
from appliance.soap.protocol import WRITE_FAILED, ApplianceSoap11, xml_text
from appliance.soap.wire import GroupItem, HistoryItem, Pair, QueueItem, filler

FAST = build_application(node=None)
STOCK = build_application(node=None, out_protocol=Soap11())
OPERATIONS = sorted(name.split("}")[1] for name in FAST.interface.service_method_map)


def render(app: ApplianceApplication, operation: str, out: Any = None, *,
           error: Exception | None = None) -> bytes:
    """The response document `app` sends for `out` (or for the fault `error`)."""
    ctx = MethodContext(ServerBase(app), MethodContext.SERVER)
    ctx.descriptor = app.interface.service_method_map["{urn:halon}" + operation][0]
    ctx.out_object = out
    ctx.out_error = error
    app.out_protocol.serialize(ctx, app.out_protocol.RESPONSE)
    app.out_protocol.create_out_string(ctx)
    return b"".join(ctx.out_string)


def same_response(operation: str, out: Any = None, *, error: Exception | None = None) -> bytes:
    """Both renderings, asserted equal; where stock Spyne cannot write the text at all (a
    character XML 1.0 cannot carry), ours must still be a well-formed document."""
    try:
        expected = render(STOCK, operation, out, error=error)
    except Exception:  # text lxml refuses, or a value of the wrong type (then a Server fault)
        written = render(FAST, operation, out, error=error)
        etree.fromstring(written)
        return written
    assert render(FAST, operation, out, error=error) == expected
    return expected


def test_the_application_uses_the_fast_writer() -> None:
    assert isinstance(FAST.out_protocol, ApplianceSoap11)
    assert type(STOCK.out_protocol) is Soap11


# Representative queue and history rows, as the store hands them to convert.py.
def entry(n: int, **overrides: Any) -> QueueEntry:
    fields: dict[str, Any] = dict(
        id=n, msgid=f"5f0c6d4e-0000-4000-8000-{n:012d}", ts0=1_700_000_000.75 + n,
        ts=1_700_000_100.25 + n, sender=f"alice{n}@sender.example", sender_domain="sender.example",
        rcpt=f"bob{n}@outside.example", rcpt_domain="outside.example", subject=f"hello {n}",
        size=1024 * n, listener="inbound", transport="default", fromserver="192.0.2.7",
        helo="client.example", sasl="", action="", quarantine="", description="",
        error="", retries=n % 4, path=f"5f/{n}.eml", actionid=n * 3, jobid="", score=n / 7,
        is_dsn=0, state="DEFER", next_retry=1_700_000_500.5,
    )
    fields.update(overrides)
    return QueueEntry(**fields)


def history(n: int, **overrides: Any) -> HistoryEntry:
    row = entry(n)
    fields = {c: getattr(row, c) for c in ("msgid", "ts0", "ts", "sender", "sender_domain", "rcpt",
              "rcpt_domain", "subject", "size", "listener", "transport", "fromserver", "helo",
              "sasl", "action", "quarantine", "description", "error", "retries", "path",
              "actionid", "jobid", "score", "is_dsn")}
    fields.update(id=n + 1000, queueid=n, transfertime=0.125 * n, action="DELIVER")
    fields.update(overrides)
    return HistoryEntry(**fields)


SPECIAL = {
    "non-ascii subject": dict(subject="Grüße – 日本語 ✉ 🙂",
                              description="naïve <tag> & \"quotes\" 'x'"),
    "binary subject": dict(subject=b"caf\xe9 \xff\xfe raw".decode("utf-8", "surrogateescape"),
                           error="550 5.1.1 <bob@outside.example>: unknown\r\nuser"),
    "markup and line ends": dict(sender="a&b@x.example", rcpt="<r>@x.example",
                                 helo="h\r\nx\ty", sasl="  spaced  ", quarantine="spam>"),
    "quarantined": dict(state="HOLD", action="QUARANTINE", quarantine="spam",
                        description="quarantined by policy", score=12.5, retries=0),
    "large numbers": dict(id=2**62, size=2**40, actionid=2**31 - 1, retries=99, score=1e-300,
                          ts0=0.0, next_retry=2**33 + 0.5),
}
METADATA = {"tenant": "a", "x-score": "9.5", "empty": "", "ünï": "<v&l>", "line": "a\r\nb"}


@pytest.mark.parametrize("count", [0, 1, 3, 100])
def test_mail_queue_pages(count: int) -> None:
    items = [queue_item(entry(n), METADATA if n % 2 else {}, "SERIAL-1") for n in range(count)]
    for total in (None, 0, count, 123_456):
        body = same_response("mailQueue", (items, total))
        scored = sum(1 for n in range(count) if n)  # msgscore: one (engine, score) pair if scored
        assert body.count(b"<tns:item>") == count + (count // 2) * len(METADATA) + scored
        assert (b"<tns:totalhits>" in body) == (total is not None)


@pytest.mark.parametrize("count", [0, 1, 100])
def test_mail_history_pages(count: int) -> None:
    items = [history_item(history(n), METADATA if n % 3 else {}, "SERIAL-1") for n in range(count)]
    same_response("mailHistory", (items, None))
    same_response("mailHistory", (items, count))


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_unusual_field_values(case: str) -> None:
    queue = [queue_item(entry(7, **SPECIAL[case]), METADATA, "SERIAL-é")]
    body = same_response("mailQueue", (queue, 1))
    assert b"&lt;" in body or case not in ("markup and line ends",)
    shared = {k: v for k, v in SPECIAL[case].items() if k not in ("state", "next_retry")}
    hist = [history_item(history(7, **shared), METADATA, "SERIAL-é")]
    same_response("mailHistory", (hist, None))


def test_none_fields_are_omitted_alike() -> None:
    item = queue_item(entry(1), {}, "S")
    for name in ("msgfrom", "msgsubject", "msgscore", "msgmetadata", "serialno", "id"):
        setattr(item, name, None)
    body = same_response("mailQueue", ([item], None))
    assert b"<tns:msgfrom>" not in body and b"msgmetadata" not in body and b"<tns:msgto>" in body


def test_values_of_other_types_take_spynes_path() -> None:
    """Wrong or unusual Python types are written by Spyne itself, so they come out the same."""
    item = queue_item(entry(1), {"k": "v"}, "S")
    item.msgsize = True  # a bool in a Long: Spyne writes "True"
    item.msgscore = [Pair(first="policy", second=3)]  # an int in a Unicode
    item.msgretries = "4"  # a str in an Integer
    item.msgsubject = [b"chunk one ", b"chunk two"]  # ByteArray as a sequence of chunks
    item.msgmetadata = [None, Pair(first="a", second=None), ("t", "u")]
    same_response("mailQueue", ([item, None], 2))


def test_faults_are_unchanged() -> None:
    same_response("mailQueue", error=Fault(
        faultcode="Client.InvalidFilter", faultstring="invalid filter at 3: unknown field 'frm' <&>"))
    same_response("getSerial", error=Fault(faultcode="Server", faultstring="internal error"))


def test_text_xml_cannot_carry_is_replaced_readably() -> None:
    assert xml_text("a\x00b\x01c\x1fd\te\nf\rg") == "a\u2400b\u2401c\u241fd\te\nf\rg"
    assert xml_text("s\udce9\ufffe\uffff") == "s\ufffd\ufffd\ufffd"
    assert xml_text("Grüße ✉ 🙂 \x7f") == "Grüße ✉ 🙂 \x7f"  # valid XML is left alone


def test_control_characters_are_written_as_control_pictures() -> None:
    item = queue_item(entry(1, sender="bad\x00\x01char", helo="h\x07"), {"k\x02": "v\x03"}, "S")
    with pytest.raises(ValueError):
        render(STOCK, "mailQueue", ([item], None))
    doc = etree.fromstring(render(FAST, "mailQueue", ([item], None)))
    texts = {e.tag.split("}")[1]: e.text for e in doc.iter() if isinstance(e.tag, str)}
    assert texts["msgfrom"] == "bad\u2400\u2401char" and texts["msghelo"] == "h\u2407"
    assert texts["first"] == "k\u2402" and texts["second"] == "v\u2403"


def test_group_keys_and_fault_strings_are_made_safe() -> None:
    doc = etree.fromstring(render(FAST, "mailQueueGroupBy", [[GroupItem(
        key="x\x00.example", count=1, buckets=[1])]]))
    assert [e.text for e in doc.iter("{urn:halon}key")] == ["x\u2400.example"]
    fault = etree.fromstring(render(FAST, "getSerial", error=Fault(
        faultcode="Client", faultstring="bad \x00 value")))
    assert fault.findtext(".//faultstring") == "bad \u2400 value"


def test_a_value_that_cannot_be_written_is_a_server_fault() -> None:
    ctx = MethodContext(ServerBase(FAST), MethodContext.SERVER)
    ctx.descriptor = FAST.interface.service_method_map["{urn:halon}getSerial"][0]
    ctx.out_object = [object()]  # not a string: Spyne's own path raises
    FAST.out_protocol.serialize(ctx, FAST.out_protocol.RESPONSE)
    FAST.out_protocol.create_out_string(ctx)
    doc = etree.fromstring(b"".join(ctx.out_string))
    assert doc.findtext(".//faultcode") == "soap11env:Server"
    assert doc.findtext(".//faultstring") == WRITE_FAILED


# Every operation of the service, with values drawn from its declared return types.
def values_of(cls: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    if issubclass(cls, Array) or (issubclass(cls, ComplexModelBase)
                                  and cls.Attributes.max_occurs > 1 and depth > 0):
        inner = cls.get_inner_type() if issubclass(cls, Array) else cls.customize(max_occurs=1)
        return st.lists(st.none() | values_of(inner, depth + 1), max_size=3)
    if issubclass(cls, ComplexModelBase):
        fields = cls.get_flat_type_info(cls)
        return st.fixed_dictionaries(
            {k: st.none() | values_of(v, depth + 1) for k, v in fields.items()}
        ).map(lambda values: cls.get_orig()(**values))
    if issubclass(cls, ByteArray):
        return st.binary(max_size=40)
    if issubclass(cls, Boolean):
        return st.booleans()
    if issubclass(cls, Integer):
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if issubclass(cls, Double):
        return st.floats(allow_nan=False)
    if issubclass(cls, Unicode):
        return st.text(max_size=30)
    raise AssertionError(f"no strategy for {cls!r}")


def results_of(operation: str) -> st.SearchStrategy[list[Any]]:
    out = FAST.interface.service_method_map["{urn:halon}" + operation][0].out_message
    return st.tuples(*(st.none() | values_of(t) for t in out._type_info.values())).map(list)


@pytest.mark.parametrize("operation", OPERATIONS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_operation_renders_like_stock_spyne(operation: str, data: st.DataObject) -> None:
    same_response(operation, data.draw(results_of(operation)))


def test_filler_makes_what_the_constructor_makes() -> None:
    for item in (queue_item(entry(3), METADATA, "S"), history_item(history(3), METADATA, "S")):
        cls = type(item)
        values = dict(item.__dict__)
        assert filler(cls)(dict(values)).__dict__ == cls(**values).__dict__
        assert set(values) == set(cls.get_flat_type_info(cls))
    pair = filler(Pair)({"first": "a", "second": "b"})
    assert pair.__dict__ == Pair(first="a", second="b").__dict__


def test_filler_refuses_missing_or_unknown_fields_and_defaults() -> None:
    make = filler(QueueItem)
    values = dict(queue_item(entry(1), {}, "S").__dict__)
    with pytest.raises(TypeError, match="msgto"):
        make({k: v for k, v in values.items() if k != "msgto"})
    with pytest.raises(TypeError, match="bogus"):
        make({**values, "bogus": 1})
    with pytest.raises(TypeError):
        filler(QueueItem.customize(max_occurs=2))
    assert isinstance(filler(HistoryItem)(dict(history_item(history(1), {}, "S").__dict__)),
                      HistoryItem)
