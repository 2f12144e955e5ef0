"""The one domain error hierarchy; protocol layers map it to SOAP Faults and SMTP replies."""


class ApplianceError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidInput(ApplianceError, ValueError):
    """An argument is malformed or out of range."""


class NotFound(ApplianceError, LookupError):
    """The named object does not exist (or is outside the caller's restriction)."""


class Forbidden(ApplianceError, PermissionError):
    """The caller may not do this."""


class Unauthorized(ApplianceError, PermissionError):
    """The caller's credentials are missing or wrong."""


class Conflict(ApplianceError):
    """The object changed under the caller, or already exists."""


class Unsupported(ApplianceError):
    """The node does not do this by design (e.g. updates come from the package manager)."""


class StoreUnavailable(ApplianceError, ConnectionError):
    """The store or spool cannot durably accept data right now (a temporary condition)."""


class FilterError(InvalidInput):
    """An HQL filter does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"invalid filter at {position}: {problem}")
        self.position = position
        self.problem = problem
