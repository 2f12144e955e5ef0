"""The shared store's address: a PostgreSQL URL or a libpq `key=value` DSN -> SQLAlchemy URL."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL, make_url

from appliance.errors import InvalidInput


def to_url(dsn: str) -> str:
    """A SQLAlchemy URL (psycopg driver) for `dsn`; InvalidInput if it is not PostgreSQL."""
    dsn = dsn.strip()
    if not dsn:
        raise InvalidInput("the cluster DSN is empty")
    if "://" in dsn:
        url = make_url(dsn)
        if url.get_backend_name() != "postgresql":
            raise InvalidInput("a cluster's shared store must be PostgreSQL")
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:
        raise InvalidInput(f"invalid DSN: {exc}") from exc
    port = parts.pop("port", None)
    url = URL.create(
        "postgresql+psycopg", username=_text(parts.pop("user", None)),
        password=_text(parts.pop("password", None)), host=_text(parts.pop("host", None)),
        port=int(port) if port else None, database=_text(parts.pop("dbname", None)),
        query={k: str(v) for k, v in parts.items()},
    )
    return url.render_as_string(hide_password=False)


def redacted(dsn: str) -> str:
    """The DSN without its password, for logs and listings."""
    try:
        return make_url(to_url(dsn)).render_as_string(hide_password=True)
    except InvalidInput:
        return "<invalid dsn>"


def _text(value: object) -> str | None:
    return None if value is None else str(value)
