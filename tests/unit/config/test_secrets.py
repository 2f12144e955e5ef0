"""Secret config fields: found in the schema, redacted for output, kept when written back."""

from __future__ import annotations

import pytest
from pydantic import Field

from appliance.config import secrets
from appliance.config.schema import _Section
from appliance.errors import InvalidInput

TEXT = '''# the node
[node]
name = "n1"

[cluster]
dsn = "postgresql://app:S3cret%40pw@db.example:5432/appl?sslmode=require"  # the shared store
'''


def test_the_schema_marks_the_cluster_dsn() -> None:
    assert (("cluster", "dsn"), secrets.DSN) in secrets.secret_fields()
    assert secrets.kind_of_key("cluster.dsn") == secrets.DSN
    assert secrets.kind_of_key("local:cluster.dsn") == secrets.DSN
    assert secrets.kind_of_key("node.name") is None


def test_fields_named_like_secrets_in_nested_lists_are_found() -> None:
    class Relay(_Section):
        id: str
        password: str = ""
        api_token: str = ""
        tls_key: str = ""  # a path, not a secret

    class Doc(_Section):
        relays: list[Relay] = []
        webhook: str = Field(default="", json_schema_extra={"secret": True})

    found = dict(secrets.secret_fields(Doc))
    assert found == {("relays", "*", "password"): secrets.WHOLE,
                     ("relays", "*", "api_token"): secrets.WHOLE, ("webhook",): secrets.WHOLE}


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://app:pw@db/x", "postgresql://app:********@db/x"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),
    ("postgresql://db/x?user=a&password=pw&sslmode=require",
     "postgresql://db/x?user=a&password=********&sslmode=require"),
    ("host=db user=a password='p w' dbname=x", "host=db user=a password=******** dbname=x"),
    ("password=pw host=db", "password=******** host=db"),
    ("", ""),
])
def test_only_the_password_of_a_dsn_is_hidden(dsn: str, shown: str) -> None:
    assert secrets.redact_value(secrets.DSN, dsn) == shown
    if secrets.PLACEHOLDER in shown:
        assert secrets.restore_value(secrets.DSN, shown, dsn, where="k") == dsn


def test_text_round_trip_keeps_comments_and_the_stored_secret() -> None:
    shown = secrets.redact_text(TEXT)
    assert "S3cret" not in shown
    assert 'dsn = "postgresql://app:********@db.example:5432/appl?sslmode=require"  # the shared store' in shown
    assert secrets.restore_text(shown, TEXT) == TEXT
    edited = shown.replace('name = "n1"', 'name = "n2"').replace("db.example", "db2.example")
    assert secrets.restore_text(edited, TEXT) == TEXT.replace('"n1"', '"n2"').replace(
        "db.example", "db2.example")


def test_a_new_password_replaces_the_stored_one() -> None:
    new = TEXT.replace("S3cret%40pw", "other")
    assert secrets.restore_text(new, TEXT) == new


def test_a_placeholder_with_nothing_stored_is_refused() -> None:
    text = '[cluster]\ndsn = "postgresql://app:********@db/x"\n'
    with pytest.raises(InvalidInput, match=r"cluster\.dsn: '\*{8}' stands for the stored secret"):
        secrets.restore_text(text, '[cluster]\ndsn = ""\n')
    with pytest.raises(InvalidInput, match="stands for the stored secret"):
        secrets.restore_value(secrets.WHOLE, secrets.PLACEHOLDER, "", where="x.password")


def test_keys_and_logged_text() -> None:
    pairs = [("cluster.dsn", "postgresql://a:b@h/d"), ("node.name", "pw")]
    assert secrets.redact_keys(pairs) == [("cluster.dsn", "postgresql://a:********@h/d"),
                                          ("node.name", "pw")]
    assert secrets.loggable_text("[cluster\ndsn = 'postgresql://a:b@h/d'") == (
        "<37 characters, not TOML>")
    assert "S3cret" not in secrets.loggable_text(TEXT)


def test_a_diff_says_that_a_secret_changed_without_showing_it() -> None:
    rotated = TEXT.replace("S3cret%40pw", "N3w")
    assert secrets.CHANGED in secrets.redact_text(rotated, changed_from=TEXT)
    assert "N3w" not in secrets.redact_text(rotated, changed_from=TEXT)
    moved = TEXT.replace("db.example", "db2.example")
    assert secrets.redact_text(moved, changed_from=TEXT) == secrets.redact_text(moved)
    assert secrets.redact_text(TEXT, changed_from="") == secrets.redact_text(TEXT).replace(
        secrets.PLACEHOLDER, secrets.CHANGED)
