"""The interface document: built once from the application, in a deterministic (sorted) form."""

from __future__ import annotations

from typing import Any

from lxml import etree
from spyne.interface.wsdl import Wsdl11

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
# The address written into wsdl/appliance.wsdl; a node serves its own public URL instead.
PLACEHOLDER_URL = "https://appliance.invalid/remote/"


def interface_document(app: Any, url: str) -> bytes:
    """The WSDL for `app` with `url` as the soap:address, definitions sorted by name.

    Only the order of top-level definitions changes (never the order inside a sequence), so
    the document means the same to every client while its text stays stable across runs.
    """
    wsdl = Wsdl11(app.interface)
    wsdl.build_interface_document(url)
    root = etree.fromstring(wsdl.get_interface_document())
    _sort_children(root, f"{{{WSDL_NS}}}message")
    for schema in root.iter(f"{{{XSD_NS}}}schema"):
        _sort_children(schema, None)
    for parent in (*root.iter(f"{{{WSDL_NS}}}portType"), *root.iter(f"{{{WSDL_NS}}}binding")):
        _sort_children(parent, f"{{{WSDL_NS}}}operation")
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


def with_address(document: bytes, url: str) -> bytes:
    """The same document with another soap:address (to compare a node's WSDL with the file)."""
    root = etree.fromstring(document)
    for address in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
        address.set("location", url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


def _sort_children(parent: Any, tag: str | None) -> None:
    """Sort the children with `tag` (any element when None) by (tag, name); others keep place."""
    def sortable(el: Any) -> bool:
        return isinstance(el.tag, str) and (tag is None or el.tag == tag) and el.get("name")

    chosen = [el for el in parent if sortable(el)]
    if not chosen:
        return
    ordered = iter(sorted(chosen, key=lambda el: (el.tag, el.get("name"))))
    slots = [i for i, el in enumerate(parent) if sortable(el)]
    for i in slots:
        parent.insert(i, next(ordered))
