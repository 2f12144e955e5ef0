"""The published contract: wsdl/appliance.wsdl is exactly what the service describes."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from appliance.soap.app import build_application
from appliance.soap.wsdl import PLACEHOLDER_URL, interface_document, with_address

WSDL_FILE = Path(__file__).resolve().parents[3] / "wsdl" / "appliance.wsdl"
NS = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "xs": "http://www.w3.org/2001/XMLSchema"}


def test_file_matches_the_service() -> None:
    rendered = interface_document(build_application(node=None), PLACEHOLDER_URL)
    assert rendered == WSDL_FILE.read_bytes(), (
        "the SOAP surface changed: review it and run `python tools/export_wsdl.py`")


def test_rendering_is_deterministic_and_sorted() -> None:
    app = build_application(node=None)
    first = interface_document(app, "http://127.0.0.1:1/remote/")
    assert first == interface_document(build_application(node=None), "http://127.0.0.1:1/remote/")
    root = etree.fromstring(first)
    ops = [o.get("name") for o in root.xpath("//wsdl:portType/wsdl:operation", namespaces=NS)]
    assert ops == sorted(ops) and "mailQueue" in ops and "fileRead" in ops
    assert with_address(first, PLACEHOLDER_URL) == WSDL_FILE.read_bytes()


def test_wire_shape_of_key_operations() -> None:
    root = etree.fromstring(WSDL_FILE.read_bytes())

    def children(type_name: str) -> list[str]:
        xpath = f"//xs:complexType[@name='{type_name}']/xs:sequence/xs:element/@name"
        return [str(n) for n in root.xpath(xpath, namespaces=NS)]

    assert children("mailQueueResponse") == ["result", "totalhits"]
    assert children("mailHistoryResponse") == ["result", "totalhits"]
    assert children("fileReadResponse") == ["data", "size", "offset"]
    assert children("mailQueueCountResponse") == ["result"]
    assert children("queueItemArray") == ["item"]
    assert children("mailQueue") == ["filter", "offset", "limit", "options"]
    queue_item = children("queueItem")
    assert queue_item[:2] == ["id", "msgid"] and "serialno" in queue_item
    for name in ("msgsubject", "msgerror"):
        [el] = root.xpath(f"//xs:complexType[@name='queueItem']//xs:element[@name='{name}']",
                          namespaces=NS)
        assert el.get("type") == "xs:base64Binary"
