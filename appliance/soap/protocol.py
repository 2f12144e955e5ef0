"""Spyne's Soap11 with a compiled writer for complex types: the same bytes, several times faster.

Spyne serializes each field of each item through several generic calls (polymorphism check,
attribute lookup, handler lookup, a detached element, namespace reconciliation on append):
20-30 µs a field, 60-90 ms for a 100-item mailQueue. `ApplianceSoap11` replaces only its
`complex_to_parent` (under 10 ms for the same page): per complex class it compiles once which
element each field becomes and how its value is written, and writes the common values (str,
int, float, bool, bytes as base64) straight into the tree with `SubElement`. Every other case
goes through Spyne's own `to_parent` for that one field (None in a required field, other value
types, attributes, Any*, ...), and anything the writer does not model at all (polymorphism,
incremental output, push iterables) falls back to Spyne for the whole element. Faults, headers
and the envelope stay Spyne's.
tests/unit/soap/test_protocol.py pins the output to stock Soap11's, byte for byte.

Text that XML 1.0 cannot carry (section 2.2, `Char`) never makes the response unparsable:
stored envelopes may hold NUL or other C0 control bytes (old rows, from before the SMTP door
refused them). Such text is written through `xml_text`: each C0 control other than tab, LF and
CR becomes its Unicode Control Picture (U+2400 + code: NUL -> U+2400 "␀", 0x07 -> U+2407),
which reads back unambiguously; lone surrogates and U+FFFE/U+FFFF become U+FFFD. Values that
are valid XML are written unchanged. Should writing still fail, the response is a Server fault
(HTTP 500), never a 200 with a half-written body.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from lxml import etree
from spyne.const.xml import DEFAULT_NS
from spyne.model import PushBase
from spyne.model.binary import BINARY_ENCODING_BASE64, BINARY_ENCODING_USE_DEFAULT
from spyne.protocol.soap import Soap11

from appliance.soap.faults import server_fault

log = logging.getLogger(__name__)

_SubElement = etree.SubElement
_b64encode = base64.b64encode

# Characters outside XML 1.0's Char production (section 2.2).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL_PICTURES = 0x2400
_REPLACEMENT = "\ufffd"
WRITE_FAILED = "the response could not be written (see the node log)"


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    return chr(_CONTROL_PICTURES + code) if code < 0x20 else _REPLACEMENT


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 cannot carry replaced (see the module docstring)."""
    return _NOT_XML.sub(_picture, text)


def _set_text(elt: Any, text: str) -> None:
    try:
        elt.text = text
    except ValueError:  # lxml refuses control characters; surrogates fail to encode
        elt.text = xml_text(text)

# How a field's value is written (see _Field.kind).
_OTHER, _STR, _INT, _FLOAT, _BOOL, _B64, _COMPLEX = range(7)


def _identity(text: str) -> str:
    return text


def _base64(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


# Per simple kind: the Python type written directly and its text, exactly as Spyne's to_unicode
# makes it (unicode_to_unicode, integer_to_unicode, double_to_unicode, boolean_to_unicode,
# byte_array_to_unicode with base64) when the type has no format attributes.
_TEXT: dict[int, tuple[type, Callable[[Any], str]]] = {
    _STR: (str, _identity),
    _INT: (int, str),
    _FLOAT: (float, repr),
    _BOOL: (bool, lambda value: "true" if value else "false"),
    _B64: (bytes, _base64),
}


class _Fallback(Exception):
    """Raised inside the writer when a value needs Spyne's coroutine machinery (push iterables)."""


class _Field(NamedTuple):
    key: str  # attribute read from the instance
    kind: int
    cls: Any  # the field's Spyne type, for Spyne's own path
    ns: str | None  # what Spyne passes to to_parent for this field
    name: str
    tag: str  # the element written by the fast path
    many: bool  # max_occurs > 1: one element per member of an iterable
    required: bool  # min_occurs > 0: a None value is Spyne's business (default or nil)


# One compiled field: (attribute, writer of one non-None value, many, required, _Field).
_Step = tuple[str, Callable[[Any, Any, Any], None], bool, bool, _Field]


class ApplianceSoap11(Soap11):  # type: ignore[misc]
    """The out protocol of the application; a drop-in for `Soap11()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[Any, tuple[_Step, ...]] = {}

    def serialize(self, ctx: Any, message: Any) -> Any:
        """Spyne's serialize; a failure while writing becomes a Server fault, never a 200 with
        an empty Body (Spyne keeps the half-built document and the status it had set)."""
        try:
            return super().serialize(ctx, message)
        except Exception:
            if message is not self.RESPONSE:
                raise
            log.exception("could not write the %s response",
                          getattr(ctx.descriptor, "name", "?"))
        ctx.out_error = server_fault(WRITE_FAILED)
        ctx.out_document = ctx.out_body_doc = ctx.out_header_doc = None
        if ctx.transport is not None:
            ctx.transport.resp_code = self.fault_to_http_response_code(ctx.out_error)
        return super().serialize(ctx, message)

    def modelbase_to_parent(self, ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any,
                            name: Any = "retval", **kwargs: Any) -> None:
        """Spyne's path for simple values (also faults' details), with text made XML-safe."""
        elt = self._gen_tag(cls, ns, name, **kwargs)
        text = self.to_unicode(cls, inst)
        if text is not None:
            _set_text(elt, text)
        if hasattr(parent, "append"):
            parent.append(elt)
        else:  # an incremental writer (xmlfile), as Spyne's _append does
            parent.write(elt)

    def fault_to_parent(self, ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any,
                        *args: Any, **kwargs: Any) -> Any:
        if isinstance(inst.faultstring, str):
            inst.faultstring = xml_text(inst.faultstring)
        if isinstance(inst.faultactor, str):
            inst.faultactor = xml_text(inst.faultactor)
        return super().fault_to_parent(ctx, cls, inst, parent, ns, *args, **kwargs)

    def complex_to_parent(self, ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any,
                          name: Any = None, add_type: bool = False, **kwargs: Any) -> Any:
        if add_type or self.polymorphic or not isinstance(parent, etree._Element):
            return super().complex_to_parent(ctx, cls, inst, parent, ns, name, add_type, **kwargs)
        elt = _SubElement(parent, self._complex_tag(cls, ns, name))
        try:
            self._members(ctx, self._plan(cls), cls.get_serialization_instance(inst), elt)
        except _Fallback:
            parent.remove(elt)
            return super().complex_to_parent(ctx, cls, inst, parent, ns, name, add_type, **kwargs)
        return None

    def _complex_tag(self, cls: Any, ns: Any, name: Any) -> str:
        """The element name Spyne's complex_to_parent gives `cls` when called with ns, name."""
        attrs = self.get_cls_attrs(cls)
        if attrs.sub_name is not None:
            name = attrs.sub_name
        if name is None:
            name = cls.get_type_name()
        if attrs.sub_ns not in (None, DEFAULT_NS):
            ns = attrs.sub_ns
        return name if ns is None else f"{{{ns}}}{name}"

    def _members(self, ctx: Any, plan: tuple[_Step, ...], inst: Any, elt: Any) -> None:
        """Spyne's _get_members_etree for one compiled class, writing into `elt`."""
        for key, write, many, required, field in plan:
            try:
                value = getattr(inst, key, None)
            except Exception:  # as Spyne: e.g. SQLAlchemy's NoSuchColumnError reads as None
                value = None
            if value is None:
                if required:
                    self._spyne(ctx, field, None, elt)
            elif many:
                if isinstance(value, PushBase):
                    raise _Fallback
                for member in value:
                    write(ctx, elt, member)
            else:
                write(ctx, elt, value)

    def _spyne(self, ctx: Any, field: _Field, value: Any, elt: Any) -> None:
        """Spyne's own path for one field value (None, unusual types, attributes, Any, ...)."""
        if self.to_parent(ctx, field.cls, value, elt, field.ns, field.name) is not None:
            raise _Fallback  # a coroutine waiting for pushed values

    def _writer(self, field: _Field) -> Callable[[Any, Any, Any], None]:
        """Writes one value of the field: the fast case inline, anything else Spyne's way."""
        tag, kind, spyne = field.tag, field.kind, self._spyne
        if kind == _COMPLEX:
            def write(ctx: Any, elt: Any, value: Any) -> None:
                if value is None:
                    spyne(ctx, field, value, elt)
                    return
                self._members(ctx, self._plan(field.cls),
                              field.cls.get_serialization_instance(value), _SubElement(elt, tag))
            return write
        if kind == _OTHER:
            return lambda ctx, elt, value: spyne(ctx, field, value, elt)
        python_type, to_text = _TEXT[kind]
        if kind == _STR:
            def write_str(ctx: Any, elt: Any, value: Any) -> None:
                if type(value) is str:
                    _set_text(_SubElement(elt, tag), value)
                else:
                    spyne(ctx, field, value, elt)
            return write_str

        def write_text(ctx: Any, elt: Any, value: Any) -> None:
            if type(value) is python_type:
                _SubElement(elt, tag).text = to_text(value)
            else:
                spyne(ctx, field, value, elt)
        return write_text

    def _plan(self, cls: Any) -> tuple[_Step, ...]:
        plan = self._plans.get(cls)
        if plan is None:
            # Built on first use, after the interface has resolved namespaces; rebuilding it
            # concurrently is harmless (the same plan either way).
            plan = self._plans[cls] = tuple(
                (f.key, self._writer(f), f.many, f.required, f) for f in self._compile(cls))
        return plan

    def _compile(self, cls: Any) -> list[_Field]:
        """The fields in Spyne's order: the extended class's members first (_get_members_etree)."""
        parent = getattr(cls, "__extends__", None)
        fields = self._compile(parent) if parent is not None else []
        for key, field_cls in cls._type_info.items():
            attrs = self.get_cls_attrs(field_cls)
            if attrs.exc:
                continue
            ns = field_cls.Attributes.sub_ns
            if ns is None:
                ns = cls.get_namespace()
            name = field_cls.Attributes.sub_name
            if name is None:
                name = key
            kind = self._kind(field_cls, attrs)
            tag = self._complex_tag(field_cls, ns, name) if kind == _COMPLEX else (
                name if ns is None else f"{{{ns}}}{name}")
            fields.append(_Field(
                key=key, kind=kind, cls=field_cls, ns=ns, name=name, tag=tag,
                many=field_cls.Attributes.max_occurs > 1,
                required=field_cls.Attributes.min_occurs > 0,
            ))
        return fields

    def _kind(self, cls: Any, attrs: Any) -> int:
        """How Spyne's to_parent would write a non-None value of `cls`, when it is a plain case."""
        if attrs.prot is not None:
            return _OTHER
        handler = _func(self.serialization_handlers[cls])
        if handler is _func(self.complex_to_parent):
            return _COMPLEX
        if handler is _func(self.byte_array_to_parent):
            return _B64 if self._byte_encoding(attrs) == BINARY_ENCODING_BASE64 else _OTHER
        if handler is not _func(self.modelbase_to_parent):
            return _OTHER
        if attrs.str_format is not None or attrs.format is not None:
            return _OTHER
        to_text = _func(self._to_unicode_handlers[cls])
        simple: dict[Callable[..., Any], int] = {
            _func(self.unicode_to_unicode): _STR,
            _func(self.integer_to_unicode): _INT,
            _func(self.double_to_unicode): _FLOAT,
            _func(self.boolean_to_unicode): _BOOL,
        }
        return simple.get(to_text, _OTHER)

    def _byte_encoding(self, attrs: Any) -> Any:
        """byte_array_to_unicode's choice: the type's encoding, else the protocol's."""
        return self.binary_encoding if attrs.encoding is BINARY_ENCODING_USE_DEFAULT else (
            attrs.encoding)


def _func(handler: Any) -> Any:
    """The plain function behind a bound method (bound methods are new objects per access)."""
    return getattr(handler, "__func__", handler)

