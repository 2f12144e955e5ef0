"""The flows' scripts as old-API config keys, and key states (value in force and its source)."""

from __future__ import annotations

import pytest

from appliance.config.flows import flow_assignment, flow_keys, is_flow_key
from appliance.config.keys import key_states
from appliance.config.schema import Config
from appliance.errors import InvalidInput, NotFound

TEXT = '''\
[queue]
workers = 8

[[listeners]]
id = "inbound"
port = 2525

[scripts]
zeta = "function connect(s) return accept() end"
alpha = """function rcpt_to(s, r)
  return accept()
end"""
'''


def test_one_key_per_script_in_document_order() -> None:
    keys = flow_keys(TEXT)
    assert [(k.key, k.script_id) for k in keys] == [("script_flow__1", "zeta"),
                                                    ("script_flow__2", "alpha")]
    assert keys[1].params == ["alpha", "function rcpt_to(s, r)\n  return accept()\nend"]
    assert flow_keys("") == []
    assert is_flow_key("script_flow__2") and is_flow_key("mailtransaction_flow__1")
    assert not is_flow_key("scripts.alpha") and not is_flow_key("script_flow__")


def test_assignment_names_the_dotted_script_key() -> None:
    assert flow_assignment(TEXT, "script_flow__2", ["alpha", "new"]) == ("scripts.alpha", "new")
    assert flow_assignment(TEXT, "script_flow__1", ["zeta", "meta", "new"]) == ("scripts.zeta", "new")
    assert flow_assignment(TEXT, "script_flow__1", ["only text"]) == ("scripts.zeta", "only text")
    assert flow_assignment(TEXT, "script_flow__3", ["added", "x"]) == ("scripts.added", "x")
    with pytest.raises(InvalidInput, match="script_flow__1 is script 'zeta', not 'alpha'"):
        flow_assignment(TEXT, "script_flow__1", ["alpha", "x"])
    with pytest.raises(InvalidInput, match="not a script id"):
        flow_assignment(TEXT, "script_flow__3", ["bad id", "x"])
    with pytest.raises(InvalidInput, match="params needs"):
        flow_assignment(TEXT, "script_flow__1", [])
    with pytest.raises(NotFound, match="name the new script's id"):
        flow_assignment(TEXT, "script_flow__9", ["text only"])
    with pytest.raises(NotFound, match="flow keys are script_flow__N"):
        flow_assignment(TEXT, "smtpd_flow__1", ["zeta", "x"])


def test_key_states_mark_default_revision_local_and_flag() -> None:
    running = Config.model_validate({
        "node": {"name": "edge-7"}, "queue": {"workers": 8}, "listeners": [{"id": "inbound", "port": 40000}],
        "transports": [{"id": "default", "nexthop": "127.0.0.1:2526"}],
        "scripts": {"zeta": "function connect(s) return accept() end",
                    "alpha": "function rcpt_to(s, r)\n  return accept()\nend"},
    }).model_dump()
    states = {s.key: s for s in key_states(TEXT, [("node.name", "edge-7")], running)}
    workers, port, name = states["queue.workers"], states["listeners.inbound.port"], states["node.name"]
    assert (workers.value, workers.effective, workers.source) == ("8", "8", "revision")
    assert (port.value, port.effective, port.source) == ("2525", "40000", "flag")
    assert (name.value, name.effective, name.source) == ("node1", "edge-7", "local")
    hop = states["transports.default.nexthop"]
    assert (hop.value, hop.effective, hop.source) == ("", "127.0.0.1:2526", "flag")
    assert states["api.wsdl_requires_auth"].source == "default"
    assert states["scripts.alpha"].source == "revision"
