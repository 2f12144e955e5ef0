"""Users: hashing, roles and lookups on both stores."""

from __future__ import annotations

import pytest

from appliance.access import users
from appliance.db.engine import Store
from appliance.errors import Conflict, InvalidInput, NotFound


def test_add_authenticate_passwd_delete(store: Store) -> None:
    with store.transaction() as s:
        u = users.add_user(s, "ops", "s3cret", role="readonly")
        assert u.pwhash.startswith("scrypt$") and "s3cret" not in u.pwhash
    with store.transaction() as s:
        assert users.authenticate(s, "ops", "s3cret") is not None
        assert users.authenticate(s, "ops", "wrong") is None
        assert users.authenticate(s, "nobody", "s3cret") is None
        users.set_password(s, "ops", "new")
    with store.transaction() as s:
        assert users.authenticate(s, "ops", "s3cret") is None
        assert users.authenticate(s, "ops", "new") is not None
        users.delete_user(s, "ops")
        with pytest.raises(NotFound):
            users.get_user(s, "ops")


def test_bad_input_and_duplicates(store: Store) -> None:
    with store.transaction() as s:
        users.add_user(s, "a", "p")
        with pytest.raises(Conflict):
            users.add_user(s, "a", "p")
        with pytest.raises(InvalidInput):
            users.add_user(s, "bad name", "p")
        with pytest.raises(InvalidInput):
            users.add_user(s, "b", "p", role="root")
