"""An api-auth script in the config decides SOAP access before the built-in levels (zeep)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import zeep

from tests.support.node import RunningNode

CONFIG = '''
[scripts]
api-auth = """
function api_auth(user, password, operation, args)
  if user == "viewer" and operation == "mailQueueHoldBulk" then
    if args.filter == "queue=DEFER" and password == "pw-viewer" then return accept() end
    return reject()
  end
  if user == "viewer" and operation == "mailQueueCount" and args.filter == "secret" then
    return reject()
  end
end
"""
'''


def _client(node: RunningNode, user: str, password: str) -> zeep.Client:
    session = requests.Session()
    session.auth = (user, password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))


def test_script_allows_refuses_or_defers_to_levels(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=CONFIG) as node:
        added = node.cli("user", "add", "viewer", "--role", "readonly", "--password-stdin",
                         input_text="pw-viewer\n")
        assert added.returncode == 0, added.stderr
        viewer = _client(node, "viewer", "pw-viewer").service
        # The script accepts a mutating call the read-only level alone would refuse...
        assert viewer.mailQueueHoldBulk(filter="queue=DEFER") == 0
        # ...refuses other uses of the same operation...
        with pytest.raises(zeep.exceptions.Fault, match="api-auth"):
            viewer.mailQueueHoldBulk(filter="")
        # ...refuses a read the level would allow...
        with pytest.raises(zeep.exceptions.Fault, match="api-auth"):
            viewer.mailQueueCount(filter="secret")
        # ...and leaves everything else to the built-in levels.
        assert viewer.mailQueueCount(filter="") == 0
        with pytest.raises(zeep.exceptions.Fault):
            viewer.mailQueueDeleteBulk(filter="")
        admin = _client(node, "admin", node.admin_password).service
        assert admin.mailQueueDeleteBulk(filter="") == 0
