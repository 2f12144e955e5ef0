"""Migration 0006: entries queued before it get action DELIVER (QUARANTINE if quarantined)."""

from __future__ import annotations

from sqlalchemy import text

from appliance.db.engine import Store
from appliance.db.schema import downgrade, upgrade

COLUMNS = ("msgid, ts0, ts, sender, sender_domain, rcpt, rcpt_domain, subject, size, listener, "
           "transport, fromserver, helo, sasl, path, state, quarantine, action, is_dsn, "
           "description, error, retries, actionid, jobid, score, next_retry, lease_until, lease_owner")


def test_old_entries_get_their_action(store: Store) -> None:
    downgrade(store.engine, "0005")
    with store.engine.begin() as conn:
        for n, (state, quarantine) in enumerate([("DEFER", ""), ("HOLD", "spam"), ("HOLD", "")]):
            conn.execute(text(
                f"INSERT INTO queue ({COLUMNS}) VALUES (:m, 0, 0, '', '', 'r@x', 'x', '', 1, "
                f"'in', 'default', '', '', '', 'p', :s, :q, '', 0, '', '', 0, 0, '', 0, 0, 0, '')"),
                {"m": f"m{n}", "s": state, "q": quarantine})
    upgrade(store.engine)
    with store.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT msgid, action FROM queue")).all())
    assert rows == {"m0": "DELIVER", "m1": "QUARANTINE", "m2": "DELIVER"}
