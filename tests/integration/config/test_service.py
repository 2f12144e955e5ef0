"""ConfigService on a node's own store: keys, node overrides, and the watcher applying them."""

from __future__ import annotations

import pytest

from appliance.cluster.shared import StoreRouter
from appliance.config.document import ConfigError
from appliance.config.holder import ConfigHolder
from appliance.config.schema import Config
from appliance.cluster.configservice import ConfigService
from appliance.cluster.watcher import ConfigWatcher, initial_running
from appliance.db.engine import Store


class Recorder:
    def __init__(self, refuse_workers: int | None = None) -> None:
        self.seen: list[tuple[int, int]] = []
        self.refuse_workers = refuse_workers

    def apply(self, old: Config, new: Config) -> None:
        if new.queue.workers == self.refuse_workers:
            raise RuntimeError("cannot run that many workers")
        self.seen.append((old.queue.workers, new.queue.workers))


def _node(store: Store) -> tuple[ConfigService, ConfigWatcher, ConfigHolder, Recorder]:
    router = StoreRouter(store)
    holder = ConfigHolder(initial_running(router, "SERIAL1", file_text=None))
    recorder = Recorder(refuse_workers=13)
    holder.subscribe(recorder)
    watcher = ConfigWatcher(router, holder, "SERIAL1", identity=lambda: ("n1", "http://x/remote/"))
    return ConfigService(router, "SERIAL1", on_commit=watcher.tick), watcher, holder, recorder


def test_commit_applies_and_refusal_keeps_last_good(store: Store) -> None:
    service, _watcher, holder, recorder = _node(store)
    assert holder.running.revision == 1
    r2 = service.key_set("queue.workers", "9", author="admin")
    assert holder.running.revision == r2 and holder.config.queue.workers == 9
    assert recorder.seen == [(4, 9)]
    r3 = service.key_set("queue.workers", "13", author="admin")  # a part refuses it
    assert holder.running.revision == r2 and holder.config.queue.workers == 9
    assert "cannot run that many workers" in holder.problem
    service.revert(r2, author="admin")
    assert holder.config.queue.workers == 9 and holder.problem == ""
    assert service.diff(r2, r3).count("\n-") == 1


def test_node_override_is_applied_on_top(store: Store) -> None:
    service, _watcher, holder, _recorder = _node(store)
    revision = service.key_set("local:node.name", "edge-1", author="admin")
    assert revision == 1  # an override is not a revision
    assert holder.config.node.name == "edge-1"
    assert service.key_get("local:node.name") == "edge-1"
    assert service.key_get("node.name") == "node1"  # the shared text is unchanged
    assert ("local:node.name", "edge-1") in service.keys()
    service.key_set("node.hostname", "mx.example", author="admin")
    assert (holder.config.node.name, holder.config.node.hostname) == ("edge-1", "mx.example")


def test_text_that_breaks_an_override_is_refused(store: Store) -> None:
    service, _watcher, _holder, _recorder = _node(store)
    text = service.text_get()
    with_two = text + '\n[[listeners]]\nid = "extra"\nport = 2600\n'
    service.text_set(with_two, comment="extra listener", author="admin")
    service.key_set("local:listeners.extra.port", "2601", author="admin")
    with pytest.raises(ConfigError) as info:
        service.text_set(text, comment="drop extra", author="admin")
    assert "SERIAL1" in str(info.value) and "extra" in str(info.value)
    assert service.text_get() == with_two
