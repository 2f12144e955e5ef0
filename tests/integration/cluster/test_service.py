"""ClusterService with a node's SQLite store and a real PostgreSQL shared store."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cluster.service import ClusterService
from appliance.cluster.shared import StoreRouter
from appliance.cluster.configservice import ConfigService
from appliance.cluster.watcher import initial_running
from appliance.db.engine import Store
from appliance.db.schema import upgrade
from appliance.errors import Conflict, NotFound

pytestmark = pytest.mark.postgres


def _node(tmp_path: Path, name: str) -> tuple[ClusterService, ConfigService, StoreRouter]:
    local = Store(f"sqlite:///{tmp_path / name}.db")
    upgrade(local.engine)
    router = StoreRouter(local)
    initial_running(router, name.upper(), file_text=None)
    identity = lambda: (name, f"http://{name}/remote/")  # noqa: E731
    return (ClusterService(router, name.upper(), identity), ConfigService(router, name.upper()),
            router)


def test_create_join_leave_remove(tmp_path: Path, pg_url: str) -> None:
    cluster_a, config_a, router_a = _node(tmp_path, "a")
    cluster_b, config_b, router_b = _node(tmp_path, "b")
    try:
        with pytest.raises(NotFound):
            cluster_b.join(pg_url)  # nothing there yet
        config_a.key_set("queue.workers", "6", author="t")  # local revision 2 on A
        assert cluster_a.create(pg_url) == 1  # the shared history starts with A's text
        with pytest.raises(Conflict):
            cluster_b.create(pg_url)
        assert cluster_b.join(pg_url) == 1
        assert config_b.key_get("queue.workers") == "6"  # B now reads the shared store
        assert {n.serial for n in cluster_a.node_list()} == {"A", "B"}
        revision = config_b.key_set("queue.workers", "7", author="t")
        assert config_a.text_get() == config_b.text_get(revision)
        local_revision = cluster_b.leave()
        assert router_b.membership() is None
        assert config_b.log(0, 1)[0].id == local_revision  # B's own history again
        assert config_b.key_get("queue.workers") == "7"  # ... carrying on the cluster's config
        assert {n.serial for n in cluster_a.node_list()} == {"A"}
        cluster_a.node_remove("A")  # removing itself is leaving
        assert router_a.membership() is None
    finally:
        router_a.close()
        router_b.close()
        router_a.local.dispose()
        router_b.local.dispose()
