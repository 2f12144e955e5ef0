"""The readable HTML page a person sees on a plain GET of /remote/."""

from __future__ import annotations

from html import escape
from typing import Any


def operations_page(app: Any, *, title: str = "appliance SOAP API") -> bytes:
    """A list of every operation with its arguments and results, from the application itself."""
    rows = []
    for service in app.services:
        for name, descriptor in sorted(service.public_methods.items()):
            args = ", ".join(
                f"{a} <i>{escape(t.get_type_name())}</i>"
                for a, t in descriptor.in_message._type_info.items()
            )
            outs = ", ".join(descriptor.out_message._type_info.keys()) or "—"
            rows.append(f"<tr><td><b>{escape(name)}</b></td><td>{args}</td>"
                        f"<td>{escape(outs)}</td></tr>")
    body = "\n".join(sorted(rows))
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1><p>SOAP 1.1, document/literal, namespace "
        f"<code>urn:halon</code>. The interface document is at <a href='?wsdl'>?wsdl</a>.</p>"
        f"<table border='1' cellpadding='4'><tr><th>operation</th><th>arguments</th>"
        f"<th>results</th></tr>\n{body}\n</table></body></html>\n"
    )
    return html.encode()
