"""The one table mapping domain errors (appliance.errors) to SOAP Faults."""

from __future__ import annotations

import logging

from spyne import Fault

from appliance import errors

log = logging.getLogger(__name__)

# Most specific first: the first class the error is an instance of decides the code.
FAULT_CODES: tuple[tuple[type[errors.ApplianceError], str], ...] = (
    (errors.FilterError, "Client.InvalidFilter"),
    (errors.InvalidInput, "Client.InvalidInput"),
    (errors.NotFound, "Client.NotFound"),
    (errors.Forbidden, "Client.Forbidden"),
    (errors.Unauthorized, "Client.Unauthorized"),
    (errors.Conflict, "Client.Conflict"),
    (errors.Unsupported, "Client.Unsupported"),
    (errors.StoreUnavailable, "Server.Unavailable"),
    (errors.ApplianceError, "Server"),
)


def to_fault(exc: errors.ApplianceError) -> Fault:
    """The Fault for a domain error; its faultstring is the error's own message."""
    for cls, code in FAULT_CODES:
        if isinstance(exc, cls):
            return Fault(faultcode=code, faultstring=str(exc) or cls.__name__)
    raise AssertionError("ApplianceError is the last row")  # pragma: no cover


def internal_fault() -> Fault:
    """For an unexpected exception: nothing internal leaks to the client."""
    return Fault(faultcode="Server", faultstring="internal error (see the node log)")


def server_fault(text: str) -> Fault:
    """For a failure of the node's own making that the client should hear about."""
    return Fault(faultcode="Server", faultstring=text)


def client_fault(text: str) -> Fault:
    """For a request that could not be read (bad XML, bad base64, wrong types)."""
    return Fault(faultcode="Client", faultstring=text)
